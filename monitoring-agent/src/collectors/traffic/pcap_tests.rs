//! The capture with libpcap (feature `pcap`): savefiles written by the test, and a
//! live capture on `lo` while the test sends TCP and UDP traffic of known size.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monitoring_common::FlowEvent;
use monitoring_common::event::{Event, EventKind, Labels};
use tokio_util::sync::CancellationToken;

use super::TrafficConfig;
use super::capture::run;
use super::decode::{TCP, TCP_SYN, UDP};
use super::tests::{ethernet, ipv4};

fn flows(events: &[Event]) -> Vec<FlowEvent> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Flow(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

fn write_savefile(path: &std::path::Path, packets: &[(i64, Vec<u8>)]) {
    let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
    let mut file = capture.savefile(path).unwrap();
    for (usec, frame) in packets {
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: usec / 1_000_000,
                tv_usec: usec % 1_000_000,
            },
            caplen: frame.len() as u32,
            len: frame.len() as u32,
        };
        file.write(&pcap::Packet::new(&header, frame));
    }
    file.flush().unwrap();
}

#[test]
fn a_savefile_gives_flows_per_interval_of_its_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pcap");
    let a = [192, 168, 1, 10];
    let b = [192, 168, 1, 20];
    let mut packets = Vec::new();
    // Interval [100 s, 110 s): a TCP handshake and 3 data packets, and UDP.
    packets.push((
        100_000_000,
        ethernet(&ipv4(a, b, TCP, 40000, 80, TCP_SYN, 0), false),
    ));
    for i in 0..3 {
        packets.push((
            101_000_000 + i,
            ethernet(&ipv4(a, b, TCP, 40000, 80, 0x18, 1000), false),
        ));
    }
    packets.push((
        102_000_000,
        ethernet(&ipv4(b, a, TCP, 80, 40000, 0x10, 0), false),
    ));
    packets.push((
        103_000_000,
        ethernet(&ipv4(a, b, UDP, 5000, 53, 0, 30), false),
    ));
    // Interval [110 s, 120 s): one more UDP packet.
    packets.push((
        111_000_000,
        ethernet(&ipv4(a, b, UDP, 5000, 53, 0, 30), true),
    ));
    write_savefile(&path, &packets);

    let config = TrafficConfig {
        savefile: Some(path.clone()),
        ..TrafficConfig::default()
    };
    let mut emitted: Vec<Vec<Event>> = Vec::new();
    let counts = run(
        &config,
        &Labels::new(),
        |e| {
            emitted.push(e);
            true
        },
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!((counts.frames, counts.undecoded), (7, 0));
    assert_eq!(emitted.len(), 2, "two intervals");
    let first = flows(&emitted[0]);
    let tcp = first.iter().find(|f| f.protocol == TCP).unwrap();
    assert_eq!((tcp.src_port, tcp.dst_port), (40000, 80));
    assert_eq!((tcp.packets_out, tcp.packets_in), (4, 1));
    assert_eq!(tcp.bytes_out, 40 + 3 * 1040);
    assert_eq!(tcp.bytes_in, 40);
    assert_eq!(tcp.end_ns, 110_000_000_000);
    assert_eq!(emitted[0][0].timestamp_ns, 100_000_000_000);
    let udp = first.iter().find(|f| f.protocol == UDP).unwrap();
    assert_eq!((udp.src_port, udp.dst_port, udp.bytes_out), (5000, 53, 58));
    let second = flows(&emitted[1]);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].packets_out, 1);

    // A BPF filter applies to savefiles too.
    let config = TrafficConfig {
        // As in tcpdump, a VLAN-tagged frame needs `vlan` in the filter.
        bpf_filter: "udp or (vlan and udp)".into(),
        ..config
    };
    let mut all = Vec::new();
    run(
        &config,
        &Labels::new(),
        |e| {
            all.extend(e);
            true
        },
        &CancellationToken::new(),
    )
    .unwrap();
    assert!(flows(&all).iter().all(|f| f.protocol == UDP));
    assert_eq!(flows(&all).len(), 2);
}

#[test]
fn live_capture_on_lo_counts_the_traffic_the_test_sends() {
    let udp_server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_server.local_addr().unwrap().port();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    let config = TrafficConfig {
        enabled: true,
        interface: "lo".into(),
        bpf_filter: format!("udp port {udp_port} or tcp port {tcp_port}"),
        interval_secs: 1,
        ..TrafficConfig::default()
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let capture = {
        let (events, stop) = (Arc::clone(&events), stop.clone());
        std::thread::spawn(move || {
            run(
                &config,
                &Labels::new(),
                |e| {
                    events.lock().unwrap().extend(e);
                    true
                },
                &stop,
            )
        })
    };
    // Let the capture open before sending.
    std::thread::sleep(Duration::from_millis(500));
    if capture.is_finished() {
        let error = capture.join().unwrap().unwrap_err();
        panic!("live capture on lo needs root or CAP_NET_RAW: {error}");
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..50 {
        client
            .send_to(&[7u8; 100], ("127.0.0.1", udp_port))
            .unwrap();
    }
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.len()
    });
    let mut stream = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    stream.write_all(&vec![1u8; 100_000]).unwrap();
    drop(stream);
    assert_eq!(server.join().unwrap(), 100_000);
    std::thread::sleep(Duration::from_millis(2500));
    stop.cancel();
    capture.join().unwrap().unwrap();

    let events = events.lock().unwrap();
    let all = flows(&events);
    let udp: Vec<&FlowEvent> = all.iter().filter(|f| f.protocol == UDP).collect();
    let (packets, bytes) = udp
        .iter()
        .fold((0, 0), |(p, b), f| (p + f.packets_out, b + f.bytes_out));
    assert_eq!(packets, 50, "{udp:?}");
    assert_eq!(bytes, 50 * (20 + 8 + 100));
    assert!(
        udp.iter()
            .all(|f| f.dst_port == udp_port && f.bytes_in == 0)
    );
    let tcp: Vec<&FlowEvent> = all.iter().filter(|f| f.protocol == TCP).collect();
    let out: u64 = tcp.iter().map(|f| f.bytes_out).sum();
    let packets_out: u64 = tcp.iter().map(|f| f.packets_out).sum();
    assert!(
        tcp.iter().all(|f| f.dst_port == tcp_port),
        "the client opened it: {tcp:?}"
    );
    assert!(tcp.iter().any(|f| f.tcp_flags & TCP_SYN != 0));
    // Payload plus at least 40 bytes of headers per packet sent.
    assert!(
        out >= 100_000 + 40 * packets_out,
        "{out} bytes in {packets_out} packets"
    );
    assert!(
        out <= 100_000 + 80 * packets_out,
        "{out} bytes in {packets_out} packets"
    );
    // The drop counters are shipped with every interval.
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Metric(m) if m.name == "traffic_kernel_dropped_packets_total")));
}
