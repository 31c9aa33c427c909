//! Decoding crafted frames of every link type, flow orientation and bounds, and
//! (feature `pcap`) savefiles written by the test and live capture on `lo`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::decode::*;
use super::flows::FlowTable;

/// An IPv4 packet of `payload` bytes of transport data after a TCP or UDP header.
pub(super) fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    let transport_len = if protocol == TCP { 20 } else { 8 };
    let total = 20 + transport_len + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    if protocol == TCP {
        p[32] = 5 << 4;
        p[33] = flags;
    } else {
        p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    p
}

/// The packet in an Ethernet frame, optionally VLAN-tagged.
pub(super) fn ethernet(ip: &[u8], vlan: bool) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
    }
    let ethertype: u16 = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

#[test]
fn decodes_ipv4_over_every_link_type() {
    let ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], TCP, 40000, 443, TCP_SYN, 100);
    let want = Packet {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        src_port: 40000,
        dst_port: 443,
        protocol: TCP,
        tcp_flags: TCP_SYN,
        length: 140,
    };
    assert_eq!(decode(LINK_ETHERNET, &ethernet(&ip, false)), Some(want));
    assert_eq!(decode(LINK_ETHERNET, &ethernet(&ip, true)), Some(want));
    assert_eq!(decode(LINK_RAW, &ip), Some(want));
    let mut null = 2u32.to_ne_bytes().to_vec();
    null.extend_from_slice(&ip);
    assert_eq!(decode(LINK_NULL, &null), Some(want));
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x08, 0x00]);
    sll.extend_from_slice(&ip);
    assert_eq!(decode(LINK_LINUX_SLL, &sll), Some(want));
    let mut sll2 = vec![0x08, 0x00];
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(&ip);
    assert_eq!(decode(LINK_LINUX_SLL2, &sll2), Some(want));
    // A 64-byte snap length still counts the whole packet.
    assert_eq!(
        decode(LINK_ETHERNET, &ethernet(&ip, false)[..64])
            .unwrap()
            .length,
        140
    );
}

#[test]
fn decodes_ipv6_with_extension_headers_and_icmp() {
    let src = Ipv6Addr::LOCALHOST;
    let dst = "fe80::1".parse::<Ipv6Addr>().unwrap();
    // Hop-by-hop options (8 bytes) then UDP with 10 bytes of data.
    let mut p = vec![0u8; 40 + 8 + 8 + 10];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&26u16.to_be_bytes());
    p[6] = 0; // hop-by-hop
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = UDP;
    p[48..50].copy_from_slice(&5353u16.to_be_bytes());
    p[50..52].copy_from_slice(&53u16.to_be_bytes());
    let got = decode(LINK_RAW, &p).unwrap();
    assert_eq!(
        (got.protocol, got.src_port, got.dst_port, got.length),
        (UDP, 5353, 53, 66)
    );
    assert_eq!(got.dst, IpAddr::V6(dst));

    let icmp = ipv4([1, 1, 1, 1], [2, 2, 2, 2], ICMP, 0, 0, 0, 0);
    let got = decode(LINK_RAW, &icmp).unwrap();
    assert_eq!((got.protocol, got.src_port, got.dst_port), (ICMP, 0, 0));
}

#[test]
fn truncated_or_foreign_frames_are_none() {
    let ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], UDP, 1, 2, 0, 0);
    let frame = ethernet(&ip, false);
    for cut in 0..34 {
        assert_eq!(decode(LINK_ETHERNET, &frame[..cut]), None, "cut at {cut}");
    }
    let mut arp = frame.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(decode(LINK_ETHERNET, &arp), None);
    assert_eq!(decode(999, &frame), None);
    // Later fragments have no ports.
    let mut fragment = ip.clone();
    fragment[6..8].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(decode(LINK_RAW, &fragment).unwrap().src_port, 0);
}

