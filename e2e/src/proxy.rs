//! A loopback TCP proxy between an agent and a collector that a test can tell to
//! break the connection in chosen ways, byte-exactly and without touching either
//! process:
//!
//! - [`Cut::MidForward`]: at the next chunk the agent sends, forward only its first
//!   half and close both sides, so that a frame arrives cut short;
//! - [`Cut::AfterReply`]: swallow the next chunk the collector sends (its
//!   acknowledgements, of batches it has already committed) and close both sides, so
//!   that the agent resends batches the collector already holds;
//! - [`Gate::Refuse`] and [`Gate::Blackhole`]: new connections are closed at once, or
//!   accepted and left without an answer until the gate opens again.
//!
//! Plain threads and blocking sockets: two threads per connection, which is plenty
//! for one agent, and the test code around it is blocking too. It is TCP-level, so it
//! carries `wss://` just as well (a cut then tears a TLS record).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::*;

/// How a live connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// At the next agent→collector read: half of it forwarded, then both sides closed.
    MidForward,
    /// At the next collector→agent read: dropped, then both sides closed.
    AfterReply,
}

/// What happens to new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Proxied to the collector.
    Open,
    /// Accepted and closed at once (the agent's handshake fails).
    Refuse,
    /// Accepted and never answered until the gate opens, then closed.
    Blackhole,
}

/// Counts of what the proxy did, for the test to print and check.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections proxied to the collector.
    pub proxied: AtomicU64,
    /// Connections closed at once by [`Gate::Refuse`].
    pub refused: AtomicU64,
    /// Connections held unanswered by [`Gate::Blackhole`].
    pub blackholed: AtomicU64,
    /// Cuts made by [`Cut::MidForward`].
    pub cuts_mid_forward: AtomicU64,
    /// Cuts made by [`Cut::AfterReply`].
    pub cuts_after_reply: AtomicU64,
    /// Live connections closed by [`Proxy::close_all`].
    pub closed_by_test: AtomicU64,
    /// Bytes forwarded agent→collector.
    pub bytes_forward: AtomicU64,
    /// Bytes forwarded collector→agent.
    pub bytes_back: AtomicU64,
}

impl ProxyStats {
    /// Cuts made in mode `cut`.
    pub fn cuts(&self, cut: Cut) -> u64 {
        match cut {
            Cut::MidForward => self.cuts_mid_forward.load(Ordering::SeqCst),
            Cut::AfterReply => self.cuts_after_reply.load(Ordering::SeqCst),
        }
    }
}

impl std::fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        write!(
            f,
            "proxied {} refused {} blackholed {} cuts mid-forward {} after-reply {} \
             closed {} bytes forward {} back {}",
            g(&self.proxied),
            g(&self.refused),
            g(&self.blackholed),
            g(&self.cuts_mid_forward),
            g(&self.cuts_after_reply),
            g(&self.closed_by_test),
            g(&self.bytes_forward),
            g(&self.bytes_back),
        )
    }
}

/// One proxied connection.
struct Conn {
    agent: TcpStream,
    collector: TcpStream,
    cut_forward: AtomicBool,
    cut_back: AtomicBool,
    closed: AtomicBool,
    /// Bytes the collector has sent on it: more than zero once the WebSocket upgrade
    /// was answered.
    replied: AtomicU64,
}

impl Conn {
    /// Closes both sides, which also wakes the other direction's blocked read.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(self.agent.shutdown(Shutdown::Both));
        drop(self.collector.shutdown(Shutdown::Both));
    }
}

struct Shared {
    upstream: SocketAddr,
    conns: Mutex<Vec<Arc<Conn>>>,
    gate: Mutex<Gate>,
    /// Connections held by [`Gate::Blackhole`].
    held: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
    stats: ProxyStats,
}

impl Shared {
    fn live(&self) -> Vec<Arc<Conn>> {
        let mut conns = lock(&self.conns);
        conns.retain(|c| !c.closed.load(Ordering::SeqCst));
        conns.clone()
    }
}

