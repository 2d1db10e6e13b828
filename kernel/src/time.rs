//! Time: the generic timer's virtual counter as the clock (emulated time under QEMU;
//! with -icount it follows retired instructions) and a periodic tick on every CPU.

use core::sync::atomic::Ordering;

use platform::timer;

pub const TICK_HZ: u64 = 100;

/// Time since the machine started (the counter starts with it).
pub fn uptime_ns() -> u64 {
    let f = timer::frequency().max(1);
    ((timer::counter() as u128 * 1_000_000_000) / f as u128) as u64
}

/// Arm this CPU's tick and unmask its interrupt at the GIC.
pub fn start_tick() {
    timer::arm_after(timer::frequency() / TICK_HZ);
    crate::interrupts::enable_timer();
}

/// The timer interrupt: count it and re-arm.
pub fn on_tick() {
    crate::smp::this_cpu().ticks.fetch_add(1, Ordering::Relaxed);
    timer::arm_after(timer::frequency() / TICK_HZ);
}

/// Busy-wait for `ns` of emulated time.
pub fn spin_for(ns: u64) {
    let end = uptime_ns() + ns;
    while uptime_ns() < end {
        core::hint::spin_loop();
    }
}
