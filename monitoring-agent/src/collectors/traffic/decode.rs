//! From a captured frame to what a flow needs: addresses, ports, protocol, TCP
//! flags and the IP packet's length.
//!
//! Link layers: Ethernet (with 802.1Q / 802.1ad VLAN tags; Linux's `lo` is one),
//! BSD loopback (`DLT_NULL`), raw IP, and Linux cooked captures (`any`, SLL and
//! SLL2). Network layers: IPv4 (fragments after the first have no ports) and IPv6
//! (extension headers walked). A frame that is cut short, or not IP, is `None`:
//! counted by the caller, never a panic. The length is the IP header's own, so
//! that a small snap length still counts whole packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `DLT_NULL`: a 4-byte address family in host byte order.
pub const LINK_NULL: i32 = 0;
/// `DLT_EN10MB`: Ethernet.
pub const LINK_ETHERNET: i32 = 1;
/// `DLT_RAW` as most systems number it.
pub const LINK_RAW: i32 = 12;
/// `LINKTYPE_RAW` in savefiles.
pub const LINK_RAW_FILE: i32 = 101;
/// `DLT_LINUX_SLL`: Linux cooked capture v1.
pub const LINK_LINUX_SLL: i32 = 113;
/// `DLT_LINUX_SLL2`: Linux cooked capture v2.
pub const LINK_LINUX_SLL2: i32 = 276;

/// IP protocol numbers.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// ICMP.
pub const ICMP: u8 = 1;
/// ICMPv6.
pub const ICMPV6: u8 = 58;

/// TCP flag bits.
pub const TCP_SYN: u8 = 0x02;
/// ACK.
pub const TCP_ACK: u8 = 0x10;

/// One packet, as a flow counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Sender.
    pub src: IpAddr,
    /// Receiver.
    pub dst: IpAddr,
    /// Sender's port (0 without ports, or in a later fragment).
    pub src_port: u16,
    /// Receiver's port.
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// Length of the IP packet, headers included.
    pub length: u32,
}

/// Decodes a frame of link type `link` (a `DLT_*` value).
pub fn decode(link: i32, frame: &[u8]) -> Option<Packet> {
    let (ethertype, ip) = match link {
        LINK_ETHERNET => ethernet(frame)?,
        LINK_NULL => {
            let family = u32::from_ne_bytes(frame.get(..4)?.try_into().ok()?);
            // AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 by system.
            let ethertype = match family {
                2 => 0x0800,
                10 | 24 | 28 | 30 => 0x86dd,
                _ => return None,
            };
            (ethertype, frame.get(4..)?)
        }
        LINK_RAW | LINK_RAW_FILE => (version_ethertype(frame)?, frame),
        LINK_LINUX_SLL => (be16(frame, 14)?, frame.get(16..)?),
        LINK_LINUX_SLL2 => (be16(frame, 0)?, frame.get(20..)?),
        _ => return None,
    };
    match ethertype {
        0x0800 => ipv4(ip),
        0x86dd => ipv6(ip),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn version_ethertype(ip: &[u8]) -> Option<u16> {
    match ip.first()? >> 4 {
        4 => Some(0x0800),
        6 => Some(0x86dd),
        _ => None,
    }
}

/// The ethertype after any VLAN tags, and the payload.
fn ethernet(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    // 802.1Q and 802.1ad (QinQ) tags: 4 bytes each.
    while matches!(ethertype, 0x8100 | 0x88a8) {
        at += 4;
        ethertype = be16(frame, at)?;
    }
    Some((ethertype, frame.get(at + 2..)?))
}

fn ipv4(ip: &[u8]) -> Option<Packet> {
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || header_len < 20 {
        return None;
    }
    let length = u32::from(be16(ip, 2)?);
    let fragment_offset = be16(ip, 6)? & 0x1fff;
    let protocol = *ip.get(9)?;
    let src = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?));
    let dst = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?));
    // Only the first fragment carries the transport header.
    let transport = if fragment_offset == 0 {
        ip.get(header_len..)
    } else {
        None
    };
    Some(with_transport(src, dst, protocol, length, transport))
}

fn ipv6(ip: &[u8]) -> Option<Packet> {
    if ip.first()? >> 4 != 6 {
        return None;
    }
    let length = u32::from(be16(ip, 4)?) + 40;
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?));
    let mut next = *ip.get(6)?;
    let mut at = 40;
    let mut transport = None;
    // Walk hop-by-hop, routing, destination options and fragment headers; a few at
    // most, bounded so that a crafted chain cannot loop.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            44 => {
                let offset = be16(ip, at + 2)? >> 3;
                next = *ip.get(at)?;
                at += 8;
                if offset != 0 {
                    return Some(with_transport(src, dst, next, length, None));
                }
            }
            _ => {
                transport = ip.get(at..);
                break;
            }
        }
    }
    Some(with_transport(src, dst, next, length, transport))
}

fn with_transport(
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    length: u32,
    transport: Option<&[u8]>,
) -> Packet {
    let mut packet = Packet {
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        protocol,
        tcp_flags: 0,
        length,
    };
    if let Some(t) = transport
        && matches!(protocol, TCP | UDP)
        && let (Some(sp), Some(dp)) = (be16(t, 0), be16(t, 2))
    {
        packet.src_port = sp;
        packet.dst_port = dp;
        if protocol == TCP {
            packet.tcp_flags = t.get(13).copied().unwrap_or(0);
        }
    }
    packet
}
