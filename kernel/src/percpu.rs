//! Per-CPU data, found through TPIDR_EL1: a low module every layer may read (the
//! console's CPU number, the tick's counters, the scheduler's flags). Bringing CPUs up
//! is `smp`'s.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::aarch64::regs::{mpidr, read_sysreg, write_sysreg};

pub use crate::MAX_CPUS;

pub struct PerCpu {
    pub index: usize,
    pub mpidr: AtomicU64,
    pub online: AtomicBool,
    /// Timer ticks taken on this CPU.
    pub ticks: AtomicU64,
    /// Inter-processor interrupts received.
    pub ipis: AtomicU64,
    /// The tick asks the CPU to reschedule before it returns to EL0.
    pub need_resched: AtomicBool,
    /// The CPU runs its idle loop (a wake-up may poke it with an IPI).
    pub idle: AtomicBool,
}

impl PerCpu {
    const fn new(index: usize) -> Self {
        Self {
            index,
            mpidr: AtomicU64::new(u64::MAX),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            need_resched: AtomicBool::new(false),
            idle: AtomicBool::new(false),
        }
    }
}

static CPUS: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i] = PerCpu::new(i);
        i += 1;
    }
    cpus
};

/// CPUs the DTB describes (online or not).
static POSSIBLE: AtomicUsize = AtomicUsize::new(1);

/// This CPU's data. Before TPIDR_EL1 is set (very early boot) this is CPU 0.
pub fn this_cpu() -> &'static PerCpu {
    let p = read_sysreg!(tpidr_el1) as *const PerCpu;
    if p.is_null() {
        &CPUS[0]
    } else {
        // SAFETY: TPIDR_EL1 only ever holds the address of an element of CPUS.
        unsafe { &*p }
    }
}

pub fn cpu(index: usize) -> &'static PerCpu {
    &CPUS[index]
}

pub fn possible() -> usize {
    POSSIBLE.load(Ordering::Acquire)
}

pub fn online() -> usize {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Acquire))
        .count()
}

/// Make `c` this CPU's data (its first instructions in Rust).
pub fn enter(c: &'static PerCpu) {
    write_sysreg!(tpidr_el1, c as *const PerCpu as u64);
    c.mpidr.store(mpidr(), Ordering::Release);
}

pub fn init_boot_cpu() {
    enter(&CPUS[0]);
    CPUS[0].online.store(true, Ordering::Release);
}

/// Record how many CPUs the DTB describes (boot CPU, once).
pub fn set_possible(n: usize) {
    POSSIBLE.store(n, Ordering::Release);
}
