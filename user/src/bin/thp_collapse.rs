//! Collapse: the collapse thread (khugepaged for every order), collapse in place and
//! MADV_COLLAPSE. Every region is filled page by page with a pattern (page `i` holds
//! byte `i % 251 + 1`) and checked byte for byte after each collapse.
//!
//! - `khugepaged_files`: the tunables under `khugepaged/` take Linux's values and
//!   refuse `max_ptes_none` 512 with EINVAL (both kernels).
//! - `madvise_collapse_2m`: 2 MiB faulted in at 4 KiB (policy `never`), then only
//!   2048kB `always`: MADV_COLLAPSE maps it with a PMD at once (both kernels:
//!   smaps AnonHugePages 2048 kB; on contkernel thpmaps pmd=2M too).
//! - contkernel only (Linux 6.12 has no mTHP khugepaged, no in-place collapse and a
//!   2 MiB-only MADV_COLLAPSE; detected by uname):
//!   - `madvise_collapse_64k`: 64 KiB faulted in at 4 KiB from the top down, then
//!     64kB `always`: MADV_COLLAPSE returns with the range contiguous (thpmaps
//!     cont=64K) and collapse_alloc +1;
//!   - `in_place_64k` / `in_place_2m`: an mprotect of one page and back leaves the
//!     range unfolded (or the PMD split); MADV_COLLAPSE refolds it with
//!     collapse_in_place +1 and collapse_alloc +0: no copy, no allocation;
//!   - `thread_reaches_full_contiguity`: 512 KiB faulted in at 4 KiB, then 64kB
//!     `always` with scan_sleep_millisecs 10: the thread makes it 100% contiguous
//!     within 20 full scans while a child process keeps writing its own memory and
//!     forking, and this process keeps rewriting its region; pages_collapsed goes up;
//!   - `shared_ranges_skipped`: while a child shares the region, the thread leaves
//!     it alone (collapse_exceed_shared_pte goes up, cont stays 0);
//!   - `max_ptes_none`: half a 64 KiB block touched: with 256 (refused for mTHP
//!     orders) and 0 nothing collapses over 3 full scans; with 511 it does, and the
//!     untouched half reads zero.
//!
//! Each MADV_COLLAPSE prints its duration (copy 64K, copy 2M, in place 64K, in place
//! 2M): under `-icount shift=0` the nanoseconds are instructions, the figures of the
//! collapse benchmark. The tunables and the policy found at start are written back at
//! the end.
#![no_std]
#![no_main]

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering};

use rt::mm::{Region, MADV_COLLAPSE, PROT_READ, PROT_WRITE};
use rt::test::{Context, Fail, Outcome, Suite};
use rt::thp::{self, Stats, CONT_SIZE, PMD_SIZE};
use rt::time::{nanosleep, now_ns, Timespec};
use rt::{ensure, fail, println};

rt::entry!(main);

const PAGE: usize = 4096;
const KH: &str = "/sys/kernel/mm/transparent_hugepage/khugepaged";

const SCAN_SLEEP: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs";
const PAGES_TO_SCAN: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan";
const MAX_PTES_NONE: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none";
const FULL_SCANS: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/full_scans";
const PAGES_COLLAPSED: &CStr = c"/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed";

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("thp_collapse");
    let Some(sc) = thp::Scenario::begin("thp_collapse", &mut t) else {
        return t.finish();
    };
    let saved = [SCAN_SLEEP, PAGES_TO_SCAN, MAX_PTES_NONE].map(|p| (p, rt::fs::read_u64(p)));
    let contkernel = thp::on_contkernel();
    CONT_ON.store(sc.cont_on, Ordering::Relaxed);
    t.run("khugepaged_files", khugepaged_files);
    t.run("madvise_collapse_2m", || madvise_collapse_2m(contkernel));
    if contkernel {
        t.run("madvise_collapse_64k", madvise_collapse_64k);
        // contpte=naive refolds after every single-entry change by itself, and
        // contpte=off never folds: in either there is nothing left to refold.
        let naive = thp::read_word(thp::CONTPTE_MODE).is_some_and(|w| w.as_str() == "naive");
        if sc.cont_on && !naive {
            t.run("in_place_64k", in_place_64k);
        } else {
            println!("thp_collapse: contpte=off or naive: in_place_64k n/a (nothing to refold)");
        }
        t.run("in_place_2m", in_place_2m);
        t.run(
            "thread_reaches_full_contiguity",
            thread_reaches_full_contiguity,
        );
        t.run("shared_ranges_skipped", shared_ranges_skipped);
        t.run("max_ptes_none", max_ptes_none);
    } else {
        println!(
            "thp_collapse: Linux: mTHP collapse, in-place collapse and mTHP MADV_COLLAPSE n/a"
        );
    }
    t.run("restore_tunables", || {
        for (p, v) in saved {
            if let Ok(v) = v {
                set(p, v)?;
            }
        }
        Ok(())
    });
    sc.end(t)
}

