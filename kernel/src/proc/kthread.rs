//! Kernel threads: tasks with no address space that run a kernel function, start with
//! `spawn_kthread`, end with `kthread_exit` and are reaped by `join_kthread`. Below
//! `process` and the threads it starts (`khugepaged`, `kswapd`), which both use them;
//! no `unsafe` here (the first context is set in `task`).

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::sched::{self, me};
use super::task::{self, State, Task};

/// A kernel thread running `entry(arg)`; it ends with `kthread_exit`.
pub fn spawn_kthread(name: &str, entry: extern "C" fn(u64) -> !, arg: u64) -> Option<Arc<Task>> {
    let t = Task::new_kthread(name, entry, arg)?;
    task::insert(t.clone());
    sched::start(&t);
    Some(t)
}

/// Woken when a kernel thread ends.
static KTHREAD_EXITED: sched::WaitQueue = sched::WaitQueue::new();

/// End the calling kernel thread; `join_kthread` reaps it.
pub fn kthread_exit() -> ! {
    me().set_state(State::Zombie);
    KTHREAD_EXITED.wake_all();
    sched::schedule();
    unreachable!("a zombie kernel thread was scheduled");
}

/// Wait for a kernel thread to end and reap it: a task sleeps until it is a zombie
/// and then waits for its CPU to switch away from it, as `wait` does for a process;
/// the idle context (the boot CPU running the in-kernel tests) cannot sleep, and runs
/// other tasks until then. On return the thread's stack is free (wakers drop their
/// counts under their list's lock: `sched`'s "Last counts").
pub fn join_kthread(t: Arc<Task>) {
    if sched::current().is_some() {
        KTHREAD_EXITED.wait_until(|| t.state() == State::Zombie);
    }
    while t.state() != State::Zombie || t.on_cpu.load(Ordering::Acquire) != 0 {
        if sched::current().is_none() {
            sched::schedule();
        }
        core::hint::spin_loop();
    }
    task::remove(t.pid());
}
