//! Time: the generic timer's virtual counter as the clock (emulated time under QEMU;
//! with -icount it follows retired instructions) and a periodic tick on every CPU.

use core::sync::atomic::{AtomicU64, Ordering};

use platform::timer;

pub const TICK_HZ: u64 = 100;

/// Time since the machine started (the counter starts with it).
pub fn uptime_ns() -> u64 {
    let f = timer::frequency().max(1);
    ((timer::counter() as u128 * 1_000_000_000) / f as u128) as u64
}

/// Arm this CPU's tick (the caller unmasks its interrupt at the GIC).
pub fn start_tick() {
    timer::arm_after(timer::frequency() / TICK_HZ);
}

/// Who is told of every tick: the scheduler registers at boot (it lies above this
/// module, which only keeps time).
static TICK_LISTENER: spin::Once<fn()> = spin::Once::new();

/// Call `f` on every tick, on every CPU, in interrupt context (boot, once).
pub fn on_every_tick(f: fn()) {
    TICK_LISTENER.call_once(|| f);
}

/// The timer interrupt: count it, re-arm, and tell the listener (the scheduler
/// accounts and asks for preemption).
pub fn on_tick() {
    crate::percpu::this_cpu()
        .ticks
        .fetch_add(1, Ordering::Relaxed);
    timer::arm_after(timer::frequency() / TICK_HZ);
    if let Some(f) = TICK_LISTENER.get() {
        f();
    }
}

static RANDOM_STATE: AtomicU64 = AtomicU64::new(0);

/// Fill `buf` with pseudo-random bytes (xorshift64*, seeded from the counter at first
/// use): for AT_RANDOM and getrandom. Not cryptographic: there is no entropy source.
pub fn fill_random(buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        let mut x = RANDOM_STATE.load(Ordering::Relaxed);
        if x == 0 {
            x = timer::counter() | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        RANDOM_STATE.store(x, Ordering::Relaxed);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

/// Busy-wait for `ns` of emulated time.
pub fn spin_for(ns: u64) {
    let end = uptime_ns() + ns;
    while uptime_ns() < end {
        core::hint::spin_loop();
    }
}