/// A running proxy; stopped (every connection closed) when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a loopback port and proxies every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            conns: Mutex::new(Vec::new()),
            gate: Mutex::new(Gate::Open),
            held: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            stats: ProxyStats::default(),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Ok(Proxy {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The port the agent connects to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }

    /// Connections proxied now.
    pub fn live(&self) -> usize {
        self.shared.live().len()
    }

    /// Arms every live connection whose WebSocket upgrade the collector has answered
    /// to be cut the way `cut` says at its next chunk in that direction (a cut is then
    /// a lost session, never a failed handshake); returns how many were armed.
    pub fn arm(&self, cut: Cut) -> usize {
        let conns: Vec<_> = self
            .shared
            .live()
            .into_iter()
            .filter(|c| c.replied.load(Ordering::SeqCst) > 0)
            .collect();
        for c in &conns {
            match cut {
                Cut::MidForward => c.cut_forward.store(true, Ordering::SeqCst),
                Cut::AfterReply => c.cut_back.store(true, Ordering::SeqCst),
            }
        }
        conns.len()
    }

    /// Takes back every arming of `cut` not yet carried out.
    pub fn disarm(&self, cut: Cut) {
        for c in self.shared.live() {
            match cut {
                Cut::MidForward => c.cut_forward.store(false, Ordering::SeqCst),
                Cut::AfterReply => c.cut_back.store(false, Ordering::SeqCst),
            }
        }
    }

    /// Closes every live connection now, wherever its data stands.
    pub fn close_all(&self) {
        for c in self.shared.live() {
            c.close();
            self.shared
                .stats
                .closed_by_test
                .fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sets what happens to new connections; opening the gate closes the connections
    /// a blackhole held.
    pub fn set_gate(&self, gate: Gate) {
        *lock(&self.shared.gate) = gate;
        if gate != Gate::Blackhole {
            for s in lock(&self.shared.held).drain(..) {
                drop(s.shutdown(Shutdown::Both));
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept, which then sees `stop`.
        drop(TcpStream::connect(self.addr));
        if let Some(t) = self.accept.take() {
            drop(t.join());
        }
        self.set_gate(Gate::Open);
        for c in self.shared.live() {
            c.close();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(agent) = incoming else {
            continue;
        };
        let gate = *lock(&shared.gate);
        match gate {
            Gate::Refuse => {
                shared.stats.refused.fetch_add(1, Ordering::SeqCst);
                drop(agent.shutdown(Shutdown::Both));
                continue;
            }
            Gate::Blackhole => {
                shared.stats.blackholed.fetch_add(1, Ordering::SeqCst);
                lock(&shared.held).push(agent);
                continue;
            }
            Gate::Open => {}
        }
        let Ok(collector) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))
        else {
            // The collector is down: the agent sees its connection closed, as it
            // would see one refused.
            drop(agent.shutdown(Shutdown::Both));
            continue;
        };
        drop(agent.set_nodelay(true));
        drop(collector.set_nodelay(true));
        shared.stats.proxied.fetch_add(1, Ordering::SeqCst);
        let conn = Arc::new(Conn {
            agent,
            collector,
            cut_forward: AtomicBool::new(false),
            cut_back: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            replied: AtomicU64::new(0),
        });
        lock(&shared.conns).push(Arc::clone(&conn));
        for forward in [true, false] {
            let (conn, shared) = (Arc::clone(&conn), Arc::clone(shared));
            std::thread::spawn(move || pump(&conn, forward, &shared.stats));
        }
    }
}

/// Copies one direction until either side ends or a cut is due, then closes both.
fn pump(conn: &Conn, forward: bool, stats: &ProxyStats) {
    let (mut from, mut to, armed, bytes) = if forward {
        (
            &conn.agent,
            &conn.collector,
            &conn.cut_forward,
            &stats.bytes_forward,
        )
    } else {
        (
            &conn.collector,
            &conn.agent,
            &conn.cut_back,
            &stats.bytes_back,
        )
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed.swap(false, Ordering::SeqCst) {
            if forward {
                // Half a chunk reaches the collector: a frame (or handshake) cut short.
                let half = n / 2;
                if to.write_all(&buf[..half]).is_ok() {
                    bytes.fetch_add(half as u64, Ordering::SeqCst);
                }
                stats.cuts_mid_forward.fetch_add(1, Ordering::SeqCst);
            } else {
                // The reply is swallowed: acknowledgements of committed batches lost.
                stats.cuts_after_reply.fetch_add(1, Ordering::SeqCst);
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        bytes.fetch_add(n as u64, Ordering::SeqCst);
        if !forward {
            conn.replied.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    conn.close();
}
