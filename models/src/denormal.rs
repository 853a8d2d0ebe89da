//! Subnormal floats treated as zero while a model runs on the calling thread.
//!
//! Arithmetic on subnormal floats (magnitudes below 1.2e-38) takes a
//! microcode assist on x86 CPUs, about a hundred times the cost of a normal
//! operation. Some trained weights are subnormal: OSNet x0.25 from
//! torchreid's model zoo has 751 of them in its 1x1 convolutions, and the
//! network ran about 7x slower for them (13 ms an embedding on one thread,
//! against 2 ms with the flags set). The outputs
//! differ by nothing measurable: a value that small adds less than one unit
//! in the last place of any activation it meets.
//!
//! ONNX Runtime's own option (`session.set_denormal_as_zero`) sets the flags
//! on its intra-op threads only; with one intra-op thread, as Vidar's
//! detector and re-ID threads run, the model runs on the caller's thread, so
//! [`FlushDenormals`] sets them there around each run and puts the thread's
//! previous mode back after.
//!
//! x86-64: MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
//! Elsewhere the guard does nothing: on aarch64 (Jetsons) FPCR's FZ bit
//! would be the counterpart, not built because no such machine was at hand
//! to measure whether subnormals cost anything there.

/// While alive, the current thread treats subnormal floats as zero (inputs
/// and results); dropping it restores the thread's previous mode.
#[derive(Debug)]
#[must_use = "the mode is restored when the guard drops"]
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    previous: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn read_csr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: stmxcsr stores the 32-bit MXCSR register to the given address,
    // which is a valid, aligned, writable u32 on this stack frame. SSE is part
    // of the x86-64 baseline.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn write_csr(csr: u32) {
    // SAFETY: ldmxcsr loads MXCSR from a valid u32. Only the FTZ and DAZ bits
    // are ever changed from a value read from the register itself, so no
    // reserved bit is set (which would fault). It changes how this thread
    // rounds subnormals, nothing else.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
    }
}

impl FlushDenormals {
    /// Sets flush-to-zero and denormals-are-zero on this thread.
    pub fn set() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let previous = read_csr();
            if previous & FTZ_DAZ != FTZ_DAZ {
                write_csr(previous | FTZ_DAZ);
            }
            Self { previous }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self {}
        }
    }

    /// Whether this build can set the mode (x86-64 only).
    pub const SUPPORTED: bool = cfg!(target_arch = "x86_64");
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if read_csr() != self.previous {
            write_csr(self.previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// 1e-30 * 1e-10 = 1e-40: a subnormal result, or zero when flushed.
    fn tiny_product() -> f32 {
        black_box(1e-30f32) * black_box(1e-10f32)
    }

    #[test]
    fn subnormals_are_zero_inside_the_guard_and_back_after() {
        let before = tiny_product();
        assert!(before > 0.0 && !before.is_normal(), "{before:e}");
        {
            let _guard = FlushDenormals::set();
            let inside = tiny_product();
            if FlushDenormals::SUPPORTED {
                assert_eq!(inside, 0.0, "flushed result");
                // A subnormal operand reads as zero too (denormals-are-zero).
                let subnormal = black_box(f32::from_bits(1));
                assert_eq!(black_box(subnormal * 2.0), 0.0);
            } else {
                assert_eq!(inside, before);
            }
            // Nested guards restore the outer one's mode, not the thread's first.
            {
                let _inner = FlushDenormals::set();
            }
            if FlushDenormals::SUPPORTED {
                assert_eq!(tiny_product(), 0.0, "the outer guard's mode stays");
            }
        }
        let after = tiny_product();
        assert_eq!(after.to_bits(), before.to_bits(), "mode restored");
        // Normal arithmetic is untouched.
        let _guard = FlushDenormals::set();
        assert_eq!(black_box(1.5f32) * black_box(2.0f32), 3.0);
    }
}
