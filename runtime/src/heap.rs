//! What the process' C heap holds, as the allocator counts it (glibc's
//! `mallinfo2`), exported by both binaries as `vidar_process_heap_bytes`.
//!
//! RSS alone cannot tell a leak from memory the allocator keeps for reuse:
//! `in_use` is what the program holds (Rust's and SQLite's allocations alike),
//! `free` what the allocator holds without handing it back to the system.
//! A leak grows `in_use`; fragmentation grows `free` (and RSS) at a flat
//! `in_use`. Where the allocator is not glibc's, nothing is reported.

use crate::metrics::Families;
use std::fmt;

/// The heap's bytes, from the allocator's own books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    /// Bytes handed to the program and not yet freed (small blocks in the
    /// arenas plus large blocks mapped on their own).
    pub in_use: u64,
    /// Bytes free inside the arenas, kept by the allocator for reuse.
    pub free: u64,
}

/// The heap now, or `None` where the allocator keeps no such books.
///
/// glibc walks every arena under its lock: cheap enough for a scrape (every
/// few seconds), not for a hot path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn heap() -> Option<Heap> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by
    // value; glibc (>= 2.33, Debian 12 has 2.36) locks each arena while it
    // reads it, so it is safe from any thread at any time.
    let m = unsafe { libc::mallinfo2() };
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Some(Heap {
        in_use: n(m.uordblks).saturating_add(n(m.hblkhd)),
        free: n(m.fordblks),
    })
}

/// The heap now, or `None` where the allocator keeps no such books.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap() -> Option<Heap> {
    None
}

/// Writes `vidar_process_heap_bytes{state="in_use"|"free"}` (nothing where
/// [`heap`] knows nothing).
pub fn encode(f: &mut Families<'_>) -> fmt::Result {
    let Some(h) = heap() else {
        return Ok(());
    };
    f.gauges(
        "vidar_process_heap_bytes",
        "The C heap by the allocator's books: in_use is held by the program (Rust and SQLite), free is kept by the allocator for reuse.",
        [([("state", "in_use")], h.in_use), ([("state", "free")], h.free)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The books follow a real allocation: 64 MiB held shows in `in_use`, and
    /// leaves it once freed (a mapped block goes back at once).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn in_use_follows_what_the_program_holds() {
        let before = heap().expect("glibc keeps books");
        let block = vec![1u8; 64 << 20];
        let held = heap().expect("books");
        assert!(
            held.in_use >= before.in_use + (60 << 20),
            "{before:?} -> {held:?}"
        );
        drop(std::hint::black_box(block));
        let after = heap().expect("books");
        assert!(
            after.in_use + (60 << 20) <= held.in_use,
            "{held:?} -> {after:?}"
        );
    }

    #[test]
    fn the_family_is_rendered_with_both_states() {
        let mut e = crate::Exposition::new(&[("node", "n")]);
        e.collect(encode);
        let text = e.render();
        if heap().is_some() {
            for state in ["in_use", "free"] {
                let v =
                    crate::metrics::value(&text, "vidar_process_heap_bytes", &[("state", state)]);
                assert!(v.is_some(), "{state} missing in {text}");
            }
            assert!(crate::metrics::value(
                &text,
                "vidar_process_heap_bytes",
                &[("state", "in_use")]
            )
            .is_some_and(|v| v > 0.0));
        }
    }
}
