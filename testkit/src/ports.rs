//! A TCP port nothing listens on, for the tests that need one.
//!
//! Listeners take port 0 and their process reports the port the kernel
//! gave it ([`crate::process`]); nothing here is for them. Two kinds of test
//! still need a port chosen in advance: one that connects where nothing
//! listens ("connection refused", a master that is down), and one that
//! restarts a process on the port its first life had (a camera that comes
//! back). Such a port is still open to the usual race (chosen here, bound
//! by someone else before use), whose most likely winner is an outgoing
//! connection on the same machine: every `connect` gets a port from the
//! ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by
//! default). So ports come from *below* that range, where the kernel never
//! assigns one by itself; each is handed out at most once per process (tests
//! in one binary run on parallel threads); and each process starts at its
//! own offset (from its pid) and takes the next port that binds.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const FIRST: u32 = 12_000;

/// Ports handed out so far by this process.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The first port of the kernel's ephemeral range (32768 when unreadable).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&p: &u32| p > FIRST + 1000)
        .unwrap_or(32_768)
}

/// A TCP port nothing listens on on 127.0.0.1 now, outside the ephemeral
/// range, and never returned before by this process.
///
/// # Panics
/// When no port in the range binds (the machine is out of ports).
pub fn unused_port() -> u16 {
    try_unused_port().expect("an unused TCP port on 127.0.0.1 below the ephemeral range")
}

/// [`unused_port`], or an error when no port binds.
pub fn try_unused_port() -> std::io::Result<u16> {
    let span = ephemeral_start() - FIRST;
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset + k) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no free TCP port on 127.0.0.1 in {FIRST}..{}", FIRST + span),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_unique_free_and_below_the_ephemeral_range() {
        let end = ephemeral_start();
        let mut seen = HashSet::new();
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50).map(|_| unused_port()).collect::<Vec<_>>()))
            .collect();
        for h in handles {
            for p in h.join().expect("thread") {
                assert!(seen.insert(p), "port {p} handed out twice");
                assert!((FIRST..end).contains(&u32::from(p)), "{p}");
                TcpListener::bind(("127.0.0.1", p)).expect("the port binds");
            }
        }
        assert_eq!(seen.len(), 200);
    }
}
