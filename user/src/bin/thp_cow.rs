//! Copy-on-write of 64 KiB folios after fork. Only hugepages-64kB is `always`
//! (top-level and every other size `never`); each test fills a 1 MiB region aligned
//! to 1 MiB with 0x11 (16 folios of 64 KiB: checked as 16 minor faults and
//! anon_fault_alloc +16 on both kernels) and prints the counters it compares as
//! `thp_cow: <test>: key=value`.
//!
//! `reuse_after_child_exit` (seed 000): fork, the child exits at once, the parent
//! waits, then writes one word in the first folio and one byte in each of its 15
//! other pages. contkernel reuses the whole folio: the first write is 1 fault with
//! cow_reuse +1 and split_deferred +0, the other 15 pages take no fault, and
//! thpmaps still shows the whole region (all 16 folios) as order4 and cont. Linux
//! 6.12 copies one page and queues the folio for deferred split (split_deferred +1,
//! 15 more faults): printed as a note, not a failure.
//!
//! `copy_while_child_alive`: fork, the child sleeps 200 ms and then checks its copy
//! is all 0x11 (its exit code reports it); meanwhile the parent writes one word of
//! the first folio: a page copy, one fault, split_deferred and
//! nr_anon_partially_mapped +0 (every page of the folio is still mapped, by the
//! child), then +1 once the child has exited (a page of the folio is then mapped
//! by nobody): so on Linux 6.12 and on contkernel. contkernel also: cow_reuse +0,
//! and thpmaps after the write order4=1M-4K order0=4K cont=1M-64K (the copied
//! page's block no longer contiguous, the 15 other folios still are). Then the
//! parent writes one byte in each other page of the folio (faults and counters
//! printed); every byte is checked in the parent.
//!
//! With cow=folio (contkernel's transparent_hugepage/cow says `folio`) the write
//! copies the whole folio instead: cow_folio_copy +1, split_deferred and
//! nr_anon_partially_mapped +0 at the write and after the exit, thpmaps
//! order4=cont=1M, and the rest of the folio takes no fault.
//!
//! `partial_munmap_deferred_split`: 16 KiB unmapped in the middle of the first
//! folio: split_deferred +1 or nr_anon_partially_mapped +1 (both on Linux). Then
//! `1` is written to transparent_hugepage/shrink_deferred (contkernel): every
//! partially mapped 64K folio is split, so split +N and nr_anon_partially_mapped
//! -N where N is that count just before (1 on an otherwise idle machine), and
//! MemFree goes up by at least 16 KiB. Linux has no such file: there `2` goes to
//! /proc/sys/vm/drop_caches, which runs every shrinker, the deferred split one
//! included, and the same counters are checked (MemFree is printed only: Linux
//! keeps freed pages on per-CPU lists MemFree does not count). nr_anon is printed,
//! not checked: on contkernel the same shrinker splits the process's 2 MiB stack
//! folio (partially mapped after the forks) into 64K folios. The bytes left mapped
//! still read 0x11.
//!
//! The policy found at start is written back at the end. Files missing on Linux
//! (cow_reuse, thpmaps, shrink_deferred) are n/a there and required on contkernel.
//! With contpte=off every cont= is expected 0 (see `rt::thp::cont_mode`). After
//! each fork the parent sleeps 20 ms (the child runs to its own sleep, its stack
//! CoW faults done) and rewrites 256 KiB of its stack before it measures, so that
//! only the tested write is in the window: on contkernel the stack is a 2 MiB
//! folio from exec, split and copied on the first writes after fork.
#![no_std]
#![no_main]

use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc::{self, WNOHANG};
use rt::test::{Context, Fail, Outcome, Suite};
use rt::thp::{self, Delta, Opt, Stats};
use rt::time::{nanosleep, Timespec};
use rt::{ensure, fail, fs, println};

rt::entry!(main);

