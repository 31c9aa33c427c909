//! The per-source counts in spool records: written with each record, read back with
//! its batch, and recomputed from the payload for records of the previous format.

use monitoring_common::Event;
use monitoring_common::event::MetricValue;
use monitoring_common::protocol::Codec;
use monitoring_common::protocol::frame::encode_frame;
use monitoring_common::protocol::payload::encode_events;

use super::super::format;
use super::super::{WhenFull, open};
use super::{batch, drain, ids, metrics, never, options};
use crate::pipeline::{Source, SourceProgress};

#[test]
fn records_carry_source_counts_and_old_records_are_attributed_by_their_payload() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let src = SourceProgress::new(0);
    // An old agent's spool: one MSP1 record holding 2 logs and 3 metrics.
    let mut events = vec![
        Event::log(1, "/var/log/a", "x"),
        Event::log(2, "/var/log/a", "y"),
    ];
    for i in 0..3 {
        events.push(Event::metric(
            i,
            "host",
            "m",
            Default::default(),
            MetricValue::Gauge { value: 1.0 },
        ));
    }
    let frame = encode_frame(Codec::Lz4, 5, 1, 5, &encode_events(&events));
    let mut rec = Vec::new();
    format::encode_v1(&frame, &mut rec);
    // Plus one that is not a valid payload: all its events count as file lines.
    format::encode_v1(&encode_frame(Codec::None, 5, 2, 4, b"junk"), &mut rec);
    std::fs::write(dir.path().join(format::segment_file_name(0)), &rec).unwrap();

    let mut spool = open(
        options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
        m.clone(),
    )
    .unwrap();
    // This version's records next to them.
    spool.writer.push(batch(6, 1, 7, &src, 1), &never).unwrap();
    spool.writer.flush(&never).unwrap();
    let got = drain(&mut spool);
    assert_eq!(ids(&got), vec![(5, 1), (5, 2), (6, 1)]);
    let counts: Vec<(u32, u32)> = got
        .iter()
        .map(|b| {
            (
                b.sources.get(Source::File),
                b.sources.get(Source::HostMetrics),
            )
        })
        .collect();
    assert_eq!(counts, vec![(2, 3), (4, 0), (4, 3)]);
    // The frames come back whole, without their counts.
    assert_eq!(&got[0].frame[..], &frame[..]);
    assert_eq!(m.records_corrupt.get(), 0);
}
