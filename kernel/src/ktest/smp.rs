//! Tests of CPUs, interrupts and locks.

use core::sync::atomic::Ordering;

use super::TestResult;
use crate::sync::IrqSpinLock;
use crate::{interrupts, kassert, kassert_eq, percpu, time};

pub fn all_cpus_online() -> TestResult {
    kassert_eq!(percpu::online(), percpu::possible());
    for i in 0..percpu::possible() {
        kassert!(
            percpu::cpu(i).online.load(Ordering::Acquire),
            "cpu{i} offline"
        );
    }
    Ok(())
}

pub fn every_cpu_ticks() -> TestResult {
    let before: alloc::vec::Vec<u64> = (0..percpu::possible())
        .map(|i| percpu::cpu(i).ticks.load(Ordering::Relaxed))
        .collect();
    time::spin_for(5 * 1_000_000_000 / time::TICK_HZ);
    for (i, b) in before.iter().enumerate() {
        let now = percpu::cpu(i).ticks.load(Ordering::Relaxed);
        kassert!(now > *b, "cpu{i} took no tick ({b} -> {now})");
    }
    Ok(())
}

pub fn ipi_reaches_every_cpu() -> TestResult {
    for i in 0..percpu::possible() {
        let c = percpu::cpu(i);
        let before = c.ipis.load(Ordering::Acquire);
        interrupts::ping(c.mpidr.load(Ordering::Acquire));
        let deadline = time::uptime_ns() + 1_000_000_000;
        while c.ipis.load(Ordering::Acquire) == before {
            kassert!(time::uptime_ns() < deadline, "cpu{i} never saw the IPI");
            core::hint::spin_loop();
        }
    }
    Ok(())
}

pub fn irq_safe_lock_masks_interrupts() -> TestResult {
    let lock = IrqSpinLock::new(0u32);
    kassert!(
        crate::arch::irq::enabled(),
        "test entered with interrupts masked"
    );
    {
        let mut g = lock.lock();
        *g += 1;
        kassert!(
            !crate::arch::irq::enabled(),
            "interrupts enabled while holding the lock"
        );
    }
    kassert!(
        crate::arch::irq::enabled(),
        "interrupts not restored on unlock"
    );
    kassert_eq!(*lock.lock(), 1);
    Ok(())
}