const MIB: usize = 1 << 20;
const FOLIO: usize = 64 << 10;
const KB: usize = 64;
const OLD: u8 = 0x11;
const NEW: u64 = 0x0123_4567_89ab_cdef;
/// The word the parent writes after fork (in the first folio, as seed 000's p+10).
const WORD: usize = 16;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("thp_cow");
    let Some(sc) = thp::Scenario::begin("thp_cow", &mut t) else {
        return t.finish();
    };
    let (contkernel, cont_on, folio_cow) =
        (thp::on_contkernel(), sc.cont_on, thp::cow_copies_folio());
    if contkernel {
        println!(
            "thp_cow: cow={} ({})",
            if folio_cow { "folio" } else { "page" },
            thp::THP_COW.to_str().unwrap_or("?")
        );
    }
    // The counters below are read around single writes and exits: the collapse
    // thread must not collapse (and so free) the folios meanwhile. It sleeps for an
    // hour while they run (once in a fresh-clone suite run it collapsed the parent's
    // partially mapped folio between the child's exit and the reading), then gets
    // its interval back.
    let sleep = thp::ScanSleep::set(3_600_000);
    match thp::only(KB) {
        Err(e) => t.report("set_policy_64k_only", Err(e.into())),
        Ok(()) => {
            t.run("reuse_after_child_exit", || reuse(contkernel, cont_on));
            t.run("copy_while_child_alive", || {
                copy(contkernel, cont_on, folio_cow)
            });
            t.run("partial_munmap_deferred_split", || partial(contkernel));
        }
    }
    drop(sleep);
    sc.end(t)
}

/// A 1 MiB region aligned to 1 MiB filled with OLD: 16 faults and 16 folios of 64K.
fn filled(what: &str) -> Result<Region, Fail> {
    let r = Region::anon_aligned(MIB, MIB, PROT_READ | PROT_WRITE).ctx("mmap")?;
    let s0 = Stats::read(KB);
    let f0 = thp::minflt()?;
    r.fill(0, MIB, OLD);
    let f1 = thp::minflt()?;
    let s1 = Stats::read(KB);
    println!(
        "thp_cow: {what}: fill minflt={} anon_fault_alloc={}",
        f1 - f0,
        Delta(s0.delta(&s1, "anon_fault_alloc"))
    );
    ensure!(
        f1 - f0 == 16,
        "filling 1 MiB with only 64K folios took {} faults, expected 16",
        f1 - f0
    );
    s0.expect_delta(&s1, "anon_fault_alloc", 16)?;
    Ok(r)
}

/// Every byte of `r` is OLD but the word at WORD (NEW) and, with `pages`, the first
/// byte of pages 1..16 (0x22).
fn check_parent(r: &Region, pages: bool) -> Outcome {
    let got = r.load_u64(WORD);
    ensure!(
        got == NEW,
        "parent: word at +{WORD:#x} reads {got:#x}, wrote {NEW:#x}"
    );
    let written = |o: usize| pages && (PAGE..FOLIO).contains(&o) && o.is_multiple_of(PAGE);
    let bad = (0..MIB).find(|&o| match o {
        o if (WORD..WORD + 8).contains(&o) => false,
        o if written(o) => r.load(o) != 0x22,
        o => r.load(o) != OLD,
    });
    if let Some(o) = bad {
        let want = if written(o) { 0x22 } else { OLD };
        ensure!(
            false,
            "parent: byte at +{o:#x} reads {:#x}, expected {want:#x}",
            r.load(o)
        );
    }
    Ok(())
}

/// Lets a child just forked run until its sleep (20 ms), so that its own first
/// writes (to its stack: CoW faults, on contkernel of a large stack folio) are done
/// before the parent measures, even on one CPU.
fn settle() {
    let _ = nanosleep(&Timespec::from_ms(20));
}

fn print_stats(test: &str, when: &str, a: &Stats, b: &Stats) {
    println!(
        "thp_cow: {test}: {when}: split_deferred {} nr_anon_partially_mapped {} cow_reuse {} cow_folio_copy {} split {} nr_anon {}",
        Delta(a.delta(b, "split_deferred")),
        Delta(a.delta(b, "nr_anon_partially_mapped")),
        Delta(a.delta(b, "cow_reuse")),
        Delta(a.delta(b, "cow_folio_copy")),
        Delta(a.delta(b, "split")),
        Delta(a.delta(b, "nr_anon")),
    );
}