proptest::proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(link in proptest::sample::select(vec![0, 1, 12, 101, 113, 276]), bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
        std::hint::black_box(decode(link, &bytes));
    }
}

fn packet(src: (u8, u16), dst: (u8, u16), flags: u8, length: u32) -> Packet {
    Packet {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, src.0)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, dst.0)),
        src_port: src.1,
        dst_port: dst.1,
        protocol: TCP,
        tcp_flags: flags,
        length,
    }
}

#[test]
fn flows_count_both_directions_and_know_who_opened_them() {
    let mut t = FlowTable::new(100);
    // The server's SYN-ACK is seen first (capture started mid-handshake).
    t.add(&packet((2, 8080), (1, 50000), TCP_SYN | TCP_ACK, 60));
    t.add(&packet((1, 50000), (2, 8080), TCP_ACK, 52));
    t.add(&packet((1, 50000), (2, 8080), TCP_ACK, 1052));
    // A fresh connection: its SYN settles the orientation.
    t.add(&packet((3, 9000), (4, 9001), TCP_SYN, 60));
    t.add(&packet((4, 9001), (3, 9000), TCP_SYN | TCP_ACK, 60));
    // No SYN: the well-known port is the service.
    t.add(&packet((5, 22), (6, 40000), TCP_ACK, 100));
    let interval = t.drain(1_000, 2);
    assert_eq!(interval.flows.len(), 3);
    let first = &interval.flows[0];
    assert_eq!((first.src_port, first.dst_port), (50000, 8080));
    assert_eq!(
        (
            first.bytes_out,
            first.bytes_in,
            first.packets_out,
            first.packets_in
        ),
        (1104, 60, 2, 1)
    );
    assert_eq!(first.tcp_flags, TCP_SYN | TCP_ACK);
    assert_eq!(first.end_ns, 1_000);
    let syn = interval.flows.iter().find(|f| f.src_port == 9000).unwrap();
    assert_eq!((syn.dst_port, syn.bytes_out, syn.bytes_in), (9001, 60, 60));
    let ssh = interval.flows.iter().find(|f| f.dst_port == 22).unwrap();
    assert_eq!((ssh.src_port, ssh.bytes_in, ssh.bytes_out), (40000, 100, 0));
    assert_eq!(interval.top_talkers.len(), 2);
    assert_eq!(interval.top_talkers[0].1, 1164);
    assert_eq!((interval.packets, interval.bytes), (6, 1384));
    assert!(t.is_empty(), "drained");
}

#[test]
fn the_table_is_bounded_and_counts_what_it_did_not_keep() {
    let mut t = FlowTable::new(10);
    for port in 0..100u16 {
        t.add(&packet((1, 1000 + port), (2, 80), TCP_SYN, 60));
    }
    // Packets of kept flows still count.
    t.add(&packet((1, 1000), (2, 80), TCP_ACK, 40));
    assert_eq!(t.len(), 10);
    let interval = t.drain(0, 10);
    assert_eq!(interval.flows.len(), 10);
    assert_eq!(
        (interval.overflow_packets, interval.overflow_bytes),
        (90, 5400)
    );
    assert_eq!(interval.packets, 11);
}

#[test]
fn config_defaults_and_problems() {
    let c = super::TrafficConfig::default();
    assert!(!c.enabled && c.interface == "any" && c.interval_secs == 10);
    assert!(c.validate().is_empty());
    let bad: super::TrafficConfig =
        toml::from_str("interval_secs = 0\nsnaplen = 10\nmax_flows = 0").unwrap();
    let keys: Vec<String> = bad.validate().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "collectors.traffic.interval_secs",
            "collectors.traffic.snaplen",
            "collectors.traffic.max_flows"
        ]
    );
    let enabled: super::TrafficConfig = toml::from_str("enabled = true").unwrap();
    assert_eq!(enabled.validate().is_empty(), cfg!(feature = "pcap"));
}
