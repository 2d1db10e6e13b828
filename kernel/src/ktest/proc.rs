//! Tests of tasks and the scheduler that need no user program.

use core::sync::atomic::{AtomicU64, Ordering};

use super::TestResult;
use crate::proc::{process, sched};
use crate::{kassert, kassert_eq, time};

static WOKE_AT: AtomicU64 = AtomicU64::new(0);

extern "C" fn sleeper(deadline: u64) -> ! {
    sched::sleep_until(deadline);
    WOKE_AT.store(time::uptime_ns(), Ordering::Release);
    process::kthread_exit()
}

/// A kernel thread sleeps on the timer, runs again after its deadline, exits, and is
/// reaped (the runner checks its stack went back to the allocator).
pub fn kernel_thread_sleeps_and_is_reaped() -> TestResult {
    WOKE_AT.store(0, Ordering::Release);
    let deadline = time::uptime_ns() + 30_000_000;
    let t = process::spawn_kthread("ktest-sleeper", sleeper, deadline)
        .ok_or("no memory for a kernel thread")?;
    let pid = t.pid;
    process::join_kthread(t);
    let woke = WOKE_AT.load(Ordering::Acquire);
    kassert!(
        woke >= deadline,
        "woke at {woke} ns, before its deadline {deadline}"
    );
    kassert_eq!(crate::proc::task::get(pid).is_none(), true);
    Ok(())
}