/// (a) Seed 000: the child is gone when the parent writes.
fn reuse(contkernel: bool, cont_on: bool) -> Outcome {
    let r = filled("reuse_after_child_exit")?;
    let s = proc::fork_wait(|| 0).ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");

    let w = thp::window(KB, || r.store_u64(WORD, NEW))?;
    let (s0, s1) = (w.s0, w.s1);
    let rest = thp::measure(KB, || (1..16).for_each(|p| r.store(p * PAGE, 0x22)))?;
    let s2 = rest.s1;
    let map = thp::need_thpmaps(r.addr)?;
    println!(
        "thp_cow: reuse_after_child_exit: faults_first_write={} faults_rest_of_64k={}",
        w.faults, rest.faults
    );
    print_stats("reuse_after_child_exit", "first write", &s0, &s1);
    print_stats("reuse_after_child_exit", "rest of the folio", &s1, &s2);
    println!(
        "thp_cow: reuse_after_child_exit: thpmaps: {}",
        Opt(map.as_ref())
    );
    check_parent(&r, true)?;

    if contkernel {
        ensure!(
            w.faults == 1,
            "first write after the child exited: expected 1 fault, got {}",
            w.faults
        );
        s0.expect_delta(&s1, "cow_reuse", 1)?;
        s0.expect_delta(&s1, "split_deferred", 0)?;
        s0.expect_delta(&s1, "nr_anon_partially_mapped", 0)?;
        ensure!(
            rest.faults == 0,
            "writing the other 15 pages of the reused folio took {} faults, expected 0",
            rest.faults
        );
        if let Some(m) = &map {
            let whole = MIB as u64;
            m.expect(
                r.addr,
                r.addr + MIB,
                &[
                    ("order4", whole),
                    ("cont", whole * cont_on as u64),
                    ("pmd", 0),
                ],
            )?;
        }
    } else {
        println!(
            "thp_cow: reuse_after_child_exit: note: Linux copied {} (split_deferred {}, then {} more faults for the rest of the folio); contkernel reuses the whole folio (cow_reuse +1, 0 more faults)",
            if w.faults == 1 { "on the first write" } else { "?" },
            Delta(s0.delta(&s1, "split_deferred")),
            rest.faults
        );
    }
    Ok(())
}

/// (b) The child is alive when the parent writes: a page copy.
fn copy(contkernel: bool, cont_on: bool, folio_cow: bool) -> Outcome {
    let r = filled("copy_while_child_alive")?;
    let pid = proc::spawn(|| {
        let _ = nanosleep(&Timespec::from_ms(200));
        match r.find_not(0, MIB, OLD) {
            None => 0,
            Some(o) => {
                println!(
                    "thp_cow: copy_while_child_alive: child: byte at +{o:#x} reads {:#x}, expected {OLD:#x}",
                    r.load(o)
                );
                1
            }
        }
    })
    .ctx("fork")?;
    settle();
    let w = thp::window(KB, || r.store_u64(WORD, NEW))?;
    let (s0, s1) = (w.s0, w.s1);
    let map1 = thp::thpmaps(r.addr).ok().flatten();
    let alive = proc::wait4(pid as isize, WNOHANG).ctx("wait4(WNOHANG)")?.0 == 0;
    let st = proc::wait(pid).ctx("wait4")?;
    let rest = thp::window(KB, || (1..16).for_each(|p| r.store(p * PAGE, 0x22)))?;
    let (s2, s3) = (rest.s0, rest.s1);
    println!(
        "thp_cow: copy_while_child_alive: faults_first_write={} faults_rest_of_64k_after_exit={}",
        w.faults, rest.faults
    );
    print_stats("copy_while_child_alive", "parent's write", &s0, &s1);
    print_stats("copy_while_child_alive", "+ child exit", &s0, &s2);
    print_stats("copy_while_child_alive", "+ rest of the folio", &s0, &s3);
    println!(
        "thp_cow: copy_while_child_alive: thpmaps after the write: {}",
        Opt(map1.as_ref())
    );

    ensure!(
        alive,
        "the child had exited before the parent's write was measured (raise its 200 ms sleep)"
    );
    ensure!(
        st.exited() && st.exit_status() == 0,
        "child: {st} (its copy changed: see the line above)"
    );
    check_parent(&r, true)?;
    ensure!(
        w.faults == 1,
        "parent's write while the child lives: expected 1 fault, got {}",
        w.faults
    );
    if folio_cow {
        // cow=folio: the whole folio is copied at the write, the original stays
        // whole in the child and is freed with it; nothing is partially mapped.
        s0.expect_delta(&s1, "cow_folio_copy", 1)?;
        s0.expect_delta(&s1, "cow_reuse", 0)?;
        s0.expect_delta(&s1, "split_deferred", 0)?;
        s0.expect_delta(&s2, "split_deferred", 0)?;
        s0.expect_delta(&s2, "nr_anon_partially_mapped", 0)?;
        ensure!(
            rest.faults == 0,
            "cow=folio: the other 15 pages of the copied folio took {} faults, expected 0",
            rest.faults
        );
    } else {
        // Every page is still mapped (by the child) until it exits: the folio
        // becomes partially mapped, and is queued for deferred split, only then
        // (Linux 6.12 and contkernel alike).
        s0.expect_delta(&s1, "split_deferred", 0)?;
        s0.expect_delta(&s1, "nr_anon_partially_mapped", 0)?;
        s0.expect_delta(&s2, "split_deferred", 1)?;
        s0.expect_delta(&s2, "nr_anon_partially_mapped", 1)?;
    }
    if contkernel {
        s0.expect_delta(&s1, "cow_reuse", 0)?;
        let Some(m) = &map1 else {
            thp::need_thpmaps(r.addr)?;
            fail!("/proc/self/thpmaps: unreadable after the write");
        };
        let whole = MIB as u64;
        let copied = if folio_cow { 0 } else { PAGE as u64 };
        let cont = if folio_cow {
            whole
        } else {
            whole - FOLIO as u64
        };
        m.expect(
            r.addr,
            r.addr + MIB,
            &[
                ("order4", whole - copied),
                ("order0", copied),
                ("cont", cont * cont_on as u64),
                ("pmd", 0),
            ],
        )?;
    }
    Ok(())
}

