//! What a hostile or merely unusual program does to the memory manager: each test is a
//! defect an outside review found, and the same binary passes on Linux 6.12.
//!
//! - `mprotect_rw_in_child_*`: after fork, the child makes its (already read-write)
//!   copy PROT_READ|PROT_WRITE and writes it: the parent must keep its bytes (4 KiB,
//!   64 KiB and 2 MiB folios). `mprotect_ro_rw_in_parent_*`: the parent goes RO then
//!   RW and writes; the child must not see it.
//! - `brk_huge`: brk(~0) returns the current break.
//! - `mincore_64g`: mincore of a 64 GiB PROT_READ mapping (one page touched).
//! - `munmap_700m` / `exit_holding_700m`: 700 MiB of 4 KiB pages touched, then
//!   unmapped, or left to exit (1 GiB of RAM: the kernel must work in batches).
//! - `populate_prot_none`: mmap(PROT_NONE, MAP_POPULATE) succeeds.
//! - `dontneed_over_hole`: MADV_DONTNEED over a range with a hole zaps the mapped
//!   parts, then fails with ENOMEM; MADV_FREE and MADV_HUGEPAGE return ENOMEM too.
//! - `vma_split_in_block_*`: a 2 MiB folio cut by a VMA edge (madvise, mprotect,
//!   munmap, mmap over a part), then fork: fork succeeds, both sides keep their data.
//! - `split_race`: processes map, touch and partly unmap 64 KiB folios in a loop
//!   while others run the deferred-split shrinker (contkernel's shrink_deferred; on
//!   Linux, drop_caches): nothing crashes and the data left mapped stays right.
//!
//! `mm_hostile NAME...` runs only the tests named.
#![no_std]
#![no_main]

use rt::mm::{self, Region, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MAP_FIXED, PAGE};
use rt::mm::{MAP_POPULATE, PROT_NONE, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Fail, Outcome, Suite};
use rt::thp::{self, Scenario, PMD_SIZE};
use rt::time::{nanosleep, now_ns, Timespec};
use rt::{ensure, Errno};

rt::entry!(main);

const MIB: usize = 1 << 20;
const OLD: u8 = 0x11;
const NEW: u8 = 0xee;
const RW: usize = PROT_READ | PROT_WRITE;

fn main(args: &rt::Args) -> i32 {
    let mut t = Suite::new("mm_hostile");
    let Some(s) = Scenario::begin("mm_hostile", &mut t) else {
        return t.finish();
    };
    let mut t = Picked { t, args };
    for kb in [0, 64, 2048] {
        let name = rt::text::Text::<48>::from_fmt(format_args!("mprotect_rw_in_child_{kb}k"));
        t.run(name.as_str(), || mprotect_rw_in_child(kb));
        let name = rt::text::Text::<48>::from_fmt(format_args!("mprotect_ro_rw_in_parent_{kb}k"));
        t.run(name.as_str(), || mprotect_ro_rw_in_parent(kb));
    }
    t.run("brk_huge", brk_huge);
    t.run("mincore_64g", mincore_64g);
    t.run("munmap_700m", || big(false));
    t.run("exit_holding_700m", || big(true));
    t.run("populate_prot_none", populate_prot_none);
    t.run("dontneed_over_hole", dontneed_over_hole);
    for cut in Cut::ALL {
        let name =
            rt::text::Text::<48>::from_fmt(format_args!("vma_split_in_block_{}", cut.name()));
        t.run(name.as_str(), || vma_split_in_block(cut));
    }
    t.run("split_race", split_race);
    s.end(t.t)
}

/// The suite, running only the tests named on the command line (all without names).
struct Picked<'a> {
    t: Suite,
    args: &'a rt::Args,
}

impl Picked<'_> {
    fn run(&mut self, name: &str, check: impl FnOnce() -> Outcome) {
        let n = self.args.len();
        if n <= 1 || (1..n).any(|i| self.args.str(i) == Some(name)) {
            self.t.run(name, check);
        }
    }
}

/// A region of `len` bytes aligned to 2 MiB, filled with OLD under policy `kb`.
fn filled(kb: usize, len: usize) -> Result<Region, Fail> {
    thp::only(kb)?;
    let r = Region::anon_aligned(len, PMD_SIZE, RW).ctx("mmap")?;
    r.fill(0, len, OLD);
    Ok(r)
}

/// The child makes its copy RW again and writes it: the parent keeps OLD.
fn mprotect_rw_in_child(kb: usize) -> Outcome {
    let len = 2 * PMD_SIZE;
    let r = filled(kb, len)?;
    let s = proc::fork_wait(|| {
        if r.protect(0, len, RW).is_err() {
            return 2;
        }
        r.fill(0, len, NEW);
        r.find_not(0, len, NEW).is_some() as i32
    })
    .ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    let bad = r.find_not(0, len, OLD);
    ensure!(
        bad.is_none(),
        "the child's write reached the parent at +{:#x}",
        bad.unwrap_or(0)
    );
    Ok(())
}

