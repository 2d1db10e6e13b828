//! The scheduler: one run queue shared by all CPUs, round robin, preemption at the
//! timer tick (on the way back to EL0; the kernel itself is not preempted: a kernel
//! thread gives the CPU up in `cond_resched` between bounded steps, and every one of
//! its waits goes through `schedule`), an idle loop per CPU that waits with WFI, wait
//! queues, and timed sleeps.
//!
//! # Protocol
//!
//! **States** (`Task::state`) and who moves a task between them:
//!
//! | from | to | by | where |
//! |---|---|---|---|
//! | Sleeping (new) | Runnable | `start` / `wake` | the waker, under `RUN_QUEUE` |
//! | Runnable | Running | the CPU that pops it | `schedule`, under `RUN_QUEUE` |
//! | Running | Runnable | the task itself, giving up the CPU | `schedule`, under `RUN_QUEUE` |
//! | Running | Sleeping | the task itself | `sleep_on`, under the lock of the list it sleeps on |
//! | Sleeping | Runnable | a waker that found it on that list | `wake`, under `RUN_QUEUE` |
//! | Sleeping or Runnable | Running | the task itself, its condition already true | `sleep_on` |
//! | Running | Zombie | the task itself | `exit` (under `TASKS`), `kthread_exit` |
//! | Running | Dead | a thread that is not its process's leader, exiting | `process::end_thread` |
//!
//! A task in Sleeping or Runnable may still be on its CPU: it marks itself Sleeping
//! before it re-checks its condition and switches away, and a wake-up can come in that
//! window (from another CPU, or from the tick on its own). Nothing else changes the
//! state of a task that runs: only the task leaves Running, and a waker only turns
//! Sleeping into Runnable. Wake-ups can be spurious (a waker holding a stale list
//! entry); every sleep re-checks its condition.
//!
//! **The run queue and `on_cpu`.** `Task::on_cpu` is 1 from the moment a CPU pops the
//! task until that CPU, after switching away from it, has saved its registers and left
//! its stack. Both flag and queue are protected by `RUN_QUEUE`, and the rule is:
//! *a task is on the run queue exactly when it is Runnable and its `on_cpu` is 0*. So
//! whoever makes a task Runnable queues it only if it is off every CPU (`wake`); a task
//! that is still on a CPU is queued by that CPU in `finish_switch`, which runs on the
//! next task's stack right after the switch, clears `on_cpu` and queues the previous
//! task if it is Runnable. A CPU that pops a task therefore never waits for another CPU:
//! the context it loads is complete. (Spinning on `on_cpu` at switch time, with the
//! previous task still unsaved, lets two CPUs wait on each other's previous task.)
//! The reaper of a zombie waits for its `on_cpu` to clear; that wait is short, since
//! the zombie's CPU is inside `schedule` with IRQs masked and waits for nothing.
//!
//! **Locks.** `RUN_QUEUE`: the queue, every `on_cpu`, and the Runnable <-> Running
//! transitions. A wait queue's `waiters` (and `SLEEPERS` for timed sleeps): who is on
//! that list, and the Running -> Sleeping transition of a task joining it. The task
//! table (`task::TASKS`): parent links and the transition to Zombie. Order: a list lock
//! or `TASKS` may be held when taking `RUN_QUEUE`, never the other way; conditions are
//! evaluated with no scheduler lock held. All of these are IRQ-safe locks: the tick
//! takes `SLEEPERS` and `RUN_QUEUE`.
//!
//! **Last counts.** A waker wakes and drops its counts of the woken tasks while it holds
//! the list lock. A woken task takes that lock before it can leave `sleep_on`, so no
//! waker's count outlives the task's sleep: the reaper's count stays the last one and a
//! reaped task's stack is free when the reaper returns (a count cloned out of the list
//! and dropped later, on a vCPU the host had descheduled, freed the stack after the
//! reaper had counted the frames).
//!
//! **Lost wake-ups.** A waker changes the condition first, then takes the list (under
//! its lock) and wakes what it found. A sleeper joins the list and marks itself
//! Sleeping in one critical section of the same lock, then checks the condition: either
//! the waker took the list after the sleeper joined, and finds it Sleeping, or before,
//! and then the sleeper sees the changed condition.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::task::{State, Task};
use crate::arch::aarch64::context::{self, Context};
use crate::arch::irq;
use crate::percpu::{self, MAX_CPUS};
use crate::sync::IrqSpinLock;