/// Runs the deferred-split shrinker: shrink_deferred (contkernel), or on Linux
/// every shrinker through drop_caches. Returns how, None if neither exists.
fn shrink() -> Result<Option<&'static str>, Fail> {
    match thp::shrink_deferred() {
        Ok(()) => return Ok(Some("shrink_deferred")),
        Err(e) if e.err != rt::Errno::ENOENT => return Err(e.into()),
        Err(e) => {
            thp::need(None::<()>, format_args!("{e}"))?;
        }
    }
    match fs::write_file(c"/proc/sys/vm/drop_caches", b"2") {
        Ok(_) => Ok(Some("drop_caches")),
        Err(_) => Ok(None),
    }
}

/// (c) 16 KiB unmapped in the middle of a folio, then the shrinker.
fn partial(contkernel: bool) -> Outcome {
    let r = filled("partial_munmap_deferred_split")?;
    const HOLE: usize = 24 << 10;
    const HOLE_LEN: usize = 16 << 10;
    let s0 = Stats::read(KB);
    r.unmap(HOLE, HOLE_LEN).ctx("munmap 16K")?;
    let s1 = Stats::read(KB);
    print_stats("partial_munmap_deferred_split", "munmap", &s0, &s1);
    let (sd, pm) = (
        s0.delta(&s1, "split_deferred"),
        s0.delta(&s1, "nr_anon_partially_mapped"),
    );
    thp::need(
        sd.zip(pm),
        format_args!("hugepages-64kB/stats/split_deferred"),
    )?;
    ensure!(
        sd.is_none() || sd == Some(1) || pm == Some(1),
        "munmap 16K of a 64K folio: want split_deferred or nr_anon_partially_mapped +1, got {} {}",
        Delta(sd),
        Delta(pm)
    );

    let free0 = thp::meminfo_kb("MemFree");
    let how = shrink()?;
    let free1 = thp::meminfo_kb("MemFree");
    let s2 = Stats::read(KB);
    let up = free0.zip(free1).map(|(a, b)| b as i64 - a as i64);
    println!(
        "thp_cow: partial_munmap_deferred_split: shrinker via {}: MemFree {} kB; 64K folios partially mapped before it: {}",
        how.unwrap_or("n/a"),
        Delta(up),
        Opt(s1.get("nr_anon_partially_mapped"))
    );
    print_stats("partial_munmap_deferred_split", "shrinker", &s1, &s2);
    if how.is_some() {
        // Every partially mapped 64K folio is split, this test's and any other
        // process's (1 on an otherwise idle machine).
        let queued = s1.get("nr_anon_partially_mapped").unwrap_or(1);
        ensure!(
            queued >= 1,
            "no 64K folio partially mapped after the munmap"
        );
        s1.expect_delta(&s2, "split", queued as i64)?;
        s1.expect_delta(&s2, "nr_anon_partially_mapped", -(queued as i64))?;
        if how == Some("shrink_deferred") || contkernel {
            let up = up.unwrap_or(0);
            ensure!(
                up >= 16,
                "/proc/meminfo MemFree after shrink_deferred: {up:+} kB, expected >= +16 kB (the unmapped 16K)"
            );
        }
    }
    let bad = (0..MIB)
        .filter(|o| !(HOLE..HOLE + HOLE_LEN).contains(o))
        .find(|&o| r.load(o) != OLD);
    ensure!(
        bad.is_none(),
        "byte at +{:#x} reads {:#x} after the split, expected {OLD:#x}",
        bad.unwrap_or(0),
        bad.map_or(0, |o| r.load(o))
    );
    Ok(())
}
