//! End to end, with the real producers: Debian's prometheus-node-exporter scraped by
//! the agent, and traffic the test sends on `lo` captured by it (feature pcap); what
//! arrives is read back from the collector.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use monitoring_e2e::{Agent, AgentOptions, Collector, free_port, wait_until};

const EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// The node exporter on a loopback port, killed when dropped.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(dir: &Path) -> Exporter {
        assert!(
            Path::new(EXPORTER).exists(),
            "{EXPORTER} is missing: install prometheus-node-exporter (scripts/deps.sh does)"
        );
        let port = free_port();
        let log = std::fs::File::create(dir.join("node-exporter.log")).unwrap();
        let child = Command::new(EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_until(
            "the node exporter to listen",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )
        .unwrap();
        Exporter { child, port }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The series of metric `name` with label `label` (`k=v`) stored for `agent`.
fn series(collector: &Collector, agent: &str, name: &str, label: &str) -> Vec<serde_json::Value> {
    collector
        .get(&format!(
            "/api/v1/metrics?name={name}&agent={agent}&label={label}&from=0"
        ))
        .map(|r| r["series"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// The value of the newest point of the first series.
fn last_point(series: &[serde_json::Value]) -> Option<f64> {
    series.first()?["points"].as_array()?.last()?[1].as_f64()
}

#[test]
fn node_exporter_series_arrive_with_their_labels_and_up_follows_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let mut exporter = Exporter::start(tmp.path());
    let collector = Collector::start(tmp.path()).unwrap();
    let instance = format!("127.0.0.1:{}", exporter.port);
    let opts = AgentOptions {
        extra: format!(
            "[[collectors.metrics.prometheus]]\nurl = \"http://{instance}/metrics\"\n\
             interval_secs = 1\ntimeout_secs = 1\njob = \"node\"\nlabels = {{ team = \"ops\" }}\n"
        ),
        ..AgentOptions::default()
    };
    let agent = Agent::start(tmp.path(), "scraper", &collector.endpoint(), &opts).unwrap();
    let job = "job=node";
    let found = wait_until(
        "node exporter series at the collector",
        Duration::from_secs(30),
        || {
            !series(&collector, "scraper", "node_memory_MemAvailable_bytes", job).is_empty()
                && !series(&collector, "scraper", "node_cpu_seconds_total", "mode=idle").is_empty()
        },
    );
    found.unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.log()));

    let cpu = series(&collector, "scraper", "node_cpu_seconds_total", "mode=idle");
    let labels = &cpu[0]["labels"];
    assert_eq!(labels["job"], "node", "{labels}");
    assert_eq!(labels["instance"], instance.as_str());
    assert_eq!(labels["team"], "ops");
    assert!(labels["cpu"].as_str().is_some(), "{labels}");
    assert_eq!(cpu[0]["kind"], "counter");
    let memory = series(&collector, "scraper", "node_memory_MemAvailable_bytes", job);
    assert!(last_point(&memory).unwrap() > 0.0);
    assert_eq!(memory[0]["kind"], "gauge");
    let up = || last_point(&series(&collector, "scraper", "up", job));
    assert_eq!(up(), Some(1.0));

    // The target goes away: up drops to 0 within a few scrapes, the agent goes on.
    exporter.child.kill().unwrap();
    exporter.child.wait().unwrap();
    wait_until(
        "up = 0 after the exporter stopped",
        Duration::from_secs(20),
        || up() == Some(0.0),
    )
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.log()));
    assert!(
        agent.log().contains("Prometheus scrape failed"),
        "{}",
        agent.log()
    );
}

#[test]
fn traffic_sent_on_lo_arrives_as_flows_with_the_right_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let opts = AgentOptions {
        extra: format!(
            "[collectors.traffic]\nenabled = true\ninterface = \"lo\"\n\
             bpf_filter = \"udp port {port}\"\ninterval_secs = 1\n"
        ),
        ..AgentOptions::default()
    };
    let agent = Agent::start(tmp.path(), "sniffer", &collector.endpoint(), &opts).unwrap();
    wait_until("the capture to start", Duration::from_secs(20), || {
        agent.log().contains("Packet capture started.")
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}; agent log (the capture needs root or CAP_NET_RAW):\n{}",
            agent.log()
        )
    });

    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        sender.send_to(&[0u8; 200], ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // Each datagram is 20 + 8 + 200 bytes of IP.
    let want_bytes = 100 * 228;
    // Totals over the flows the REST API lists (one per flow and interval).
    let flows = || -> (u64, u64) {
        let Ok(body) = collector.get(&format!(
            "/api/v1/flows?agent=sniffer&port={port}&protocol=udp&limit=10000"
        )) else {
            return (0, 0);
        };
        let flows = body["flows"].as_array().cloned().unwrap_or_default();
        flows.iter().fold((0, 0), |(p, b), f| {
            assert_eq!(f["dst_addr"], "127.0.0.1");
            assert_eq!(f["protocol"], 17);
            (
                p + f["packets_out"].as_u64().unwrap_or(0),
                b + f["bytes_out"].as_u64().unwrap_or(0),
            )
        })
    };
    wait_until(
        "every datagram counted in stored flows",
        Duration::from_secs(20),
        || flows() == (100, want_bytes),
    )
    .unwrap_or_else(|e| panic!("{e}: stored {:?}; agent log:\n{}", flows(), agent.log()));
    // The top talker and the drop counters come as metrics.
    let talkers = collector
        .get("/api/v1/metrics?name=traffic_top_talker_bytes&agent=sniffer&label=rank=1&from=0")
        .unwrap();
    assert_eq!(
        talkers["series"][0]["labels"]["address"], "127.0.0.1",
        "{talkers}"
    );
    let drops = collector
        .get("/api/v1/metrics?name=traffic_kernel_dropped_packets_total&agent=sniffer&from=0")
        .unwrap();
    assert!(!drops["series"].as_array().unwrap().is_empty(), "{drops}");
}