/// The parent goes RO then RW and writes while the child keeps reading its copy.
fn mprotect_ro_rw_in_parent(kb: usize) -> Outcome {
    let len = 2 * PMD_SIZE;
    let r = filled(kb, len)?;
    let pid = proc::spawn(|| {
        for _ in 0..20 {
            if r.find_not(0, len, OLD).is_some() {
                return 1;
            }
            let _ = nanosleep(&Timespec::from_ms(10));
        }
        0
    })
    .ctx("fork")?;
    r.protect(0, len, PROT_READ).ctx("mprotect RO")?;
    r.protect(0, len, RW).ctx("mprotect RW")?;
    r.fill(0, len, NEW);
    let s = proc::wait(pid).ctx("wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "the child saw the parent's write ({s})"
    );
    ensure!(r.find_not(0, len, NEW).is_none(), "parent lost its write");
    Ok(())
}

fn brk_huge() -> Outcome {
    // SAFETY: asking only (0), then a break no kernel grants: nothing is unmapped.
    let cur = unsafe { mm::brk(0) }.ctx("brk(0)")?;
    // SAFETY: as above.
    let got = unsafe { mm::brk(usize::MAX) }.ctx("brk(~0)")?;
    ensure!(got == cur, "brk(~0) = {got:#x}, the break was {cur:#x}");
    Ok(())
}

fn mincore_64g() -> Outcome {
    const LEN: usize = 64 << 30;
    let r = Region::anon(LEN, PROT_READ, 0).ctx("mmap 64 GiB PROT_READ")?;
    let vec = Region::anon(LEN / PAGE, RW, 0).ctx("mmap the vector")?;
    let _ = r.load(5 * PAGE);
    // SAFETY: vec is a mapping of LEN / PAGE bytes that this test owns.
    let out = unsafe { core::slice::from_raw_parts_mut(vec.addr as *mut u8, LEN / PAGE) };
    r.mincore(0, LEN, out).ctx("mincore")?;
    let resident = (0..LEN / PAGE)
        .step_by(4096)
        .filter(|&i| out[i] & 1 != 0)
        .count();
    ensure!(out[5] & 1 == 1, "the touched page is not reported resident");
    ensure!(resident <= 1, "{resident} sampled pages reported resident");
    Ok(())
}

/// 700 MiB of 4 KiB pages, touched; unmapped here, or held by a child that exits.
fn big(exit: bool) -> Outcome {
    const LEN: usize = 700 * MIB;
    if thp::meminfo_kb("MemTotal").is_some_and(|kb| kb < 900 * 1024) {
        rt::println!("mm_hostile: less than 900 MiB of RAM: 700 MiB test skipped");
        return Ok(());
    }
    thp::only(0)?;
    let touch = |r: &Region| (0..LEN).step_by(PAGE).for_each(|o| r.store(o, 1));
    if exit {
        let s = proc::fork_wait(|| match Region::anon(LEN, RW, 0) {
            Ok(r) => {
                touch(&r);
                core::mem::forget(r);
                0
            }
            Err(_) => 2,
        })
        .ctx("fork/wait4")?;
        ensure!(s.exited() && s.exit_status() == 0, "child {s}");
        return Ok(());
    }
    let r = Region::anon(LEN, RW, 0).ctx("mmap 700 MiB")?;
    touch(&r);
    let (addr, len) = (r.addr, r.len);
    core::mem::forget(r);
    // SAFETY: the region was forgotten: nothing references it.
    unsafe { mm::munmap(addr, len) }.ctx("munmap 700 MiB")?;
    Ok(())
}

fn populate_prot_none() -> Outcome {
    let r = Region::anon(4 * MIB, PROT_NONE, MAP_POPULATE).ctx("mmap PROT_NONE|POPULATE")?;
    drop(r);
    Ok(())
}

fn dontneed_over_hole() -> Outcome {
    thp::only(0)?;
    let r = Region::anon(3 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 3 * PAGE, OLD);
    r.unmap(PAGE, PAGE).ctx("munmap the middle")?;
    for advice in [MADV_FREE, MADV_HUGEPAGE] {
        let e = r.advise(0, 3 * PAGE, advice);
        ensure!(
            e == Err(Errno::ENOMEM),
            "madvise {advice} over a hole: {e:?}"
        );
    }
    let e = r.advise(0, 3 * PAGE, MADV_DONTNEED);
    ensure!(e == Err(Errno::ENOMEM), "MADV_DONTNEED over a hole: {e:?}");
    for off in [0, 2 * PAGE] {
        ensure!(
            r.find_not(off, PAGE, 0).is_none(),
            "page +{off:#x} not zapped by MADV_DONTNEED"
        );
    }
    Ok(())
}

