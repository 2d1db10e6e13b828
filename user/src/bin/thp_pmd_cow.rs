//! Copy-on-write of a 2 MiB folio mapped by a PMD block while the child still maps
//! it. Only hugepages-2048kB is `always` (top-level and every other size `never`).
//!
//! `pmd_cow_split`: a 2 MiB region aligned to 2 MiB is filled with 0x11: one minor
//! fault and anon_fault_alloc +1 of 2048kB (both kernels), thpmaps order9=pmd=2M
//! (cont= printed, not checked: a PMD block is not made of contiguous entries).
//! Fork; the child sleeps 200 ms, then checks its copy is all 0x11 and reports
//! through its exit code; meanwhile the parent writes one word in the sixth 64 KiB
//! block: one fault, and hugepages-2048kB split_deferred and
//! nr_anon_partially_mapped +0 (the child still maps the whole folio), +1 once the
//! child has exited (both kernels). Then, on contkernel: thpmaps pmd=0, cont=2M-64K (the block
//! remapped as 512 entries in 32 contiguous blocks, only the written one not
//! contiguous), order9=2M-4K and order0=4K (the copied page);
//! /sys/kernel/mm/contpte/stats pmd_splits +1 and unfolds at most +1. On Linux:
//! /proc/vmstat thp_split_pmd +1 (where that file exists). Every byte is checked in
//! the parent; counters after the child's exit are printed.
//!
//! With cow=folio (contkernel's transparent_hugepage/cow says `folio`) the write
//! copies the whole 2 MiB instead: cow_folio_copy +1, thpmaps pmd=order9=2M,
//! pmd_splits +0 and unfolds +0, split_deferred and nr_anon_partially_mapped +0 at
//! the write and after the exit.
//!
//! The policy found at start is written back at the end. Files missing on Linux
//! (thpmaps, contpte/stats) are n/a there and required on contkernel.
//! With contpte=off cont= is expected 0 (see `rt::thp::cont_mode`). After fork the
//! parent sleeps 20 ms (the child runs to its sleep: on contkernel its first
//! writes split its own 2 MiB stack folio, a pmd_split of its own) and rewrites
//! 256 KiB of its stack before it measures, so the window holds only the write.
#![no_std]
#![no_main]

use rt::mm::{Region, PROT_READ, PROT_WRITE};
use rt::proc::{self, WNOHANG};
use rt::test::{Context, Outcome, Suite};
use rt::thp::{self, ContStats, Delta, Opt, Stats, CONTPTE_NAMES, CONT_SIZE, PMD_SIZE};
use rt::time::{nanosleep, Timespec};
use rt::{ensure, fail, println};

rt::entry!(main);

const KB: usize = 2048;
const OLD: u8 = 0x11;
const NEW: u64 = 0xfedc_ba98_7654_3210;
/// The word the parent writes: in the sixth 64 KiB block, not at its start.
const WORD: usize = 5 * CONT_SIZE + 0x1238;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("thp_pmd_cow");
    let Some(sc) = thp::Scenario::begin("thp_pmd_cow", &mut t) else {
        return t.finish();
    };
    let (contkernel, cont_on, folio_cow) =
        (thp::on_contkernel(), sc.cont_on, thp::cow_copies_folio());
    if contkernel {
        println!(
            "thp_pmd_cow: cow={}",
            if folio_cow { "folio" } else { "page" }
        );
    }
    match thp::only(KB) {
        Err(e) => t.report("set_policy_2m_only", Err(e.into())),
        Ok(()) => {
            t.run("pmd_cow_split", || pmd_cow(contkernel, cont_on, folio_cow));
            t.run("vmstat_and_hpage_pmd_size", vmstat_and_pmd_size);
        }
    }
    sc.end(t)
}

