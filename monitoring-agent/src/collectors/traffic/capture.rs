//! The capture thread (feature `pcap`): reads packets with libpcap, live on an
//! interface or from a savefile, folds them into the flow table and hands each
//! interval's events to `emit`.
//!
//! Live, the capture is non-blocking and the thread waits on its descriptor with
//! poll(2) for at most 250 ms: libpcap's own read timeout does not return when no
//! packet comes on Linux (TPACKET_V3), and the wait bounds how late an interval
//! closes and how long a stop request waits. Intervals follow the wall clock. From a savefile, packets are
//! read as fast as the disk allows and intervals follow their timestamps, so that a
//! replay gives the flows the capture would have given.

use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monitoring_common::event::{Event, Labels};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::TrafficConfig;
use super::decode::decode;
use super::events::{CaptureStats, Origin, interval_events};
use super::flows::FlowTable;

/// How long the thread waits for packets before it looks at the clock.
const WAIT_MS: i32 = 250;

/// Why the capture could not run.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// libpcap refused (no such interface, no permission, bad filter...).
    #[error("packet capture on {target}: {source}")]
    Pcap {
        /// The interface or savefile.
        target: String,
        /// libpcap's error.
        #[source]
        source: pcap::Error,
    },
}

/// Packets read that were not IP or were cut short, and frames read in all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Frames read.
    pub frames: u64,
    /// Frames that did not decode to an IP packet.
    pub undecoded: u64,
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Captures until `stop` is cancelled, the savefile ends, or `emit` returns `false`.
/// Blocking: run it on a thread of its own.
pub fn run(
    config: &TrafficConfig,
    tags: &Labels,
    mut emit: impl FnMut(Vec<Event>) -> bool,
    stop: &CancellationToken,
) -> Result<Counts, CaptureError> {
    let interval_ns =
        i64::try_from(Duration::from_secs(config.interval_secs).as_nanos()).unwrap_or(i64::MAX);
    let mut table = FlowTable::new(config.max_flows);
    let mut counts = Counts::default();
    match &config.savefile {
        Some(path) => {
            let target = path.display().to_string();
            let error = |source| CaptureError::Pcap {
                target: target.clone(),
                source,
            };
            let mut capture = pcap::Capture::from_file(path).map_err(error)?;
            if !config.bpf_filter.is_empty() {
                capture.filter(&config.bpf_filter, true).map_err(error)?;
            }
            let link = capture.get_datalink().0;
            let name = path
                .file_name()
                .map_or(target.clone(), |n| n.to_string_lossy().into_owned());
            let origin = Origin {
                source: &target,
                interface: &name,
                tags,
            };
            let mut start: Option<i64> = None;
            loop {
                if stop.is_cancelled() {
                    return Ok(counts);
                }
                let packet = match capture.next_packet() {
                    Ok(packet) => packet,
                    Err(pcap::Error::NoMorePackets) => break,
                    Err(source) => return Err(error(source)),
                };
                let ts = packet.header.ts;
                // timeval's fields are narrower than i64 on some targets.
                #[allow(clippy::useless_conversion)]
                let at = i64::from(ts.tv_sec)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(ts.tv_usec).saturating_mul(1000));
                let begun = *start.get_or_insert(at - at.rem_euclid(interval_ns));
                if at >= begun + interval_ns {
                    let events = interval_events(
                        table.drain(begun + interval_ns, config.top_talkers),
                        begun,
                        &origin,
                        None,
                    );
                    if !emit(events) {
                        return Ok(counts);
                    }
                    start = Some(at - at.rem_euclid(interval_ns));
                }
                count(&mut table, &mut counts, link, packet.data);
            }
            if let Some(begun) = start {
                emit(interval_events(
                    table.drain(begun + interval_ns, config.top_talkers),
                    begun,
                    &origin,
                    None,
                ));
            }
            info!(message = "Savefile read.", path = %target, frames = counts.frames, undecoded = counts.undecoded);
            Ok(counts)
        }
        None => {
            let target = config.interface.clone();
            let error = |source| CaptureError::Pcap {
                target: target.clone(),
                source,
            };
            let mut capture = pcap::Capture::from_device(config.interface.as_str())
                .map_err(error)?
                .snaplen(i32::try_from(config.snaplen).unwrap_or(i32::MAX))
                .promisc(config.promiscuous)
                .immediate_mode(true)
                .open()
                .map_err(error)?
                .setnonblock()
                .map_err(error)?;
            if !config.bpf_filter.is_empty() {
                capture.filter(&config.bpf_filter, true).map_err(error)?;
            }
            let link = capture.get_datalink().0;
            let source = format!("traffic:{}", config.interface);
            let origin = Origin {
                source: &source,
                interface: &config.interface,
                tags,
            };
            info!(message = "Packet capture started.", interface = %config.interface, filter = %config.bpf_filter, link_type = link);
            let mut begun = nanos(SystemTime::now());
            loop {
                if stop.is_cancelled() {
                    return Ok(counts);
                }
                match capture.next_packet() {
                    Ok(packet) => count(&mut table, &mut counts, link, packet.data),
                    // Nothing to read now: wait for the descriptor, briefly.
                    Err(pcap::Error::TimeoutExpired) => wait_readable(capture.as_raw_fd(), WAIT_MS),
                    Err(source) => return Err(error(source)),
                }
                let now = nanos(SystemTime::now());
                if now >= begun + interval_ns {
                    let stats = match capture.stats() {
                        Ok(s) => Some(CaptureStats {
                            received: u64::from(s.received),
                            kernel_dropped: u64::from(s.dropped),
                            interface_dropped: u64::from(s.if_dropped),
                        }),
                        Err(e) => {
                            warn!(message = "Cannot read the capture's drop counters.", error = %e);
                            None
                        }
                    };
                    let events = interval_events(
                        table.drain(now, config.top_talkers),
                        begun,
                        &origin,
                        stats,
                    );
                    if !emit(events) {
                        return Ok(counts);
                    }
                    begun = now;
                }
            }
        }
    }
}

/// Waits until `fd` is readable or `timeout_ms` passed (an interrupted wait just
/// returns early: the caller loops).
fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    #[allow(unsafe_code)]
    unsafe {
        libc::poll(&mut pollfd, 1, timeout_ms);
    }
}

fn count(table: &mut FlowTable, counts: &mut Counts, link: i32, frame: &[u8]) {
    counts.frames += 1;
    match decode(link, frame) {
        Some(packet) => table.add(&packet),
        None => counts.undecoded += 1,
    }
}
