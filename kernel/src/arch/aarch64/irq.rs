//! Masking of IRQ and FIQ on the local CPU (PSTATE.DAIF). On the host, where the pure
//! parts of the kernel are unit-tested, there are no interrupts to mask.
//!
//! Test builds (feature `ktest`) also measure how long each CPU keeps IRQs masked
//! (`stretch`): a stretch starts when `save_and_disable` masks IRQs that were on and
//! ends when `restore` or `enable` turns them back on, timed with the virtual counter;
//! the exception handlers for EL0 mark the start of the stretch the hardware opens on
//! entry (`entered_from_el0`) and its end at the return (`leaving_for_el0`). Not seen:
//! IRQs taken from EL0 until the return, and the unmask of `thread_trampoline`. Time
//! asleep in `wait` does not count (an IRQ ends the WFI at once, masked or not).

/// The DAIF bits as they were before masking.
pub type IrqState = u64;

#[cfg(target_os = "none")]
mod imp {
    use super::IrqState;

    /// PSTATE.DAIF.I: IRQs masked.
    const DAIF_I: u64 = 1 << 7;

    #[track_caller]
    pub fn save_and_disable() -> IrqState {
        let daif: u64;
        // SAFETY: reads DAIF and masks IRQ/FIQ; no memory is touched.
        unsafe {
            core::arch::asm!("mrs {}, daif", "msr daifset, #3", out(reg) daif, options(nomem, nostack))
        };
        #[cfg(feature = "ktest")]
        if daif & DAIF_I == 0 {
            super::stretch::begin(core::panic::Location::caller());
        }
        daif
    }

    pub fn restore(state: IrqState) {
        #[cfg(feature = "ktest")]
        if state & DAIF_I == 0 {
            super::stretch::end();
        }
        // SAFETY: puts back a DAIF value read by save_and_disable.
        unsafe { core::arch::asm!("msr daif, {}", in(reg) state, options(nomem, nostack)) };
    }

    /// Mask IRQs/FIQ without keeping the old state (before a return to EL0).
    #[track_caller]
    pub fn disable() {
        let _ = save_and_disable();
    }

    pub fn enable() {
        #[cfg(feature = "ktest")]
        super::stretch::end();
        // SAFETY: unmasks IRQ/FIQ; handlers are installed before this is called.
        unsafe { core::arch::asm!("msr daifclr, #3", options(nomem, nostack)) };
    }

    pub fn enabled() -> bool {
        let daif: u64;
        // SAFETY: register read.
        unsafe {
            core::arch::asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags))
        };
        daif & DAIF_I == 0
    }

    /// An exception from EL0 has masked IRQs (the hardware does on entry): in test
    /// builds a stretch starts at the caller.
    #[track_caller]
    pub fn entered_from_el0() {
        #[cfg(feature = "ktest")]
        super::stretch::begin(core::panic::Location::caller());
    }

    /// The CPU is about to return to EL0, which runs with IRQs on: the stretch ends.
    pub fn leaving_for_el0() {
        #[cfg(feature = "ktest")]
        super::stretch::end();
    }

    /// Wait for an interrupt; returns after it has been taken (if unmasked), or once it
    /// is pending (if masked).
    pub fn wait() {
        // SAFETY: wfi only suspends the CPU until an interrupt or event.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
        #[cfg(feature = "ktest")]
        super::stretch::restart();
    }
}

/// The longest IRQ-masked stretch of each CPU, and where it began (test builds).
#[cfg(all(target_os = "none", feature = "ktest"))]
pub mod stretch {
    use core::fmt;
    use core::panic::Location;
    use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

    use crate::percpu::{self, MAX_CPUS};
    use platform::timer;

    /// Per CPU, touched only by that CPU with IRQs masked: when the open stretch began
    /// (0: none open) and the caller that opened it; the longest closed one, in counter
    /// ticks, and where it began.
    struct Cpu {
        since: AtomicU64,
        opened_by: AtomicPtr<Location<'static>>,
        longest: AtomicU64,
        longest_at: AtomicPtr<Location<'static>>,
    }

    static CPUS: [Cpu; MAX_CPUS] = [const {
        Cpu {
            since: AtomicU64::new(0),
            opened_by: AtomicPtr::new(core::ptr::null_mut()),
            longest: AtomicU64::new(0),
            longest_at: AtomicPtr::new(core::ptr::null_mut()),
        }
    }; MAX_CPUS];

    fn this() -> &'static Cpu {
        &CPUS[percpu::this_cpu().index]
    }

    pub(super) fn begin(at: &'static Location<'static>) {
        let c = this();
        c.since.store(timer::counter(), Ordering::Relaxed);
        c.opened_by
            .store(at as *const _ as *mut _, Ordering::Relaxed);
    }

    pub(super) fn end() {
        let c = this();
        let since = c.since.swap(0, Ordering::Relaxed);
        if since == 0 {
            return;
        }
        let len = timer::counter().saturating_sub(since);
        if len > c.longest.load(Ordering::Relaxed) {
            c.longest.store(len, Ordering::Relaxed);
            c.longest_at
                .store(c.opened_by.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// After a WFI: the stretch goes on from now.
    pub(super) fn restart() {
        let c = this();
        if c.since.load(Ordering::Relaxed) != 0 {
            c.since.store(timer::counter(), Ordering::Relaxed);
        }
    }

    /// The longest stretch of any CPU, in microseconds.
    pub fn longest_us() -> u64 {
        let ticks = CPUS
            .iter()
            .map(|c| c.longest.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        ticks * 1_000_000 / timer::frequency().max(1)
    }

    /// `irqs masked longest: max=N us cpu0=N us (file:line) cpu1=...`, one line.
    pub struct Report;

    impl fmt::Display for Report {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let freq = timer::frequency().max(1);
            write!(f, "irqs masked longest: max={} us", longest_us())?;
            for (i, c) in CPUS.iter().enumerate().take(percpu::possible()) {
                let us = c.longest.load(Ordering::Relaxed) * 1_000_000 / freq;
                write!(f, " cpu{i}={us} us")?;
                let at = c.longest_at.load(Ordering::Relaxed);
                if !at.is_null() {
                    // SAFETY: only ever set from a `&'static Location`.
                    let at = unsafe { &*at };
                    write!(f, " ({}:{})", at.file(), at.line())?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::IrqState;

    pub fn save_and_disable() -> IrqState {
        0
    }

    pub fn restore(_state: IrqState) {}
}

pub use imp::*;
