//! The scheduler: one run queue shared by all CPUs, round robin, preemption at the
//! timer tick (on the way back to EL0; the kernel itself is not preempted), an idle
//! loop per CPU that waits with WFI, wait queues, and timed sleeps.
//!
//! Protocol: a task's state says where it is (Running on a CPU, Runnable on the queue,
//! Sleeping on a wait queue or timer, Zombie). Waking is the Sleeping -> Runnable
//! transition plus a push on the queue, so a task is never queued twice. A CPU that
//! takes a task from the queue first waits until the task's `on_cpu` flag is clear:
//! the CPU that ran it last may still be saving its registers.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::task::{State, Task};
use crate::arch::aarch64::context::{self, Context};
use crate::arch::irq;
use crate::smp::{self, MAX_CPUS};
use crate::sync::IrqSpinLock;

static RUN_QUEUE: IrqSpinLock<VecDeque<Arc<Task>>> = IrqSpinLock::new(VecDeque::new());

/// Per CPU: the running task (an `Arc` turned into a raw pointer, 0 for idle), the idle
/// loop's saved context and its stand-in `on_cpu` flag.
static CURRENT: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
struct IdleSlot {
    ctx: core::cell::UnsafeCell<Context>,
    on_cpu: AtomicU8,
}
// SAFETY: each slot is used only by its own CPU.
unsafe impl Sync for IdleSlot {}
static IDLE: [IdleSlot; MAX_CPUS] = [const {
    IdleSlot {
        ctx: core::cell::UnsafeCell::new(Context {
            x19_x29: [0; 11],
            lr: 0,
            sp: 0,
        }),
        on_cpu: AtomicU8::new(0),
    }
}; MAX_CPUS];

/// The task this CPU runs (`None` in the idle loop).
pub fn current() -> Option<Arc<Task>> {
    let p = CURRENT[smp::this_cpu().index].load(Ordering::Acquire) as *const Task;
    if p.is_null() {
        return None;
    }
    // SAFETY: CURRENT holds one strong count of a live task while it runs here.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// The current task; panics in the idle loop (system calls always have one).
pub fn me() -> Arc<Task> {
    current().expect("no current task")
}

/// Make a sleeping (or new) task runnable.
pub fn wake(t: &Arc<Task>) {
    if t.transition(State::Sleeping, State::Runnable) {
        RUN_QUEUE.lock().push_back(t.clone());
        kick_idle_cpu();
    }
}

fn kick_idle_cpu() {
    let me = smp::this_cpu().index;
    if let Some(c) = (0..smp::possible())
        .map(smp::cpu)
        .find(|c| c.index != me && c.idle.load(Ordering::Acquire))
    {
        crate::interrupts::ping(c.mpidr.load(Ordering::Acquire));
    }
}

/// Give the CPU to the next runnable task, if any. The current task stays runnable
/// (if it was running), sleeps or is a zombie, as its state says.
pub fn schedule() {
    let saved = irq::save_and_disable();
    let cpu = smp::this_cpu();
    cpu.need_resched.store(false, Ordering::Relaxed);
    let prev = current();
    let next = {
        let mut rq = RUN_QUEUE.lock();
        if let Some(p) = &prev {
            if p.transition(State::Running, State::Runnable) {
                rq.push_back(p.clone());
            }
        }
        rq.pop_front()
    };
    match (&prev, &next) {
        (None, None) => {}
        (Some(p), Some(n)) if Arc::ptr_eq(p, n) => p.set_state(State::Running),
        _ => {
            drop(prev);
            switch_to(next);
        }
    }
    irq::restore(saved);
}

/// Switch from whatever this CPU runs to `next` (or to its idle loop).
fn switch_to(next: Option<Arc<Task>>) {
    let cpu = smp::this_cpu().index;
    let idle = &IDLE[cpu];
    if let Some(n) = &next {
        while n.on_cpu.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
        }
        n.on_cpu.store(1, Ordering::Relaxed);
        n.set_state(State::Running);
    }
    let next_raw = next.map_or(0, |n| Arc::into_raw(n) as usize);
    let prev_raw = CURRENT[cpu].swap(next_raw, Ordering::AcqRel) as *const Task;
    // SAFETY: prev_raw/next_raw are the strong counts CURRENT holds; the task table
    // (or the run queue) keeps another reference to prev until it is reaped, which
    // waits for its on_cpu flag, so dropping ours here is safe.
    let (prev, next) = unsafe {
        (
            (!prev_raw.is_null()).then(|| &*prev_raw),
            (next_raw != 0).then(|| &*(next_raw as *const Task)),
        )
    };
    let prev_user = prev.is_some_and(|p| p.is_user());
    let next_user = next.is_some_and(|n| n.is_user());
    if let Some(p) = prev.filter(|_| prev_user) {
        // SAFETY: p runs on this CPU; nobody else touches its FP state.
        context::save_fp(unsafe { &mut *p.fp.get() });
        p.tpidr_el0.store(
            crate::arch::aarch64::regs::read_sysreg!(tpidr_el0),
            Ordering::Relaxed,
        );
    }
    if let Some(n) = next.filter(|_| next_user) {
        // SAFETY: n is not running anywhere (on_cpu was clear) and now belongs to us.
        context::load_fp(unsafe { &*n.fp.get() });
        crate::arch::aarch64::regs::write_sysreg!(tpidr_el0, n.tpidr_el0.load(Ordering::Relaxed));
    }
    match next.map_or(0, |n| n.ttbr0.load(Ordering::Acquire)) {
        0 => crate::arch::aarch64::mmu::set_ttbr0_raw(crate::mm::kmap::empty_ttbr0()),
        ttbr0 => crate::arch::aarch64::mmu::set_ttbr0_raw(ttbr0),
    }
    let (prev_ctx, prev_flag) = match prev {
        Some(p) => (p.ctx.get(), &p.on_cpu as *const AtomicU8 as *const u8),
        None => (idle.ctx.get(), &idle.on_cpu as *const AtomicU8 as *const u8),
    };
    let next_ctx = next.map_or(idle.ctx.get() as *const Context, |n| {
        n.ctx.get() as *const Context
    });
    if !prev_raw.is_null() {
        // SAFETY: the count CURRENT held for prev (see above).
        drop(unsafe { Arc::from_raw(prev_raw) });
    }
    // SAFETY: interrupts are masked; next is exclusively ours (on_cpu handshake);
    // prev's flag is cleared by switch_context once its registers are saved.
    unsafe { context::switch(prev_ctx, next_ctx, prev_flag) };
}

