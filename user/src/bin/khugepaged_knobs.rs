//! The collapse thread yields whatever its settings: with `scan_sleep_millisecs` 0,
//! with `alloc_sleep_millisecs` 0 as well, and with `pages_to_scan` at its maximum
//! over a 1 TiB reservation (524288 windows a round), this program keeps running
//! (on `-smp 1` the thread and it share the one CPU) and the thread keeps scanning.
//!
//! Each check sets the knobs, then reads the clock in a loop (forking a child that
//! touches memory every 50 ms, except over the reservation, which each child would
//! inherit), for a second and until the thread has gone round every process once: it
//! fails if that took longer than `DEADLINE_MS`, or if this program was kept off the
//! CPU at a stretch for more than `MAX_GAP_MS` and more than a quarter of the run. A
//! round over the reservation that does not yield keeps it off for the whole round
//! (2066 ms of a 2915 ms run measured); with yields the gaps are a few 10 ms ticks,
//! plus the host's own descheduling of QEMU (up to 264 ms in a 1150 ms run and
//! 1088 ms in a 5830 ms run measured on a loaded host). A kernel whose thread does
//! not yield hangs here on `-smp 1`. The knobs and the policy are written back at the
//! end. The same binary passes on Linux 6.12.
#![no_std]
#![no_main]

use core::ffi::CStr;

use rt::mm::{Region, PROT_NONE, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Fail, Outcome, Suite};
use rt::thp::{self, Scenario, CONT_SIZE, PMD_SIZE};
use rt::time::now_ns;
use rt::{ensure, println};

rt::entry!(main);

const SCAN_SLEEP: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs";
const ALLOC_SLEEP: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/alloc_sleep_millisecs";
const PAGES_TO_SCAN: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan";
const FULL_SCANS: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/full_scans";

const MIB: usize = 1 << 20;
/// A gap the host's descheduling of QEMU alone can make, well under a round over the
/// reservation that does not yield.
const MAX_GAP_MS: i128 = 500;
/// How long a full scan may take with the thread sharing the CPU.
const DEADLINE_MS: i128 = 30_000;
/// The reservation whose windows a round walks with `pages_to_scan` at its maximum.
const WIDE: usize = 1 << 40;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("khugepaged_knobs");
    let Some(s) = Scenario::begin("khugepaged_knobs", &mut t) else {
        return t.finish();
    };
    let saved = [SCAN_SLEEP, ALLOC_SLEEP, PAGES_TO_SCAN].map(|p| (p, rt::fs::read_u64(p)));
    // A region for the thread to scan, made while 2 MiB (and 64 KiB) folios are
    // allowed: Linux's thread visits only the processes that had a VMA eligible for
    // 2 MiB ones.
    let mut work = None;
    t.run("setup", || {
        work = Some(setup()?);
        Ok(())
    });
    if work.is_some() {
        t.run("scan_sleep_0", || with_knobs(&[(SCAN_SLEEP, 0)], true));
        t.run("alloc_sleep_0", || {
            with_knobs(&[(SCAN_SLEEP, 0), (ALLOC_SLEEP, 0)], true)
        });
        t.run("pages_to_scan_max", || {
            let wide = Region::anon(WIDE, PROT_NONE, 0).ctx("mmap PROT_NONE")?;
            // No children here: each would inherit the reservation and lengthen the
            // full scan the check waits for.
            let knobs = [(SCAN_SLEEP, 1), (PAGES_TO_SCAN, u64::from(u32::MAX))];
            let r = with_knobs(&knobs, false);
            drop(wide);
            r
        });
    }
    t.run("restore_tunables", || {
        for (p, v) in saved {
            set(p, v.ctx("khugepaged read at start")?)?;
        }
        Ok(())
    });
    drop(work);
    s.end(t)
}

/// The region the thread scans while the checks run.
fn setup() -> Result<Region, Fail> {
    thp::only(PMD_SIZE / 1024)?;
    // 64 KiB too: on contkernel each window is then also looked at for 64 KiB blocks,
    // which makes a round over the reservation long enough to tell apart.
    thp::write_policy(&thp::size_path(CONT_SIZE / 1024, "enabled"), "always")?;
    let r = Region::anon(4 * MIB, PROT_READ | PROT_WRITE, 0).ctx("mmap 4 MiB")?;
    r.fill(0, r.len, 1);
    Ok(r)
}

fn set(path: &CStr, v: u64) -> Outcome {
    let text = rt::text::Text::<24>::from_fmt(format_args!("{v}\n"));
    rt::fs::write_file(path, text.as_str().as_bytes()).ctx("khugepaged write")?;
    Ok(())
}

/// With `knobs` set: the thread completes a full scan (`full_scans` + 2) within
/// `DEADLINE_MS` while this program runs for at least a second (forking a child
/// every 50 ms if `children`), and never keeps it off the CPU for more than
/// `MAX_GAP_MS` and a quarter of the run at once.
fn with_knobs(knobs: &[(&CStr, u64)], children: bool) -> Outcome {
    let scans = rt::fs::read_u64(FULL_SCANS).ctx("full_scans")?;
    for &(p, v) in knobs {
        set(p, v)?;
    }
    let t0 = now_ns();
    let (mut last, mut gap, mut next_child) = (t0, 0, t0);
    let mut after = scans;
    while last - t0 < 1_000_000_000 || (after < scans + 2 && last - t0 < DEADLINE_MS * 1_000_000) {
        let now = now_ns();
        gap = gap.max(now - last);
        last = now;
        if children && now >= next_child {
            let s = proc::fork_wait(|| {
                let r = Region::anon(MIB, PROT_READ | PROT_WRITE, 0);
                r.map_or(2, |r| {
                    r.fill(0, r.len, 7);
                    i32::from(r.find_not(0, r.len, 7).is_some())
                })
            })
            .ctx("fork/wait4")?;
            ensure!(s.exited() && s.exit_status() == 0, "child {s}");
            // The child's run is not a gap: the thread is not what kept it.
            next_child = now_ns() + 50_000_000;
            last = now_ns();
        }
        after = rt::fs::read_u64(FULL_SCANS).ctx("full_scans")?;
    }
    // Back to a long sleep before the checks, so that a failure report is not slowed.
    set(SCAN_SLEEP, 10_000)?;
    println!(
        "khugepaged_knobs: {} full scans in {} ms, longest gap {} ms",
        after - scans,
        (last - t0) / 1_000_000,
        gap / 1_000_000
    );
    ensure!(
        after >= scans + 2,
        "no full scan in {DEADLINE_MS} ms (full_scans {scans} -> {after})"
    );
    ensure!(
        gap < MAX_GAP_MS * 1_000_000 || gap * 4 < last - t0,
        "kept off the CPU {} ms of {} ms",
        gap / 1_000_000,
        (last - t0) / 1_000_000
    );
    Ok(())
}
