//! Tests of tasks and the scheduler that need no user program.

use core::sync::atomic::{AtomicU64, Ordering};

use super::TestResult;
use crate::proc::{kthread, sched};
use crate::{kassert, kassert_eq, time};

static WOKE_AT: AtomicU64 = AtomicU64::new(0);

extern "C" fn sleeper(deadline: u64) -> ! {
    sched::sleep_until(deadline);
    WOKE_AT.store(time::uptime_ns(), Ordering::Release);
    kthread::kthread_exit()
}

/// A kernel thread sleeps on the timer, runs again after its deadline, exits, and is
/// reaped (the runner checks its stack went back to the allocator).
pub fn kernel_thread_sleeps_and_is_reaped() -> TestResult {
    WOKE_AT.store(0, Ordering::Release);
    let deadline = time::uptime_ns() + 30_000_000;
    let t = kthread::spawn_kthread("ktest-sleeper", sleeper, deadline)
        .ok_or("no memory for a kernel thread")?;
    let pid = t.pid();
    kthread::join_kthread(t);
    let woke = WOKE_AT.load(Ordering::Acquire);
    kassert!(
        woke >= deadline,
        "woke at {woke} ns, before its deadline {deadline}"
    );
    kassert_eq!(crate::proc::task::get(pid).is_none(), true);
    Ok(())
}

/// One ping-pong pair: `ping` waits on `a` for an even count, `pong` on `b` for an odd
/// one; each bumps the count and wakes the other.
struct Pair {
    count: AtomicU64,
    a: sched::WaitQueue,
    b: sched::WaitQueue,
}

const PAIRS: usize = 2;
const ROUNDS: u64 = 3000;
static PAIR: [Pair; PAIRS] = [const {
    Pair {
        count: AtomicU64::new(0),
        a: sched::WaitQueue::new(),
        b: sched::WaitQueue::new(),
    }
}; PAIRS];
/// Threads of the race test still running.
static RUNNING: AtomicU64 = AtomicU64::new(0);

extern "C" fn ping_pong(arg: u64) -> ! {
    let (p, parity) = (&PAIR[(arg / 2) as usize], arg % 2);
    let (mine, theirs) = if parity == 0 {
        (&p.a, &p.b)
    } else {
        (&p.b, &p.a)
    };
    for _ in 0..ROUNDS {
        mine.wait_until(|| p.count.load(Ordering::Acquire) % 2 == parity);
        p.count.fetch_add(1, Ordering::AcqRel);
        theirs.wake_all();
    }
    RUNNING.fetch_sub(1, Ordering::AcqRel);
    kthread::kthread_exit()
}

const PARENTS: u64 = 3;
const FORKS: u64 = 6000;

extern "C" fn short_child(_: u64) -> ! {
    kthread::kthread_exit()
}

/// exit and wait in kernel threads: a parent starts two children at a time and joins
/// them, sleeping until each is a zombie and then waiting for its CPU to leave it (a
/// parent woken by that exit must never be queued while it runs: the exiting CPU
/// would wait for it while it waits for the zombie).
extern "C" fn parent(_: u64) -> ! {
    for _ in 0..FORKS {
        let a = kthread::spawn_kthread("ktest-child", short_child, 0);
        let b = kthread::spawn_kthread("ktest-child", short_child, 0);
        for c in [a, b].into_iter().flatten() {
            kthread::join_kthread(c);
        }
    }
    RUNNING.fetch_sub(1, Ordering::AcqRel);
    kthread::kthread_exit()
}

/// Spurious wake-ups, yields and timed sleeps that end around the tick, while the
/// pairs run: every wake-up races with a task between marking itself Sleeping and
/// switching away, on its own CPU's tick or from another CPU.
extern "C" fn noise(_: u64) -> ! {
    let mut n = 0u64;
    while RUNNING.load(Ordering::Acquire) > 1 {
        for p in &PAIR {
            p.a.wake_all();
            p.b.wake_all();
        }
        match n % 3 {
            0 => sched::schedule(),
            1 => sched::sleep_until(time::uptime_ns() + 1_000),
            _ => {}
        }
        n += 1;
    }
    RUNNING.fetch_sub(1, Ordering::AcqRel);
    kthread::kthread_exit()
}

/// Wait queues and the run queue under fire on every CPU: two ping-pong pairs of
/// kernel threads hand a count back and forth ROUNDS times each, three parents start
/// and join short-lived children FORKS times each, and a last thread wakes them
/// spuriously, yields and sleeps. A task queued twice or run while it runs
/// elsewhere trips the scheduler's run-queue assertion; a lost wake-up or two CPUs
/// waiting on each other stalls the count, which fails here after 30 s.
pub fn wait_queue_wakes_race_sleepers() -> TestResult {
    let free_before = crate::mm::frame::frames().free_frames();
    for p in &PAIR {
        p.count.store(0, Ordering::Release);
    }
    RUNNING.store(2 * PAIRS as u64 + PARENTS + 1, Ordering::Release);
    let mut threads = alloc::vec::Vec::new();
    for i in 0..2 * PAIRS as u64 {
        threads.push(kthread::spawn_kthread("ktest-pingpong", ping_pong, i).ok_or("no memory")?);
    }
    for _ in 0..PARENTS {
        threads.push(kthread::spawn_kthread("ktest-parent", parent, 0).ok_or("no memory")?);
    }
    threads.push(kthread::spawn_kthread("ktest-noise", noise, 0).ok_or("no memory")?);
    let deadline = time::uptime_ns() + 30_000_000_000;
    while RUNNING.load(Ordering::Acquire) != 0 {
        kassert!(
            time::uptime_ns() < deadline,
            "stalled: counts {:?} of {}, {} threads still running",
            PAIR.iter()
                .map(|p| p.count.load(Ordering::Acquire))
                .collect::<alloc::vec::Vec<_>>(),
            2 * ROUNDS,
            RUNNING.load(Ordering::Acquire)
        );
        sched::schedule();
        core::hint::spin_loop();
    }
    for t in threads {
        kthread::join_kthread(t);
    }
    // A waker on another CPU may still hold the last count of a reaped thread for a
    // moment (a wait list it took, the tick's list of due sleepers): its stack comes
    // back when that count is dropped.
    let deadline = time::uptime_ns() + 2_000_000_000;
    while crate::mm::frame::frames().free_frames() < free_before && time::uptime_ns() < deadline {
        core::hint::spin_loop();
    }
    for p in &PAIR {
        kassert_eq!(p.count.load(Ordering::Acquire), 2 * ROUNDS);
    }
    Ok(())
}