/// Linux's interfaces: hpage_pmd_size is 2097152, /proc/vmstat's thp_fault_alloc
/// counts the fault that maps a 2 MiB folio (pgfault goes up, nr_anon_transparent_hugepages +1 while
/// it lives), and /proc/self/smaps says AnonHugePages: 2048 kB for its VMA; on
/// contkernel the thpmaps summary counts it as anon-thp-pmd-aligned-2048kB.
fn vmstat_and_pmd_size() -> Outcome {
    let size = rt::fs::read_u64(c"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ctx("hpage_pmd_size")?;
    ensure!(size == PMD_SIZE as u64, "hpage_pmd_size {size}");
    let alloc0 = thp::keyed(c"/proc/vmstat", "thp_fault_alloc").ctx("vmstat thp_fault_alloc")?;
    let nr0 = thp::keyed(c"/proc/vmstat", "nr_anon_transparent_hugepages")
        .ctx("vmstat nr_anon_transparent_hugepages")?;
    let faults0 = thp::keyed(c"/proc/vmstat", "pgfault").ctx("vmstat pgfault")?;
    let r = Region::anon_aligned(PMD_SIZE, PMD_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    r.store(0, 1);
    let faults1 = thp::keyed(c"/proc/vmstat", "pgfault").ctx("vmstat pgfault")?;
    ensure!(
        faults1 > faults0,
        "pgfault {faults0} -> {faults1}: the fault was not counted"
    );
    let alloc1 = thp::keyed(c"/proc/vmstat", "thp_fault_alloc").ctx("vmstat")?;
    let nr1 = thp::keyed(c"/proc/vmstat", "nr_anon_transparent_hugepages").ctx("vmstat")?;
    ensure!(
        alloc1 == alloc0 + 1,
        "thp_fault_alloc {alloc0} -> {alloc1}, expected +1"
    );
    ensure!(
        nr1 == nr0 + 1,
        "nr_anon_transparent_hugepages {nr0} -> {nr1}, expected +1"
    );
    Ok(())
}

fn print_cont(when: &str, a: &ContStats, b: &ContStats) {
    if !a.present() || !b.present() {
        println!("thp_pmd_cow: {when}: contpte/stats n/a");
        return;
    }
    let mut line = rt::text::Text::<320>::new();
    for n in CONTPTE_NAMES {
        let _ = core::fmt::write(&mut line, format_args!(" {n} {}", Delta(a.delta(b, n))));
    }
    println!("thp_pmd_cow: {when}: contpte/stats:{line}");
}

fn pmd_cow(contkernel: bool, cont_on: bool, folio_cow: bool) -> Outcome {
    let r = Region::anon_aligned(PMD_SIZE, PMD_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    let s0 = Stats::read(KB);
    let f0 = thp::minflt()?;
    r.fill(0, PMD_SIZE, OLD);
    let f1 = thp::minflt()?;
    let s1 = Stats::read(KB);
    let map0 = thp::need_thpmaps(r.addr)?;
    println!(
        "thp_pmd_cow: fill minflt={} anon_fault_alloc={} thpmaps: {}",
        f1 - f0,
        Delta(s0.delta(&s1, "anon_fault_alloc")),
        Opt(map0.as_ref())
    );
    ensure!(
        f1 - f0 == 1,
        "filling 2 MiB with only 2M folios took {} faults, expected 1 (a PMD block)",
        f1 - f0
    );
    s0.expect_delta(&s1, "anon_fault_alloc", 1)?;
    if let Some(m) = &map0 {
        let whole = PMD_SIZE as u64;
        m.expect(
            r.addr,
            r.addr + PMD_SIZE,
            &[("order9", whole), ("pmd", whole)],
        )?;
    }

    let pid = proc::spawn(|| {
        let _ = nanosleep(&Timespec::from_ms(200));
        match r.find_not(0, PMD_SIZE, OLD) {
            None => 0,
            Some(o) => {
                println!(
                    "thp_pmd_cow: child: byte at +{o:#x} reads {:#x}, expected {OLD:#x}",
                    r.load(o)
                );
                1
            }
        }
    })
    .ctx("fork")?;
    // Let the child run until its sleep, so that its first writes (to its stack,
    // which on contkernel is a 2 MiB folio from exec: a PMD split and unfolds of
    // its own) are done before the parent measures, even on one CPU.
    let _ = nanosleep(&Timespec::from_ms(20));
    let w = thp::window(KB, || r.store_u64(WORD, NEW))?;
    let (c0, c1, sw, s2) = (w.c0, w.c1, w.s0, w.s1);
    let map1 = thp::thpmaps(r.addr).ok().flatten();
    let alive = proc::wait4(pid as isize, WNOHANG).ctx("wait4(WNOHANG)")?.0 == 0;
    let st = proc::wait(pid).ctx("wait4")?;
    let s3 = Stats::read(KB);
    let c2 = ContStats::read();
    let split_pmd = w
        .split_pmd0
        .zip(w.split_pmd1)
        .map(|(a, b)| b as i64 - a as i64);

    println!(
        "thp_pmd_cow: write: minflt={} vmstat thp_split_pmd {} split_deferred {} nr_anon_partially_mapped {} cow_folio_copy {}",
        w.faults,
        Delta(split_pmd),
        Delta(sw.delta(&s2, "split_deferred")),
        Delta(sw.delta(&s2, "nr_anon_partially_mapped")),
        Delta(sw.delta(&s2, "cow_folio_copy"))
    );
    println!("thp_pmd_cow: write: thpmaps: {}", Opt(map1.as_ref()));
    print_cont("write", &c0, &c1);
    println!(
        "thp_pmd_cow: + child exit: split_deferred {} nr_anon_partially_mapped {} split {} nr_anon {}",
        Delta(sw.delta(&s3, "split_deferred")),
        Delta(sw.delta(&s3, "nr_anon_partially_mapped")),
        Delta(sw.delta(&s3, "split")),
        Delta(sw.delta(&s3, "nr_anon"))
    );
    print_cont("+ child exit", &c0, &c2);

    ensure!(
        alive,
        "the child had exited before the parent's write was measured (raise its 200 ms sleep)"
    );
    ensure!(
        st.exited() && st.exit_status() == 0,
        "child: {st} (its copy changed: see the line above)"
    );
    let got = r.load_u64(WORD);
    ensure!(
        got == NEW,
        "parent: word at +{WORD:#x} reads {got:#x}, wrote {NEW:#x}"
    );
    let bad = (0..PMD_SIZE)
        .filter(|o| !(WORD..WORD + 8).contains(o))
        .find(|&o| r.load(o) != OLD);
    ensure!(
        bad.is_none(),
        "parent: byte at +{:#x} reads {:#x}, expected {OLD:#x}",
        bad.unwrap_or(0),
        bad.map_or(0, |o| r.load(o))
    );
    ensure!(
        w.faults == 1,
        "parent's write to the shared PMD block: expected 1 fault, got {}",
        w.faults
    );

    if folio_cow {
        // cow=folio: the parent gets a copy of the whole 2 MiB, mapped by a PMD
        // again; the original stays whole in the child and goes with it.
        sw.expect_delta(&s2, "cow_folio_copy", 1)?;
        sw.expect_delta(&s2, "split_deferred", 0)?;
        sw.expect_delta(&s3, "split_deferred", 0)?;
        sw.expect_delta(&s3, "nr_anon_partially_mapped", 0)?;
    } else {
        // The child maps the whole folio (by its PMD) until it exits: the folio
        // is partially mapped, and queued for deferred split, only then (both
        // kernels).
        sw.expect_delta(&s2, "split_deferred", 0)?;
        sw.expect_delta(&s2, "nr_anon_partially_mapped", 0)?;
        sw.expect_delta(&s3, "split_deferred", 1)?;
        sw.expect_delta(&s3, "nr_anon_partially_mapped", 1)?;
    }
    if contkernel {
        let Some(m) = map1 else {
            fail!("/proc/self/thpmaps: no line for the region after the write");
        };
        let whole = PMD_SIZE as u64;
        if folio_cow {
            m.expect(
                r.addr,
                r.addr + PMD_SIZE,
                &[("pmd", whole), ("order9", whole)],
            )?;
        } else {
            m.expect(
                r.addr,
                r.addr + PMD_SIZE,
                &[
                    ("pmd", 0),
                    ("cont", (whole - CONT_SIZE as u64) * cont_on as u64),
                    ("order9", whole - 4096),
                    ("order0", 4096),
                ],
            )?;
        }
        ensure!(
            c0.present() && c1.present(),
            "{}: missing on contkernel",
            thp::CONTPTE_STATS.to_str().unwrap_or("?")
        );
        let want_splits = if folio_cow { 0 } else { 1 };
        let splits = c0.delta(&c1, "pmd_splits");
        ensure!(
            splits == Some(want_splits),
            "/sys/kernel/mm/contpte/stats pmd_splits: expected +{want_splits}, got {}",
            Delta(splits)
        );
        // cow=page: only the written block may be unfolded; cow=folio: none.
        let max_unfolds = if folio_cow { 0 } else { 1 };
        let unfolds = c0.delta(&c1, "unfolds");
        ensure!(
            unfolds.is_some_and(|u| (0..=max_unfolds).contains(&u)),
            "/sys/kernel/mm/contpte/stats unfolds: expected at most +{max_unfolds}, got {}",
            Delta(unfolds)
        );
    } else if let Some(d) = split_pmd {
        ensure!(d == 1, "/proc/vmstat thp_split_pmd: expected +1, got {d:+}");
    }
    Ok(())
}
