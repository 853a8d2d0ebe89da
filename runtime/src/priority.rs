//! Thread priority: work that must never slow live analysis (split
//! training on a node) runs under Linux's `SCHED_IDLE`, which gives a
//! thread a core only when no other thread wants it.

/// Puts the calling thread under `SCHED_IDLE`. Returns the error where the
/// kernel refuses it (or on other systems, where it does nothing).
#[allow(unsafe_code)]
pub fn idle_thread() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid
        // `sched_param` that lives across the call.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::other("SCHED_IDLE exists on Linux only"))
    }
}

/// Whether the calling thread runs under `SCHED_IDLE`.
#[allow(unsafe_code)]
pub fn is_idle_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pid 0 is the calling thread; no pointers.
        unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_put_under_sched_idle_reports_it_and_others_do_not() {
        let t = std::thread::spawn(|| {
            super::idle_thread().expect("SCHED_IDLE");
            super::is_idle_thread()
        });
        assert!(t.join().expect("thread"));
        assert!(!super::is_idle_thread());
    }
}