/// Whether contiguous entries are in use (`rt::thp::cont_mode`).
static CONT_ON: AtomicBool = AtomicBool::new(true);

/// The thpmaps field that says a range is collapsed at 64 KiB: `cont` (contiguous
/// entries), or `order4` (64 KiB folios) with contiguous entries off.
fn large_64k() -> &'static str {
    if CONT_ON.load(Ordering::Relaxed) {
        "cont"
    } else {
        "order4"
    }
}

fn pattern(i: usize) -> u8 {
    (i % 251 + 1) as u8
}

/// Write the pattern into pages `pages` of `r` (their first and last byte).
fn write_pages(r: &Region, pages: impl Iterator<Item = usize>) {
    for i in pages {
        r.store(i * PAGE, pattern(i));
        r.store(i * PAGE + PAGE - 1, pattern(i));
    }
}

/// Every page of `r` holds the pattern where `written`, zero elsewhere.
fn check_pages(r: &Region, written: impl Fn(usize) -> bool) -> Outcome {
    for i in 0..r.len / PAGE {
        let want = if written(i) { pattern(i) } else { 0 };
        if let Some(off) = r.find_not(i * PAGE, PAGE, 0) {
            ensure!(want != 0, "page {i}: byte {off:#x} is not zero");
        }
        let (a, b) = (r.load(i * PAGE), r.load(i * PAGE + PAGE - 1));
        ensure!(
            a == want && b == want,
            "page {i}: reads {a:#x}/{b:#x}, wrote {want:#x}"
        );
    }
    Ok(())
}

fn set(path: &CStr, v: u64) -> Outcome {
    let text = rt::text::Text::<24>::from_fmt(format_args!("{v}\n"));
    rt::fs::write_file(path, text.as_str().as_bytes()).ctx("khugepaged write")?;
    Ok(())
}

fn get(path: &CStr) -> Result<u64, Fail> {
    rt::fs::read_u64(path).ctx("khugepaged read")
}

fn set_policy(kb: usize) -> Outcome {
    thp::only(kb).map_err(Fail::from)
}

/// MADV_COLLAPSE of all of `r`; prints how long the call took (`what` names the
/// figure; under -icount shift=0 a nanosecond is one instruction).
fn collapse_timed(r: &Region, what: &str) -> Outcome {
    let t0 = now_ns();
    r.advise(0, r.len, MADV_COLLAPSE)
        .ctx("madvise(MADV_COLLAPSE)")?;
    println!("thp_collapse: {what}: MADV_COLLAPSE {} ns", now_ns() - t0);
    Ok(())
}

fn thpmap(r: &Region, field: &str) -> Result<u64, Fail> {
    let m = thp::thpmaps(r.addr).ctx("thpmaps")?;
    let Some(m) = m else {
        fail!("thpmaps: no line for {:#x}", r.addr)
    };
    m.get(field)
        .ok_or_else(|| Fail::new(format_args!("thpmaps: no {field}= in {m}")))
}

fn sleep_ms(ms: u64) {
    let _ = nanosleep(&Timespec::from_ms(ms));
}

/// Wait until the thread has gone round every process `n` more times (at most 5 s).
fn wait_full_scans(n: u64) -> Outcome {
    let start = get(FULL_SCANS)?;
    let t0 = now_ns();
    while get(FULL_SCANS)? < start + n {
        ensure!(now_ns() - t0 < 5_000_000_000, "full_scans stuck at {start}");
        sleep_ms(2);
    }
    Ok(())
}

