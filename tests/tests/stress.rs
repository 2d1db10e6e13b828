//! The randomized address-space test (`user/src/bin/stress.rs`) for a fixed set of
//! seeds, one boot per seed, on the matrix cell of the environment (scripts/test.sh
//! runs it on both CPU models with 4 CPUs): the program finds no mismatch and no call
//! result that differs from Linux 6.12's, the kernel neither panics (page-table
//! checker, folio audits) nor hangs, and every frame comes back at the end. One seed
//! runs the threaded mode: three threads at once in one address space.
//! `scripts/stress.sh` runs any range of seeds the same way.

use std::time::Duration;

use contkernel_tests::Machine;

/// Operations per seed: about two to five seconds of one boot on this kernel.
const OPS: u32 = 3000;
/// Operations per thread in the threaded mode (three threads in one address space).
const THREAD_OPS: u32 = 1500;

fn stress(seed: u32, threads: bool) {
    let m = Machine::from_env().with_user_initramfs();
    let prog = if threads {
        format!("stress:{seed}:{THREAD_OPS}:t")
    } else {
        format!("stress:{seed}:{OPS}")
    };
    let out = m
        .timeout(Duration::from_secs(180))
        .append(&format!("-- {prog}"))
        .boot();
    assert!(
        !out.timed_out,
        "stress seed {seed} did not finish in time{out}"
    );
    assert!(
        !out.panicked(),
        "the kernel panicked under seed {seed}{out}"
    );
    // Indented: scripts/test.sh shows a failing test's lines that start with blanks.
    let mismatch: Vec<&str> = out
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("stress: "))
        .take(40)
        .collect();
    assert!(
        out.lines()
            .contains(&format!("stress: seed {seed} passed").as_str())
            && out.console.contains(&format!("init: {prog} exited 0")),
        "stress seed {seed} failed:\n    {}{out}",
        mismatch.join("\n    ")
    );
    assert!(
        out.console.contains("frames not returned: 0"),
        "frames leaked after seed {seed}{out}"
    );
    assert_eq!(
        out.status,
        Some(0),
        "the kernel did not power off cleanly{out}"
    );
}

macro_rules! seeds {
    ($($name:ident = $seed:literal $(, $threads:ident)?;)*) => {
        $(#[test]
        fn $name() {
            stress($seed, false $(|| stringify!($threads) == "threads")?);
        })*
    };
}

seeds! {
    seed_1 = 1;
    seed_2 = 2;
    seed_3 = 3;
    seed_4 = 4;
    seed_5 = 5;
    seed_6 = 6;
    // Three threads, each with its own arena, in one address space (`t`).
    seed_7_threads = 7, threads;
}
