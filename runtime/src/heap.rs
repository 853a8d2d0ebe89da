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

/// Hands the free memory the allocator keeps inside its arenas back to the
/// system (glibc's `malloc_trim(0)`: free pages anywhere in every arena, not
/// only at their tops), so a long-lived process whose allocations come and go
/// in many sizes (SQLite page caches of short-lived readers, HTTP bodies)
/// does not keep its high-water mark as RSS. True when memory was released;
/// `None` where the allocator is not glibc's.
///
/// It walks every arena under its lock (a few milliseconds for tens of MB):
/// call it after a burst of work, not per request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> Option<bool> {
    // SAFETY: malloc_trim takes a plain integer (the bytes to leave at the
    // top of the main arena) and locks each arena while it trims it; it is
    // safe from any thread at any time.
    let released = unsafe { libc::malloc_trim(0) };
    Some(released != 0)
}

/// Hands free allocator memory back to the system; `None` where the
/// allocator is not glibc's.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> Option<bool> {
    None
}

/// Most malloc arenas [`steady`] allows: the main one and one more.
pub const STEADY_ARENAS: i32 = 2;
/// Blocks at least this large [`steady`] maps on their own, bytes.
pub const STEADY_MMAP_THRESHOLD: i32 = 256 * 1024;

/// Sets glibc's allocator for a process that should hold a flat RSS for
/// months rather than allocate fast from many threads. Call it first thing
/// in `main`, before any thread starts. `vidar-master` calls it: with it,
/// the master's one-hour soak held its RSS flat (+0.3 % after minute 10,
/// against +8.3 % without), and the cluster bench's re-ID round trip and sync
/// rate were unchanged (steady / default, 9 interleaved rounds: p99 0.86,
/// crops/s 0.99, sync records/s 0.99; docs/benchmarks.md). True when both settings
/// took; `None` where the allocator is not glibc's.
///
/// - At most [`STEADY_ARENAS`] arenas (glibc's default is eight per core):
///   each thread that allocates gets an arena of its own, and every arena
///   keeps its own free lists and high-water mark, so tens of threads (HTTP
///   workers, zenoh's runtime, sync, merges) fragment memory tens of ways. A
///   one-hour soak of the master showed its RSS growth after the first
///   faults spread over nine arenas.
/// - Blocks of [`STEADY_MMAP_THRESHOLD`] and more are mapped on their own
///   and returned to the system when freed. glibc's default starts there too
///   but raises the threshold to the largest block freed so far (up to
///   32 MiB), after which sync batches and snapshots of a few MB are carved
///   out of the arenas and leave holes; a fixed threshold keeps them out.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn steady() -> Option<bool> {
    // SAFETY: mallopt takes two plain integers and changes the allocator's
    // parameters under its lock; with these two it never invalidates a block
    // already handed out (they apply to arenas created and blocks allocated
    // afterwards).
    let arenas = unsafe { libc::mallopt(libc::M_ARENA_MAX, STEADY_ARENAS) };
    // SAFETY: as above.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD) };
    Some(arenas == 1 && mmap == 1)
}

/// Sets the allocator for a flat RSS; `None` where it is not glibc's.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn steady() -> Option<bool> {
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

    /// The tests below read the whole process's heap: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The books follow a real allocation: 64 MiB held shows in `in_use`, and
    /// leaves it once freed (a mapped block goes back at once).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn in_use_follows_what_the_program_holds() {
        let _alone = alone();
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

    /// Once steady, a block above the threshold is mapped on its own even
    /// after a larger one was freed (glibc's default would have raised its
    /// threshold past it and carved it out of an arena).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    #[allow(unsafe_code)]
    fn a_steady_heap_keeps_large_blocks_out_of_the_arenas() {
        fn mapped() -> usize {
            // SAFETY: as in `heap`.
            unsafe { libc::mallinfo2() }.hblkhd
        }
        let _alone = alone();
        assert_eq!(steady(), Some(true));
        drop(std::hint::black_box(vec![1u8; 8 << 20]));
        // `mapped` is the whole process's: another test's thread may map or
        // unmap a block of its own between two reads (CI saw one). The
        // property is deterministic for this block, so a few tries tell it
        // from that noise; under glibc's default threshold every try fails.
        let mut tries = Vec::new();
        for _ in 0..5 {
            let before = mapped();
            let block = std::hint::black_box(vec![1u8; 512 << 10]);
            let held = mapped();
            drop(block);
            let after = mapped();
            if held >= before + (512 << 10) && after < before + (512 << 10) {
                return;
            }
            tries.push((before, held, after));
        }
        panic!(
            "not mapped on its own, or not given back when freed: (before, held, after) {tries:?}"
        );
    }

    /// Memory freed in many small blocks stays with the allocator (free in
    /// its books) until trimmed; trimming hands it back, so RSS falls.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trimming_hands_freed_small_blocks_back_to_the_system() {
        let _alone = alone();
        fn rss_anon_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").expect("status");
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("RssAnon")
        }
        // 48 MiB in 16 KiB blocks (below the mmap threshold: they live in the
        // arena), touched; then all but every 64th freed, so the arena cannot
        // shrink from its top and its free memory is scattered.
        let mut blocks: Vec<Vec<u8>> = (0..3072).map(|i| vec![i as u8; 16 << 10]).collect();
        let mut kept = Vec::new();
        for (i, b) in blocks.drain(..).enumerate() {
            if i % 64 == 0 {
                kept.push(b);
            }
        }
        let before = rss_anon_kib();
        assert_eq!(trim(), Some(true), "there was free memory to hand back");
        let after = rss_anon_kib();
        assert!(
            after + 24 * 1024 <= before,
            "RssAnon {before} kB -> {after} kB: trimming released less than 24 MiB of 47"
        );
        drop(std::hint::black_box(kept));
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
