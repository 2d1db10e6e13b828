//! A fork bomb under the kernel's task limit (/proc/sys/kernel/threads-max, which
//! binds root too; RLIMIT_NPROC does not on Linux): fork fails with EAGAIN, the bomb
//! unwinds, and nothing is lost.
//!
//! - `threads_max_file`: the file reads a number; 0, a negative number and a word are
//!   refused with EINVAL and leave it as it was.
//! - `bomb`: with threads-max at `LIMIT`, every process forks `FANOUT` children that
//!   do the same, `DEPTH` levels deep (far more than `LIMIT` processes), and holds
//!   until all have tried: some fork must fail with EAGAIN, and no other error may
//!   occur; then each waits for its children. With the limit back, fork works again.
//!   Free memory before and after is printed; on contkernel the check at power-off
//!   counts every frame back (Linux keeps some in its slab caches).
//!
//! The same binary passes on Linux 6.12.
#![no_std]
#![no_main]

use core::ffi::CStr;

use rt::proc::{self, WaitStatus};
use rt::test::{Context, Outcome, Suite};
use rt::time::{clock_nanosleep, now_ns, Timespec, CLOCK_MONOTONIC, TIMER_ABSTIME};
use rt::{ensure, println, thp, Errno};

rt::entry!(main);

const THREADS_MAX: &CStr = c"/proc/sys/kernel/threads-max";
/// The limit during the bomb: far below the kernel's default (thousands per GiB),
/// above the tasks a booted Linux has before it (kernel threads included).
const LIMIT: u64 = 400;
const FANOUT: u32 = 4;
const DEPTH: u32 = 6;
/// How long the bomb's processes hold on before they wait for their children.
const HOLD_NS: i128 = 5_000_000_000;

/// A process's exit code: which outcomes it or its descendants saw.
const SAW_EAGAIN: i32 = 1;
const SAW_OTHER: i32 = 2;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("fork_bomb");
    thp::mount_pseudo_fs();
    let saved = rt::fs::read_u64(THREADS_MAX);
    t.run("threads_max_file", || {
        let v = saved.ctx("threads-max")?;
        println!("fork_bomb: threads-max {v}");
        for bad in [&b"0\n"[..], b"-5\n", b"many\n"] {
            let e = rt::fs::write_file(THREADS_MAX, bad);
            ensure!(e == Err(Errno::EINVAL), "write {bad:?}: {e:?}");
        }
        let now = rt::fs::read_u64(THREADS_MAX).ctx("threads-max")?;
        ensure!(now == v, "threads-max {v} became {now}");
        Ok(())
    });
    if let Ok(v) = saved {
        t.run("bomb", || bomb(v));
    }
    t.finish()
}

fn set(v: u64) -> Outcome {
    let text = rt::text::Text::<24>::from_fmt(format_args!("{v}\n"));
    rt::fs::write_file(THREADS_MAX, text.as_str().as_bytes()).ctx("write threads-max")?;
    Ok(())
}

fn bomb(saved: u64) -> Outcome {
    let free = thp::meminfo_kb("MemFree").ctx("MemFree")?;
    set(LIMIT)?;
    let release = now_ns() + HOLD_NS;
    let s = proc::fork_wait(|| grow(DEPTH, release));
    set(saved)?;
    let s = s.ctx("fork/wait4")?;
    let after = thp::meminfo_kb("MemFree").ctx("MemFree")?;
    println!("fork_bomb: MemFree {free} kB before, {after} kB after");
    ensure!(s.exited(), "the bomb's root {s}");
    ensure!(
        s.exit_status() & SAW_OTHER as u32 == 0,
        "a fork or wait4 failed with another error than EAGAIN, or a child died"
    );
    ensure!(
        s.exit_status() & SAW_EAGAIN as u32 != 0,
        "no fork failed with EAGAIN under threads-max {LIMIT}"
    );
    let s = proc::fork_wait(|| 0).ctx("fork after the bomb")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child after the bomb {s}"
    );
    Ok(())
}

/// One process of the bomb: `FANOUT` children each growing `depth - 1` more levels,
/// a hold until `release`, then its children reaped. Returns what it saw.
fn grow(depth: u32, release: i128) -> i32 {
    let mut saw = 0;
    let mut children = 0;
    for _ in 0..if depth == 0 { 0 } else { FANOUT } {
        match proc::fork() {
            Ok(0) => proc::exit_group(grow(depth - 1, release)),
            Ok(_) => children += 1,
            Err(Errno::EAGAIN) => saw |= SAW_EAGAIN,
            Err(_) => saw |= SAW_OTHER,
        }
    }
    let until = Timespec {
        sec: (release / 1_000_000_000) as i64,
        nsec: (release % 1_000_000_000) as i64,
    };
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until) == Err(Errno::EINTR) {}
    for _ in 0..children {
        match proc::wait4(-1, 0) {
            Ok((_, s)) => saw |= code(s),
            Err(_) => saw |= SAW_OTHER,
        }
    }
    saw
}

/// What a reaped child reports: its exit code, or SAW_OTHER if it did not exit.
fn code(s: WaitStatus) -> i32 {
    if s.exited() {
        (s.exit_status() & 3) as i32
    } else {
        SAW_OTHER
    }
}