/// Where each CPU ends up after boot: run tasks, or wait for an interrupt.
pub fn idle_loop() -> ! {
    let cpu = smp::this_cpu();
    loop {
        cpu.idle.store(true, Ordering::Release);
        let empty = RUN_QUEUE.lock().is_empty();
        if empty {
            irq::wait();
        }
        cpu.idle.store(false, Ordering::Release);
        schedule();
    }
}

/// The tick: account the running task and ask for a reschedule.
pub fn on_tick() {
    if let Some(t) = current() {
        t.ticks.fetch_add(1, Ordering::Relaxed);
        smp::this_cpu().need_resched.store(true, Ordering::Relaxed);
    }
    wake_expired_sleepers();
}

/// Waiters for an event; `wait_until` sleeps until a condition holds.
pub struct WaitQueue {
    waiters: IrqSpinLock<Vec<Arc<Task>>>,
}

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue {
            waiters: IrqSpinLock::new(Vec::new()),
        }
    }

    /// Sleep until `cond()` is true. Wakers change the condition first, then call
    /// `wake_all`; the condition is re-checked after the task is marked sleeping, so no
    /// wake-up is lost.
    pub fn wait_until(&self, cond: impl Fn() -> bool) {
        let me = me();
        loop {
            self.waiters.lock().push(me.clone());
            me.set_state(State::Sleeping);
            if cond() {
                me.set_state(State::Running);
                self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &me));
                return;
            }
            schedule();
        }
    }

    pub fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.waiters.lock());
        for t in &waiters {
            wake(t);
        }
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

static SLEEPERS: IrqSpinLock<Vec<(u64, Arc<Task>)>> = IrqSpinLock::new(Vec::new());

/// Sleep until `deadline_ns` of uptime.
pub fn sleep_until(deadline_ns: u64) {
    let me = me();
    while crate::time::uptime_ns() < deadline_ns {
        SLEEPERS.lock().push((deadline_ns, me.clone()));
        me.set_state(State::Sleeping);
        if crate::time::uptime_ns() >= deadline_ns {
            me.set_state(State::Running);
        } else {
            schedule();
        }
        SLEEPERS.lock().retain(|(_, t)| !Arc::ptr_eq(t, &me));
    }
}

fn wake_expired_sleepers() {
    let now = crate::time::uptime_ns();
    let due: Vec<Arc<Task>> = SLEEPERS
        .lock()
        .iter()
        .filter(|(d, _)| *d <= now)
        .map(|(_, t)| t.clone())
        .collect();
    for t in &due {
        wake(t);
    }
}

/// Start a task that is ready to run (new process, kernel thread).
pub fn start(t: &Arc<Task>) {
    wake(t);
}