/// How a VMA edge comes to cut a 2 MiB folio.
#[derive(Clone, Copy)]
enum Cut {
    Madvise,
    Mprotect,
    Munmap,
    MmapOver,
}

impl Cut {
    const ALL: [Cut; 4] = [Cut::Madvise, Cut::Mprotect, Cut::Munmap, Cut::MmapOver];

    fn name(self) -> &'static str {
        match self {
            Cut::Madvise => "madvise",
            Cut::Mprotect => "mprotect",
            Cut::Munmap => "munmap",
            Cut::MmapOver => "mmap_over",
        }
    }
}

/// 4 MiB of 2 MiB folios; an edge at +1 MiB + 64 KiB of the first; then fork and
/// writes on both sides.
fn vma_split_in_block(cut: Cut) -> Outcome {
    let len = 2 * PMD_SIZE;
    let r = filled(2048, len)?;
    let (at, part) = (MIB + 64 * 1024, 64 * 1024);
    match cut {
        Cut::Madvise => r.advise(at, len - at, MADV_HUGEPAGE).map(drop),
        Cut::Mprotect => r.protect(at, part, PROT_READ).map(drop),
        Cut::Munmap => r.unmap(at, part).map(drop),
        Cut::MmapOver => r.map_at(at, part, RW, MAP_FIXED).map(drop),
    }
    .ctx(cut.name())?;
    let hole = matches!(cut, Cut::Munmap | Cut::MmapOver);
    let want = |off: usize| {
        if hole && (at..at + part).contains(&off) {
            0
        } else {
            OLD
        }
    };
    if matches!(cut, Cut::Munmap) {
        r.map_at(at, part, RW, MAP_FIXED)
            .ctx("mmap the hole back")?;
    }
    let check = |r: &Region| (0..len).step_by(PAGE).find(|&o| r.load(o) != want(o));
    let s = proc::fork_wait(|| {
        if check(&r).is_some() {
            return 1;
        }
        r.fill(0, at, NEW);
        0
    })
    .ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    let bad = check(&r);
    ensure!(
        bad.is_none(),
        "parent's byte at +{:#x} changed",
        bad.unwrap_or(0)
    );
    if matches!(cut, Cut::Mprotect) {
        r.protect(at, part, RW).ctx("mprotect back")?;
    }
    r.fill(0, len, NEW);
    ensure!(r.find_not(0, len, NEW).is_none(), "parent lost its write");
    Ok(())
}

/// How long the split race runs, per side (on the old shrinker, -smp 2 panicked within
/// about 6 s; 3 s here keeps the suite short and still catches it often).
const RACE_NS: i128 = 3_000_000_000;

/// Two processes cut 64 KiB folios in a loop, two others run the shrinker.
fn split_race() -> Outcome {
    thp::only(64)?;
    let on_contkernel = thp::on_contkernel();
    let mut pids = [0usize; 4];
    for (i, pid) in pids.iter_mut().enumerate() {
        *pid = if i % 2 == 0 {
            proc::spawn(cutter).ctx("fork")?
        } else {
            proc::spawn(move || shrinker(on_contkernel)).ctx("fork")?
        };
    }
    for pid in pids {
        let s = proc::wait(pid).ctx("wait4")?;
        ensure!(s.exited() && s.exit_status() == 0, "pid {pid}: {s}");
    }
    Ok(())
}

/// mmap 8 MiB, touch, unmap the first page of every 64 KiB folio (queueing it for
/// deferred split), unmap all at once (every eighth round after checking the rest);
/// until the time is up.
fn cutter() -> i32 {
    const LEN: usize = 8 * MIB;
    const FOLIO: usize = 64 * 1024;
    let end = now_ns() + RACE_NS;
    let mut round = 0u8;
    while now_ns() < end {
        round = round.wrapping_add(1) | 1;
        let Ok(r) = Region::anon_aligned(LEN, FOLIO, RW) else {
            return 2;
        };
        r.fill(0, LEN, round);
        for f in (0..LEN).step_by(FOLIO) {
            if r.unmap(f, PAGE).is_err() {
                return 3;
            }
        }
        let check = round % 16 == 1;
        if check
            && (0..LEN)
                .step_by(FOLIO)
                .any(|f| r.find_not(f + PAGE, FOLIO - PAGE, round).is_some())
        {
            return 4;
        }
    }
    0
}

fn shrinker(on_contkernel: bool) -> i32 {
    let end = now_ns() + RACE_NS;
    while now_ns() < end {
        let ok = if on_contkernel {
            thp::shrink_deferred().is_ok()
        } else {
            rt::fs::write_file(c"/proc/sys/vm/drop_caches", b"2").is_ok()
        };
        if !ok {
            return 1;
        }
    }
    0
}
