//! bench_cow: what a write to memory shared with a live child costs, folio by folio:
//! 4 MiB of 64 KiB folios, a child that keeps its copy mapped, and the parent writing
//! either every page (dense) or one page per folio (sparse). Prints, per pattern: the
//! write faults taken, the first write's latency, the time for all writes, and the
//! memory the writes added (MemFree). Run it once with the kernel's default copy of one
//! page (`cow=page`, as Linux) and once with `cow=folio`; scripts/bench.sh does both.
//!
//! Times come from clock_gettime(CLOCK_MONOTONIC): under QEMU with
//! `-icount shift=0,sleep=off` they follow retired instructions, so they repeat exactly.
//! Run it on one CPU: the figures must not include what the child does meanwhile.
#![no_std]
#![no_main]

use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::println;
use rt::proc::{self, RUSAGE_SELF};
use rt::thp::{self, Policy};
use rt::time::{self, Timespec};

rt::entry!(main);

const FOLIO: usize = 64 << 10;
const LEN: usize = 4 << 20;

struct Figures {
    faults: i64,
    first_ns: i128,
    all_ns: i128,
    added_kb: Option<i64>,
    /// This kernel's counters of the 64 KiB size: whole-folio reuses and folio copies.
    reused: Option<u64>,
    copied: Option<u64>,
}

fn minflt() -> i64 {
    proc::getrusage(RUSAGE_SELF).map_or(0, |r| r.minflt)
}

/// Fill a fresh region, fork a child that keeps it mapped for a while, and write one
/// byte at every `stride` bytes in the parent.
fn run(stride: usize) -> Option<Figures> {
    let r = Region::anon_aligned(LEN, FOLIO, PROT_READ | PROT_WRITE).ok()?;
    r.fill(0, LEN, 0x11);
    let child = proc::spawn(|| {
        let _ = time::nanosleep(&Timespec::from_ms(2000));
        0
    })
    .ok()?;
    // Let the child run to its sleep first: its own first writes (its stack) copy too,
    // and must not fall inside the measurement.
    let _ = time::nanosleep(&Timespec::from_ms(20));
    let (reuse0, copy0) = (thp::stat(64, "cow_reuse"), thp::stat(64, "cow_folio_copy"));
    let (f0, m0, t0) = (minflt(), thp::meminfo_kb("MemFree"), time::now_ns());
    r.store(0, 0x22);
    let t1 = time::now_ns();
    for off in (stride..LEN).step_by(stride) {
        r.store(off, 0x22);
    }
    let (t2, f1, m1) = (time::now_ns(), minflt(), thp::meminfo_kb("MemFree"));
    proc::wait(child).ok()?;
    Some(Figures {
        faults: f1 - f0,
        first_ns: t1 - t0,
        all_ns: t2 - t0,
        added_kb: m0.zip(m1).map(|(a, b)| a as i64 - b as i64),
        reused: reuse0.zip(thp::stat(64, "cow_reuse")).map(|(a, b)| b - a),
        copied: copy0
            .zip(thp::stat(64, "cow_folio_copy"))
            .map(|(a, b)| b - a),
    })
}

fn main(_args: &rt::Args) -> i32 {
    thp::mount_pseudo_fs();
    let saved = Policy::save().ok();
    if thp::only(64).is_err() {
        println!("bench_cow: cannot select 64 KiB folios: n/a");
    }
    let mut ok = true;
    for (pattern, stride) in [("dense", PAGE), ("sparse", FOLIO)] {
        match run(stride) {
            Some(f) => println!(
                "bench_cow: pattern={pattern} writes={} faults={} first_write_us={} all_writes_us={} added_kb={} folio_reuses={} folio_copies={}",
                LEN / stride,
                f.faults,
                f.first_ns / 1000,
                f.all_ns / 1000,
                f.added_kb.map_or(-1, |k| k),
                f.reused.map_or(-1, |k| k as i64),
                f.copied.map_or(-1, |k| k as i64)
            ),
            None => {
                println!("bench_cow: pattern={pattern}: setup failed");
                ok = false;
            }
        }
    }
    if let Some(p) = saved {
        let _ = p.restore();
    }
    if ok {
        0
    } else {
        1
    }
}
