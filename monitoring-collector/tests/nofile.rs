//! The collector raises its open-file limit at start: started under a low soft limit
//! (systemd's 1,024), about 1,000 agents would exhaust it, and the store would fail
//! with them (issue 7's swarm benchmark). Alone in its file because it lowers this
//! test process's own soft limit, which the collector inherits.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use common::{Collector, log_frame, round_trip};
use monitoring_common::protocol::{AckStatus, Codec};

/// The (soft, hard) "Max open files" of a process, from /proc.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[tokio::test]
async fn a_low_soft_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(
        hard > 512,
        "this test needs a hard open-file limit above 512, found {hard}"
    );
    rlimit::Resource::NOFILE.set(512, hard).unwrap();
    let collector = Collector::start().await;
    let (soft, collector_hard) = open_files_limit(collector.pid());
    assert_eq!(collector_hard, hard);
    assert_eq!(soft, hard, "soft limit not raised");
    assert!(
        collector.log().contains("Raised the open-file limit."),
        "{}",
        collector.log()
    );
    let mut agent = collector.connect("nofile").await;
    let ack = round_trip(&mut agent, log_frame(Codec::Lz4, 1, 1, &["up".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok);
}