static RUN_QUEUE: IrqSpinLock<VecDeque<Arc<Task>>> = IrqSpinLock::new(VecDeque::new());

/// Per CPU: the running task (an `Arc` turned into a raw pointer, 0 for idle).
static CURRENT: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Per CPU: the task it has just switched away from (an `Arc` as a raw pointer, 0 for
/// none), for `finish_switch` to release.
static PREV: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Per CPU: the idle loop's saved context.
struct IdleSlot(core::cell::UnsafeCell<Context>);
// SAFETY: each slot is used only by its own CPU.
unsafe impl Sync for IdleSlot {}
static IDLE: [IdleSlot; MAX_CPUS] = [const {
    IdleSlot(core::cell::UnsafeCell::new(Context {
        x19_x29: [0; 11],
        lr: 0,
        sp: 0,
    }))
}; MAX_CPUS];

/// The task this CPU runs (`None` in the idle loop).
pub fn current() -> Option<Arc<Task>> {
    let p = CURRENT[percpu::this_cpu().index].load(Ordering::Acquire) as *const Task;
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

/// Make a sleeping (or new) task runnable; queue it if no CPU holds it any more.
pub fn wake(t: &Arc<Task>) {
    let mut rq = RUN_QUEUE.lock();
    if t.transition(State::Sleeping, State::Runnable) && t.on_cpu.load(Ordering::Relaxed) == 0 {
        rq.push_back(t.clone());
        drop(rq);
        kick_idle_cpu();
    }
}

fn kick_idle_cpu() {
    let me = percpu::this_cpu().index;
    if let Some(c) = (0..percpu::possible())
        .map(percpu::cpu)
        .find(|c| c.index != me && c.idle.load(Ordering::Acquire))
    {
        crate::interrupts::ping(c.mpidr.load(Ordering::Acquire));
    }
}

/// Give the CPU to the next runnable task, if any. The current task stays runnable
/// (if it was running, or was woken since it went to sleep), sleeps or is a zombie, as
/// its state says; a runnable one keeps the CPU when nothing else is queued.
pub fn schedule() {
    let saved = irq::save_and_disable();
    percpu::this_cpu()
        .need_resched
        .store(false, Ordering::Relaxed);
    let prev = current();
    let mut rq = RUN_QUEUE.lock();
    let cpu = percpu::this_cpu().index;
    let prev_runnable = prev
        .as_ref()
        .is_some_and(|p| matches!(p.state(), State::Running | State::Runnable));
    let next = pop_allowed(&mut rq, cpu);
    match (&prev, &next) {
        (None, None) => drop(rq),
        // Nothing else to run: keep the CPU, unless its affinity no longer allows it
        // (then it goes back to the queue for a CPU that may run it).
        (Some(p), None) if prev_runnable && allowed(p, cpu) => {
            p.set_state(State::Running);
            drop(rq);
        }
        _ => {
            if let Some(p) = prev.as_ref().filter(|_| prev_runnable) {
                p.set_state(State::Runnable);
            }
            if let Some(n) = &next {
                assert!(
                    n.state() == State::Runnable && n.on_cpu.load(Ordering::Relaxed) == 0,
                    "pid {} on the run queue in state {:?}, on_cpu {}",
                    n.pid(),
                    n.state(),
                    n.on_cpu.load(Ordering::Relaxed)
                );
                n.on_cpu.store(1, Ordering::Relaxed);
                n.set_state(State::Running);
            }
            drop(rq);
            switch_to(prev, next);
        }
    }
    irq::restore(saved);
}

/// Give up the CPU if the tick asked for it (Linux's `cond_resched`): the kernel is not
/// preempted, so a kernel thread calls this between bounded steps of a long loop, with
/// no lock held. On the way back to EL0 the same check is `return_to_user`'s.
pub fn cond_resched() {
    if percpu::this_cpu().need_resched.load(Ordering::Relaxed) {
        schedule();
    }
}

/// The first queued task whose affinity (sched_setaffinity) allows CPU `cpu`; the
/// others keep their place for the CPUs they may run on.
fn pop_allowed(rq: &mut VecDeque<Arc<Task>>, cpu: usize) -> Option<Arc<Task>> {
    let i = rq.iter().position(|t| allowed(t, cpu))?;
    rq.remove(i)
}

fn allowed(t: &Task, cpu: usize) -> bool {
    t.affinity.load(Ordering::Relaxed) & (1 << cpu) != 0
}

/// Switch from whatever this CPU runs to `next` (or to its idle loop). IRQs are masked.
fn switch_to(prev: Option<Arc<Task>>, next: Option<Arc<Task>>) {
    let cpu = percpu::this_cpu().index;
    let prev_user = prev.as_ref().is_some_and(|p| p.is_user());
    if let Some(p) = prev.as_ref().filter(|_| prev_user) {
        // SAFETY: p runs on this CPU; nobody else touches its FP state.
        context::save_fp(unsafe { &mut *p.fp.get() });
        p.tpidr_el0.store(
            crate::arch::aarch64::regs::read_sysreg!(tpidr_el0),
            Ordering::Relaxed,
        );
    }
    if let Some(n) = next.as_ref().filter(|n| n.is_user()) {
        // SAFETY: n was popped with on_cpu clear: no CPU runs it, and it is ours now.
        context::load_fp(unsafe { &*n.fp.get() });
        crate::arch::aarch64::regs::write_sysreg!(tpidr_el0, n.tpidr_el0.load(Ordering::Relaxed));
    }
    match next.as_ref().map_or(0, |n| n.ttbr0.load(Ordering::Acquire)) {
        0 => {
            crate::arch::aarch64::mmu::set_ttbr0_raw(crate::arch::aarch64::mm::kmap::empty_ttbr0())
        }
        ttbr0 => crate::arch::aarch64::mm::machine::install_ttbr0(ttbr0),
    }
    let prev_ctx = prev.as_ref().map_or(IDLE[cpu].0.get(), |p| p.ctx.get());
    let next_ctx = next
        .as_ref()
        .map_or(IDLE[cpu].0.get() as *const Context, |n| {
            n.ctx.get() as *const Context
        });
    drop(prev);
    // The count CURRENT held for prev goes to PREV: it keeps prev (its context and
    // stack) alive until finish_switch has seen it off this CPU.
    let next_raw = next.map_or(0, |n| Arc::into_raw(n) as usize);
    let prev_raw = CURRENT[cpu].swap(next_raw, Ordering::AcqRel);
    PREV[cpu].store(prev_raw, Ordering::Relaxed);
    // SAFETY: interrupts are masked; next is exclusively ours (popped with on_cpu
    // clear, so its context is complete); prev stays alive through PREV.
    unsafe { context::switch(prev_ctx, next_ctx) };
    finish_switch();
}

/// The first thing a task (or the idle loop) does when a CPU switches to it: the task
/// the CPU left is now off it (its registers saved, its stack unused), so clear its
/// `on_cpu` and queue it if it is Runnable. Called after `context::switch` returns,
/// and by the first-run paths of new tasks (`thread_trampoline`, `user_task_start`).
#[no_mangle]
pub extern "C" fn finish_switch() {
    let prev_raw = PREV[percpu::this_cpu().index].swap(0, Ordering::Relaxed) as *const Task;
    if prev_raw.is_null() {
        return;
    }
    // SAFETY: the count switch_to moved from CURRENT to PREV.
    let prev = unsafe { Arc::from_raw(prev_raw) };
    let mut rq = RUN_QUEUE.lock();
    if prev.state() == State::Runnable {
        prev.on_cpu.store(0, Ordering::Release);
        rq.push_back(prev);
        drop(rq);
        kick_idle_cpu();
    } else if prev.state() == State::Dead {
        // An exited thread nobody reaps (it left the task table): off the CPU now,
        // and this may be the last count.
        prev.on_cpu.store(0, Ordering::Release);
        drop(rq);
        drop(prev);
    } else {
        // Our count goes before on_cpu clears: the task table holds another until
        // then (a task is reaped only once its on_cpu is 0), so the reaper's count is
        // the last one and a reaped task's stack is free when the reaper returns.
        let t = Arc::as_ptr(&prev);
        drop(prev);
        // SAFETY: the task table's count keeps the task alive until this store.
        unsafe { (*t).on_cpu.store(0, Ordering::Release) };
    }
}

/// Where each CPU ends up after boot: run tasks, or wait for an interrupt. The queue is
/// checked with IRQs masked: WFI still wakes on an IRQ that arrives after the check,
/// and the IRQ is taken when they are unmasked.
pub fn idle_loop() -> ! {
    let cpu = percpu::this_cpu();
    loop {
        cpu.idle.store(true, Ordering::Release);
        let saved = irq::save_and_disable();
        // Tasks whose affinity excludes this CPU do not keep it awake.
        if !RUN_QUEUE.lock().iter().any(|t| allowed(t, cpu.index)) {
            irq::wait();
        }
        irq::restore(saved);
        cpu.idle.store(false, Ordering::Release);
        schedule();
    }
}

/// The tick: account the running task and ask for a reschedule.
pub fn on_tick() {
    if let Some(t) = current() {
        t.ticks.fetch_add(1, Ordering::Relaxed);
        percpu::this_cpu()
            .need_resched
            .store(true, Ordering::Relaxed);
    }
    wake_expired_sleepers();
}

/// The sleep half of the protocol, for any list of sleepers: join `list` (`entry`
/// makes this task's entry, `task` reads an entry's task) and become Sleeping in one
/// critical section, then check `done`; give up the CPU until woken, and again, until
/// `done()` holds. Returns with the task Running and off the list.
fn sleep_on<E>(
    list: &IrqSpinLock<Vec<E>>,
    entry: impl Fn(&Arc<Task>) -> E,
    task: impl Fn(&E) -> &Arc<Task>,
    done: impl Fn() -> bool,
) {
    let me = me();
    loop {
        {
            let mut l = list.lock();
            if !l.iter().any(|e| Arc::ptr_eq(task(e), &me)) {
                l.push(entry(&me));
            }
            me.set_state(State::Sleeping);
        }
        if done() {
            // A waker may have made us Runnable since: we are on this CPU, so it did
            // not queue us, and Running is right either way.
            me.set_state(State::Running);
            list.lock().retain(|e| !Arc::ptr_eq(task(e), &me));
            return;
        }
        schedule();
    }
}

/// `sleep_on` for a list kept by another module (futexes: `proc::futex`), with a
/// deadline of uptime (u64::MAX: none) as `WaitQueue::wait_until_deadline` has it.
pub fn sleep_on_until<E>(
    list: &IrqSpinLock<Vec<E>>,
    entry: impl Fn(&Arc<Task>) -> E,
    task: impl Fn(&E) -> &Arc<Task>,
    deadline_ns: u64,
    done: impl Fn() -> bool,
) {
    let timed = deadline_ns != u64::MAX;
    if timed {
        SLEEPERS.lock().push((deadline_ns, me()));
    }
    sleep_on(list, entry, task, || {
        done() || crate::time::uptime_ns() >= deadline_ns
    });
    if timed {
        let me = me();
        SLEEPERS.lock().retain(|(_, t)| !Arc::ptr_eq(t, &me));
    }
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
    /// `wake_all`. `cond` runs with no scheduler lock held.
    pub fn wait_until(&self, cond: impl Fn() -> bool) {
        sleep_on(&self.waiters, Arc::clone, |t| t, cond);
    }

    /// Sleep until `cond()` is true or the uptime reaches `deadline_ns` (u64::MAX:
    /// never); true if `cond()` held. The task is on this queue's list and, for the
    /// tick, on the timed sleepers' list: a wake-up from either makes it re-check
    /// both (joining `SLEEPERS` before the queue's list leaves no window: the
    /// condition re-checks the deadline after the task is Sleeping).
    pub fn wait_until_deadline(&self, deadline_ns: u64, cond: impl Fn() -> bool) -> bool {
        sleep_on_until(&self.waiters, Arc::clone, |t| t, deadline_ns, &cond);
        cond()
    }

    /// Wakes every waiter and drops the list's counts under the lock (see
    /// "Last counts" in the module doc).
    pub fn wake_all(&self) {
        for t in self.waiters.lock().drain(..) {
            wake(&t);
        }
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Tasks in `sleep_until`, with their deadlines; the tick wakes those that are due.
static SLEEPERS: IrqSpinLock<Vec<(u64, Arc<Task>)>> = IrqSpinLock::new(Vec::new());

/// Sleep until `deadline_ns` of uptime.
pub fn sleep_until(deadline_ns: u64) {
    sleep_on(
        &SLEEPERS,
        |t| (deadline_ns, t.clone()),
        |(_, t)| t,
        || crate::time::uptime_ns() >= deadline_ns,
    );
}

fn wake_expired_sleepers() {
    let now = crate::time::uptime_ns();
    // No clone outlives the lock (see "Last counts" in the module doc); the sleepers
    // leave the list themselves when their deadline has passed.
    for (_, t) in SLEEPERS.lock().iter().filter(|(d, _)| *d <= now) {
        wake(t);
    }
}

/// Start a task that is ready to run (new process, kernel thread).
pub fn start(t: &Arc<Task>) {
    wake(t);
}
