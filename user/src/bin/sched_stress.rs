//! The scheduler and its wait queues under churn: thousands of children that exit at
//! once, yield first, sleep first, or are killed by a fault, several alive at a time
//! and reaped by wait4(-1) and by pid; then rounds of nanosleep and clock_nanosleep
//! (relative and TIMER_ABSTIME, CLOCK_MONOTONIC and CLOCK_REALTIME) in children and
//! parent at once, each sleep checked against the clock. On a kernel whose wake-ups
//! race with a task going to sleep or exiting, this hangs or loses a child; on a
//! correct one it ends in a few seconds under QEMU TCG with 4 CPUs.
#![no_std]
#![no_main]

use rt::proc::{self, WaitStatus, SIGSEGV};
use rt::test::{Context, Outcome, Suite};
use rt::time::{self, Timespec, CLOCK_MONOTONIC, CLOCK_REALTIME, TIMER_ABSTIME};
use rt::{ensure, fail, Errno};

rt::entry!(main);

/// Children alive at a time, and rounds of them.
const WIDTH: usize = 4;
const FORK_ROUNDS: usize = 500;
const SLEEP_ROUNDS: usize = 40;
/// A low address that is never mapped.
const LOW: usize = 0x10;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("sched_stress");
    t.run("fork_exit_kill_wait_rounds", fork_rounds_quiet);
    t.run("sleep_wake_rounds", sleep_rounds);
    t.run("no_children_left", || match proc::wait4(-1, 0) {
        Err(Errno::ECHILD) => Ok(()),
        r => fail!("wait4(-1) gave {}, want ECHILD", rt::Res(r.map(|(p, _)| p))),
    });
    t.finish()
}

/// What child `i` of round `r` does, and the status its parent must see.
#[derive(Clone, Copy)]
enum Kind {
    Exit,
    YieldThenExit,
    SleepThenExit,
    Fault,
}

fn kind(r: usize, i: usize) -> Kind {
    match (r + i) % 4 {
        0 => Kind::Exit,
        1 => Kind::YieldThenExit,
        2 => Kind::SleepThenExit,
        _ => Kind::Fault,
    }
}

fn child(kind: Kind, code: i32) -> i32 {
    match kind {
        Kind::Exit => {}
        Kind::YieldThenExit => {
            let _ = time::sched_yield();
        }
        Kind::SleepThenExit => {
            let _ = time::nanosleep(&Timespec { sec: 0, nsec: 1 });
        }
        Kind::Fault => {
            // SAFETY: deliberately invalid, in a child: the store faults and the
            // kernel kills the child with SIGSEGV.
            unsafe { core::ptr::write_volatile(LOW as *mut u8, 0) };
        }
    }
    code
}

fn expect(kind: Kind, code: i32, s: WaitStatus) -> Outcome {
    match kind {
        Kind::Fault => ensure!(
            s.signaled() && s.term_sig() == SIGSEGV,
            "faulting child: {s}, want signal 11"
        ),
        _ => ensure!(
            s.exited() && s.exit_status() == code as u32,
            "child: {s}, want exited {code}"
        ),
    }
    Ok(())
}

/// [`fork_rounds`] with the kernel's kill reports off: one child in four faults on
/// purpose, and 500 reports would bury everything else on the console. The kernel
/// counts them instead, and prints the count when the reports are back on.
fn fork_rounds_quiet() -> Outcome {
    rt::thp::mount_pseudo_fs();
    rt::println!(
        "sched_stress: {FORK_ROUNDS} children are killed on purpose (SIGSEGV): \
         kill reports off, counted by the kernel (/proc/sys/debug/exception-trace 0)"
    );
    let old = proc::set_exception_trace(false).ctx("exception-trace off")?;
    let r = fork_rounds();
    proc::set_exception_trace(old).ctx("exception-trace back")?;
    r
}

/// Each round forks WIDTH children at once; even rounds reap with wait4(-1), odd
/// rounds by pid, last child first. One child per round faults.
fn fork_rounds() -> Outcome {
    let start = time::now_ns();
    for r in 0..FORK_ROUNDS {
        let mut pids = [0usize; WIDTH];
        for (i, pid) in pids.iter_mut().enumerate() {
            let code = ((r * WIDTH + i) % 200) as i32;
            *pid = proc::spawn(|| child(kind(r, i), code)).ctx("fork")?;
        }
        for n in 0..WIDTH {
            let (pid, s) = if r % 2 == 0 {
                proc::wait4(-1, 0).ctx("wait4(-1)")?
            } else {
                let pid = pids[WIDTH - 1 - n];
                (pid, proc::wait(pid).ctx("wait4(pid)")?)
            };
            let Some(i) = pids.iter().position(|&p| p == pid) else {
                fail!("round {r}: wait4 reaped pid {pid}, not a child of this round");
            };
            pids[i] = 0;
            expect(kind(r, i), ((r * WIDTH + i) % 200) as i32, s)?;
        }
    }
    let ms = (time::now_ns() - start) / 1_000_000;
    rt::println!(
        "sched_stress: {} children forked, reaped and checked in {ms} ms",
        FORK_ROUNDS * WIDTH
    );
    Ok(())
}

/// Sleeps `ns` on `clock`, relative or to an absolute time, and checks the clock has
/// passed the end; false if the sleep failed or ended early.
fn sleep_checked(clock: usize, absolute: bool, ns: i64) -> bool {
    let Ok(before) = time::clock_gettime(clock) else {
        return false;
    };
    let end = before.plus_ns(ns);
    let r = if absolute {
        time::clock_nanosleep(clock, TIMER_ABSTIME, &end)
    } else {
        time::clock_nanosleep(clock, 0, &Timespec { sec: 0, nsec: ns })
    };
    r.is_ok() && time::clock_gettime(clock).is_ok_and(|now| now >= end)
}

/// Each round: WIDTH - 1 children sleep (both clocks, both modes) while the parent
/// sleeps too, then the parent reaps them; a child exits 1 if a sleep failed or woke
/// early.
fn sleep_rounds() -> Outcome {
    let start = time::now_ns();
    for r in 0..SLEEP_ROUNDS {
        let mut pids = [0usize; WIDTH - 1];
        for (i, pid) in pids.iter_mut().enumerate() {
            let clock = if (r + i) % 2 == 0 {
                CLOCK_MONOTONIC
            } else {
                CLOCK_REALTIME
            };
            *pid = proc::spawn(|| {
                let ok = sleep_checked(clock, false, 300_000)
                    && sleep_checked(clock, true, 200_000 * (i as i64 + 1));
                (!ok) as i32
            })
            .ctx("fork")?;
        }
        ensure!(
            sleep_checked(CLOCK_MONOTONIC, r % 2 == 1, 100_000),
            "round {r}: the parent's sleep failed or ended early"
        );
        for pid in pids {
            let s = proc::wait(pid).ctx("wait4")?;
            ensure!(
                s.exited() && s.exit_status() == 0,
                "round {r}: a sleeping child {s}"
            );
        }
    }
    let ms = (time::now_ns() - start) / 1_000_000;
    rt::println!(
        "sched_stress: {SLEEP_ROUNDS} rounds of {} sleepers in {ms} ms",
        WIDTH
    );
    Ok(())
}
