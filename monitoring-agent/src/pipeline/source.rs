//! Which kind of source an event came from, and per-source event counts.
//!
//! [`Source`] is a closed set of `&'static str` label values (the `source` label of
//! the accounting metrics), so cardinality stays bounded however many files are
//! tailed. It names the collector kind, never a file path.
//!
//! A batch mixes sources, so it carries a [`SourceCounts`]: a tiny fixed array indexed
//! by source that the batcher fills with one increment per event (no allocation, no
//! lock), and that the transport, the spool and every drop site read to attribute a
//! whole batch at once.
//!
//! Adding a source is one line in the [`sources!`] list below. The position in that
//! list is the source's index in [`SourceCounts`] and in spool records
//! (`buffer/disk/format.rs`), so new sources go at the end and none is ever removed or
//! reordered.

/// Defines [`Source`] from a list of `Variant = "label"` lines.
macro_rules! sources {
    ($($(#[$doc:meta])* $variant:ident = $label:literal,)+) => {
        /// The kind of source an event came from; the `source` label of the
        /// accounting metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Source {
            $($(#[$doc])* $variant,)+
        }

        impl Source {
            /// Every source, in index order.
            pub const ALL: [Source; Source::COUNT] = [$(Source::$variant,)+];
            /// How many sources there are.
            pub const COUNT: usize = [$($label,)+].len();

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Source::$variant => $label,)+
                }
            }
        }
    };
}

sources! {
    /// Tailed log files (`[collectors.logs] files`).
    File = "file",
    /// Host metrics (`[collectors.metrics]`, CPU, memory, disks, network).
    HostMetrics = "host_metrics",
    /// The systemd journal (`[collectors.logs.journald]`).
    Journald = "journald",
    /// Prometheus scrape targets (`[[collectors.metrics.prometheus]]`).
    Prometheus = "prometheus",
    /// Flows from packet capture (`[collectors.traffic]`).
    Traffic = "traffic",
}

impl Source {
    /// Its index in [`SourceCounts`] (its position in the list).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Events per source: one batch's composition, or a count of dropped events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceCounts([u32; Source::COUNT]);

impl SourceCounts {
    /// Counts one event of `source`.
    #[inline]
    pub fn add(&mut self, source: Source) {
        let c = &mut self.0[source.index()];
        *c = c.saturating_add(1);
    }

    /// Counts `n` events of `source`.
    pub fn add_n(&mut self, source: Source, n: u32) {
        let c = &mut self.0[source.index()];
        *c = c.saturating_add(n);
    }

    /// Events of `source`.
    pub fn get(&self, source: Source) -> u32 {
        self.0[source.index()]
    }

    /// Events of every source together.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }

    /// The sources with at least one event, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Source, u32)> + '_ {
        Source::ALL
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|&(_, n)| n > 0)
    }

    /// Bytes of [`SourceCounts::encode`]'s output.
    pub const ENCODED_LEN: usize = 1 + 4 * Source::COUNT;

    /// Appends the counts: the number of sources (u8), then each count (u32 LE) in
    /// index order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // COUNT is a handful; the cast cannot truncate while the list stays under 256.
        out.push(Source::COUNT as u8);
        for n in self.0 {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// Reads counts written by [`SourceCounts::encode`], possibly by a build that knew
    /// fewer or more sources: missing ones are 0, unknown ones are ignored. Returns the
    /// counts and the bytes they took; `None` if `bytes` is too short.
    pub fn decode(bytes: &[u8]) -> Option<(SourceCounts, usize)> {
        let n = usize::from(*bytes.first()?);
        let len = 1 + 4 * n;
        let body = bytes.get(1..len)?;
        let mut counts = SourceCounts::default();
        for (slot, chunk) in counts.0.iter_mut().zip(body.chunks_exact(4)) {
            *slot = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Some((counts, len))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_indices_follow_the_list() {
        let labels: std::collections::HashSet<&str> =
            Source::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(labels.len(), Source::COUNT);
        for (i, s) in Source::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        assert_eq!(Source::File.as_str(), "file");
        assert_eq!(Source::HostMetrics.as_str(), "host_metrics");
    }

    #[test]
    fn counts_round_trip_and_tolerate_other_builds() {
        let mut c = SourceCounts::default();
        c.add(Source::File);
        c.add(Source::File);
        c.add_n(Source::HostMetrics, 5);
        assert_eq!(c.total(), 7);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![(Source::File, 2), (Source::HostMetrics, 5)]
        );
        let mut bytes = Vec::new();
        c.encode(&mut bytes);
        bytes.extend_from_slice(b"frame");
        assert_eq!(bytes.len(), SourceCounts::ENCODED_LEN + 5);
        assert_eq!(
            SourceCounts::decode(&bytes),
            Some((c, SourceCounts::ENCODED_LEN))
        );
        // A build that knew only the first source.
        let (old, len) = SourceCounts::decode(&[1, 3, 0, 0, 0, 9]).unwrap();
        assert_eq!(
            (old.get(Source::File), old.get(Source::HostMetrics), len),
            (3, 0, 5)
        );
        // A later build with one more source: the unknown count is skipped.
        let mut newer = vec![Source::COUNT as u8 + 1];
        for i in 0..=Source::COUNT as u32 {
            newer.extend_from_slice(&(i + 1).to_le_bytes());
        }
        let (c, len) = SourceCounts::decode(&newer).unwrap();
        assert_eq!(len, newer.len());
        assert_eq!(c.get(Source::File), 1);
        assert_eq!(SourceCounts::decode(&[2, 1, 0]), None);
        assert_eq!(SourceCounts::decode(&[]), None);
    }
}
