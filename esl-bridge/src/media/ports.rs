//! UDP ports for FreeSWITCH's side of unicast streams.
//!
//! `unicast` makes FreeSWITCH bind the `local-port` we name, so we must name one that is
//! free. Binding port 0 and releasing it ([`super::free_udp_port`]) races with every bind
//! on the host, our own legs' ephemeral ports included: under 50 concurrent calls
//! FreeSWITCH's bind failed with `EADDRINUSE`. A [`PortPool`] leases ports from a range
//! outside the kernel's ephemeral range (Linux: 32768–60999) and FreeSWITCH's RTP range
//! (16384–32768), never the same port to two live calls, and returns a port when its
//! [`PortLease`] is dropped.

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

/// The default range: above Linux's ephemeral ports and FreeSWITCH's RTP ports.
pub const DEFAULT_PORT_RANGE: RangeInclusive<u16> = 61000..=64999;

/// Leases UDP ports for FreeSWITCH's unicast sockets. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct PortPool {
    state: Arc<Mutex<PoolState>>,
}

#[derive(Debug)]
struct PoolState {
    range: RangeInclusive<u16>,
    next: u16,
    leased: HashSet<u16>,
}

/// One leased port; back in the pool when dropped (hold it for the call's lifetime).
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    state: Arc<Mutex<PoolState>>,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leased
            .remove(&self.port);
    }
}

impl PortPool {
    /// A pool over `range`, which must be non-empty and above the well-known ports.
    pub fn new(range: RangeInclusive<u16>) -> Result<Self, super::MediaError> {
        if range.is_empty() || *range.start() < 1024 {
            return Err(super::MediaError::Config(
                "the media port range must be non-empty and start at 1024 or above",
            ));
        }
        Ok(Self {
            state: Arc::new(Mutex::new(PoolState {
                next: *range.start(),
                range,
                leased: HashSet::new(),
            })),
        })
    }

    /// Leases the next port that no live call holds and that is free on `ip` (checked by
    /// binding it when `ip` is one of this host's addresses; a remote FreeSWITCH's ports
    /// cannot be checked from here). Round-robin, so a port just released is the last to
    /// be reused: a late datagram of the previous call finds nobody.
    pub fn lease(&self, ip: IpAddr) -> io::Result<PortLease> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, end) = (*state.range.start(), *state.range.end());
        let span = u32::from(end - start) + 1;
        for _ in 0..span {
            let candidate = state.next;
            state.next = if candidate == end {
                start
            } else {
                candidate + 1
            };
            if state.leased.contains(&candidate) {
                continue;
            }
            match std::net::UdpSocket::bind((ip, candidate)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {}
                Err(_) => continue,
            }
            state.leased.insert(candidate);
            return Ok(PortLease {
                port: candidate,
                state: self.state.clone(),
            });
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free UDP port in {start}-{end} for FreeSWITCH's unicast socket"),
        ))
    }

    /// Ports leased now.
    pub fn leased(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leased
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A range of `n` ports that are free now (found by binding a block).
    fn free_range(n: u16) -> RangeInclusive<u16> {
        for start in (61000..64000).step_by(97) {
            let sockets: Vec<_> = (start..start + n)
                .map_while(|p| std::net::UdpSocket::bind((LOOPBACK, p)).ok())
                .collect();
            if sockets.len() == usize::from(n) {
                return start..=start + n - 1;
            }
        }
        panic!("no free block of {n} UDP ports on loopback");
    }

    #[test]
    fn live_leases_never_share_a_port_and_dropped_ones_come_back() {
        let pool = PortPool::new(free_range(3)).expect("pool");
        let a = pool.lease(LOOPBACK).expect("a");
        let b = pool.lease(LOOPBACK).expect("b");
        let c = pool.lease(LOOPBACK).expect("c");
        let mut ports = [a.port(), b.port(), c.port()];
        ports.sort_unstable();
        assert_eq!(ports[0] + 1, ports[1]);
        assert_eq!(ports[1] + 1, ports[2]);
        let err = pool.lease(LOOPBACK).expect_err("exhausted");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("no free UDP port"), "{err}");
        let freed = b.port();
        drop(b);
        assert_eq!(pool.leased(), 2);
        assert_eq!(pool.lease(LOOPBACK).expect("again").port(), freed);
    }

    #[test]
    fn a_port_someone_else_holds_is_skipped() {
        let range = free_range(2);
        let squatter = std::net::UdpSocket::bind((LOOPBACK, *range.start())).expect("bind");
        let pool = PortPool::new(range.clone()).expect("pool");
        assert_eq!(pool.lease(LOOPBACK).expect("lease").port(), *range.end());
        drop(squatter);
    }

    #[test]
    fn bad_ranges_are_refused() {
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5000..=4000;
        assert!(PortPool::new(empty).is_err());
        assert!(PortPool::new(80..=90).is_err());
        assert!(PortPool::new(DEFAULT_PORT_RANGE).is_ok());
    }

    #[test]
    fn a_remote_address_is_leased_without_a_bind_check() {
        // TEST-NET-1: never an address of this host.
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let pool = PortPool::new(61000..=61001).expect("pool");
        let a = pool.lease(remote).expect("a");
        let b = pool.lease(remote).expect("b");
        assert_ne!(a.port(), b.port());
    }
}