fn khugepaged_files() -> Outcome {
    for name in [
        "pages_to_scan",
        "scan_sleep_millisecs",
        "alloc_sleep_millisecs",
        "max_ptes_none",
        "max_ptes_shared",
        "pages_collapsed",
        "full_scans",
    ] {
        let mut p = thp::path(format_args!("{KH}/{name}"));
        rt::fs::read_u64(p.as_cstr()).ctx(name)?;
    }
    for v in [0, 256, 511] {
        set(MAX_PTES_NONE, v)?;
        ensure!(
            get(MAX_PTES_NONE)? == v,
            "max_ptes_none reads back {}",
            get(MAX_PTES_NONE)?
        );
    }
    let r = rt::fs::write_file(MAX_PTES_NONE, b"512\n");
    ensure!(
        r == Err(rt::Errno::EINVAL),
        "max_ptes_none 512: {}, expected EINVAL",
        rt::Res(r)
    );
    ensure!(
        get(MAX_PTES_NONE)? == 511,
        "a refused write changed max_ptes_none"
    );
    Ok(())
}

fn madvise_collapse_2m(contkernel: bool) -> Outcome {
    set_policy(0)?;
    let r = Region::anon_aligned(PMD_SIZE, PMD_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    write_pages(&r, (0..512).rev());
    set_policy(2048)?;
    collapse_timed(&r, "copy 2M")?;
    let huge = thp::smaps_kb(r.addr, "AnonHugePages");
    ensure!(
        huge == Some(2048),
        "smaps AnonHugePages {} kB after MADV_COLLAPSE",
        thp::Opt(huge)
    );
    if contkernel {
        let pmd = thpmap(&r, "pmd")?;
        ensure!(pmd == PMD_SIZE as u64, "thpmaps pmd={pmd:#x}");
    }
    check_pages(&r, |_| true)
}

fn madvise_collapse_64k() -> Outcome {
    set_policy(0)?;
    let r = Region::anon_aligned(CONT_SIZE, CONT_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    write_pages(&r, (0..16).rev());
    ensure!(
        thpmap(&r, large_64k())? == 0,
        "contiguous before the collapse"
    );
    set_policy(64)?;
    let s0 = Stats::read(64);
    collapse_timed(&r, "copy 64K")?;
    let s1 = Stats::read(64);
    let cont = thpmap(&r, large_64k())?;
    ensure!(
        cont == CONT_SIZE as u64,
        "thpmaps cont={cont:#x} right after MADV_COLLAPSE"
    );
    s0.expect_delta(&s1, "collapse_alloc", 1)?;
    check_pages(&r, |_| true)
}

/// mprotect of one page to read-only and back: the 64 KiB block (or the PMD) around it
/// stays split although the entries map one folio in order.
fn split_and_restore(r: &Region, page: usize) -> Outcome {
    r.protect(page * PAGE, PAGE, PROT_READ).ctx("mprotect RO")?;
    r.protect(page * PAGE, PAGE, PROT_READ | PROT_WRITE)
        .ctx("mprotect RW")?;
    Ok(())
}

fn in_place(kb: usize, len: usize, field: &str, what: &str) -> Outcome {
    set_policy(kb)?;
    let r = Region::anon_aligned(len, len, PROT_READ | PROT_WRITE).ctx("mmap")?;
    write_pages(&r, 0..len / PAGE);
    ensure!(
        thpmap(&r, field)? == len as u64,
        "{field}= not {len:#x} after the fault"
    );
    split_and_restore(&r, 5)?;
    let got = thpmap(&r, field)?;
    ensure!(got == 0, "{field}={got:#x} after mprotect and back");
    let s0 = Stats::read(kb);
    collapse_timed(&r, what)?;
    let s1 = Stats::read(kb);
    let got = thpmap(&r, field)?;
    ensure!(got == len as u64, "{field}={got:#x} after MADV_COLLAPSE");
    s0.expect_delta(&s1, "collapse_in_place", 1)?;
    s0.expect_delta(&s1, "collapse_alloc", 0)?;
    s0.expect_delta(&s1, "nr_anon", 0)?;
    check_pages(&r, |_| true)?;
    write_pages(&r, 7..8);
    check_pages(&r, |_| true)
}

fn in_place_64k() -> Outcome {
    in_place(64, CONT_SIZE, "cont", "in place 64K")
}

fn in_place_2m() -> Outcome {
    in_place(2048, PMD_SIZE, "pmd", "in place 2M")
}

/// A child that keeps writing its own 256 KiB and forking short-lived grandchildren
/// for `ms` milliseconds, then exits 0 if its data stayed intact.
fn noisy_child(ms: i128) -> Result<usize, Fail> {
    rt::proc::spawn(move || {
        let Ok(mine) = Region::anon(256 << 10, PROT_READ | PROT_WRITE, 0) else {
            return 2;
        };
        let t0 = now_ns();
        let mut round = 0u8;
        while now_ns() - t0 < ms * 1_000_000 {
            round = round.wrapping_add(1);
            mine.fill(0, mine.len, round);
            if rt::proc::fork_wait(|| 0).is_err() {
                return 3;
            }
            if mine.find_not(0, mine.len, round).is_some() {
                return 1;
            }
        }
        0
    })
    .ctx("fork")
}

fn thread_reaches_full_contiguity() -> Outcome {
    set_policy(0)?;
    let len = 8 * CONT_SIZE;
    let r = Region::anon_aligned(len, CONT_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    write_pages(&r, (0..len / PAGE).rev());
    set(MAX_PTES_NONE, 511)?;
    set(PAGES_TO_SCAN, 4096)?;
    let child = noisy_child(600)?;
    let collapsed0 = get(PAGES_COLLAPSED)?;
    let scans0 = get(FULL_SCANS)?;
    let t0 = now_ns();
    set(SCAN_SLEEP, 10)?;
    set_policy(64)?;
    let mut cont = 0;
    while get(FULL_SCANS)? < scans0 + 20 {
        // Stores while the thread copies: each must survive.
        write_pages(&r, 0..len / PAGE);
        cont = thpmap(&r, large_64k())?;
        if cont == len as u64 {
            break;
        }
        ensure!(now_ns() - t0 < 10_000_000_000, "full_scans stuck");
        sleep_ms(1);
    }
    let ms = (now_ns() - t0) / 1_000_000;
    let rounds = get(FULL_SCANS)? - scans0;
    set(SCAN_SLEEP, 10_000)?;
    println!("thp_collapse: 512 KiB at 4 KiB -> contiguous: {ms} ms, {rounds} full scans");
    let status = rt::proc::wait(child).ctx("wait")?;
    ensure!(
        status.exited() && status.exit_status() == 0,
        "the writing and forking child failed: {:#x}",
        status.0
    );
    ensure!(
        cont == len as u64,
        "cont={cont:#x} of {len:#x} after {rounds} full scans"
    );
    let collapsed = get(PAGES_COLLAPSED)? - collapsed0;
    ensure!(
        collapsed >= 8,
        "pages_collapsed +{collapsed}, expected at least +8"
    );
    check_pages(&r, |_| true)
}

fn shared_ranges_skipped() -> Outcome {
    set_policy(0)?;
    let r = Region::anon_aligned(CONT_SIZE, CONT_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    write_pages(&r, (0..16).rev());
    let child = rt::proc::spawn(|| {
        sleep_ms(400);
        0
    })
    .ctx("fork")?;
    let s0 = Stats::read(64);
    set(SCAN_SLEEP, 10)?;
    set_policy(64)?;
    let waited = wait_full_scans(3);
    set(SCAN_SLEEP, 10_000)?;
    waited?;
    let s1 = Stats::read(64);
    let cont = thpmap(&r, large_64k())?;
    let _ = rt::proc::wait(child);
    ensure!(
        cont == 0,
        "the thread collapsed a shared range: cont={cont:#x}"
    );
    let d = s0.delta(&s1, "collapse_exceed_shared_pte").unwrap_or(0);
    ensure!(d >= 1, "collapse_exceed_shared_pte +{d}");
    check_pages(&r, |_| true)
}

fn max_ptes_none() -> Outcome {
    set_policy(0)?;
    let r = Region::anon_aligned(CONT_SIZE, CONT_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    write_pages(&r, (0..8).rev());
    set_policy(64)?;
    set(SCAN_SLEEP, 10)?;
    let mut result = Ok(());
    for (v, want) in [(256, 0), (0, 0), (511, CONT_SIZE as u64)] {
        set(MAX_PTES_NONE, v)?;
        let s0 = Stats::read(64);
        if let Err(e) = wait_full_scans(3) {
            result = Err(e);
            break;
        }
        let s1 = Stats::read(64);
        let cont = thpmap(&r, large_64k())?;
        if cont != want {
            result = Err(Fail::new(format_args!(
                "max_ptes_none {v}: cont={cont:#x}, expected {want:#x}"
            )));
            break;
        }
        if want == 0 && s0.delta(&s1, "collapse_exceed_none_pte").unwrap_or(0) < 1 {
            result = Err(Fail::new(format_args!(
                "max_ptes_none {v}: collapse_exceed_none_pte did not go up"
            )));
            break;
        }
    }
    set(SCAN_SLEEP, 10_000)?;
    result?;
    check_pages(&r, |i| i < 8)
}
