//! The VMA flags madvise and mlock set, as Linux 6.12 has them (issue 19); the same
//! checks pass on Linux (`scripts/linux.sh -- memflags`):
//!
//! - MADV_DONTFORK: the child has no mapping there (mincore is ENOMEM), the parent's
//!   writes after fork take no fault (nothing was shared: no copy-on-write), smaps
//!   shows `dc`, the VMA splits at the range and MADV_DOFORK merges it back;
//! - MADV_WIPEONFORK: the child reads zeros, its writes stay its own, the flag (`wf`)
//!   is inherited, MADV_KEEPONFORK shares the data again; EINVAL on the program's own
//!   text (a file mapping on Linux);
//! - mlock (and mmap's MAP_LOCKED) populates (mincore), shows `lo`, `Locked:` and
//!   `VmLck`; mlock2
//!   (MLOCK_ONFAULT) populates nothing and shows `lo lf`; MADV_FREE, MADV_DONTNEED and
//!   MADV_PAGEOUT of a locked range are EINVAL, MADV_DONTNEED_LOCKED is not; fork's
//!   child inherits no lock; mlockall(MCL_FUTURE) locks and populates later mappings,
//!   munlockall undoes it, and so does exec (a program exec'd after mlockall finds
//!   nothing locked); mlock of a PROT_NONE range is ENOMEM (its population fails)
//!   but locks it;
//! - MADV_FREE then mlock: a read-only range keeps its data while locked (MADV_PAGEOUT
//!   is EINVAL) and MADV_PAGEOUT discards it after munlock; a writable one keeps it
//!   for good (mlock's population dirties it).
#![no_std]
#![no_main]

use rt::mm::*;
use rt::proc;
use rt::procfs::{field, has_vm_flag, smaps_block, status_kb};
use rt::test::{Context, Fail, Outcome, Suite};
use rt::thp::minflt;
use rt::{ensure, Errno};

rt::entry!(main);

fn main(args: &rt::Args) -> i32 {
    if args.str(1) == Some("after-exec") {
        return after_exec();
    }
    rt::thp::mount_pseudo_fs();
    let mut t = Suite::new("memflags");
    t.run("dontfork_child_has_no_mapping", dontfork_child);
    t.run("dontfork_parent_writes_take_no_fault", dontfork_parent);
    t.run("dontfork_splits_and_dofork_merges", dontfork_vmas);
    t.run("wipeonfork_child_reads_zeros", wipeonfork_child);
    t.run(
        "wipeonfork_inherited_keeponfork_shares",
        wipeonfork_inherited,
    );
    t.run("wipeonfork_of_the_text_is_einval", wipeonfork_text);
    t.run("mlock_populates_and_shows_locked", mlock_populates);
    t.run("mlock2_onfault_populates_nothing", mlock_onfault);
    t.run("mlock_refuses_discard", mlock_refuses_discard);
    t.run("mlock_not_inherited_by_fork", mlock_not_inherited);
    t.run("mlockall_future_locks_new_mappings", mlockall_future);
    t.run("exec_clears_the_locks", || exec_clears(args));
    t.run("locked_lazyfree_survives_pageout", locked_lazyfree);
    t.run("mlock_of_prot_none", mlock_prot_none);
    t.run(
        "mlock_of_written_lazyfree_keeps_it",
        mlock_writable_lazyfree,
    );
    t.finish()
}

const RW: usize = PROT_READ | PROT_WRITE;
const LEN: usize = 16 * PAGE;
const OLD: u8 = 0x11;

/// A mapping of `LEN` bytes of its own, every byte OLD.
fn filled() -> Result<Region, Fail> {
    let r = Region::anon_aligned(LEN, PAGE, RW).ctx("mmap")?;
    r.fill(0, LEN, OLD);
    Ok(r)
}

/// Pages of [off, off + len) of `r` that mincore says are resident.
fn resident(r: &Region, off: usize, len: usize) -> Result<usize, Fail> {
    let mut v = [0u8; LEN / PAGE];
    r.mincore(off, len, &mut v[..len / PAGE]).ctx("mincore")?;
    Ok(v[..len / PAGE].iter().filter(|&&b| b & 1 != 0).count())
}

/// Whether the smaps block of the VMA starting at `start` lists `flag`.
fn vm_flag(start: usize, flag: &str) -> Result<bool, Fail> {
    let mut buf = [0u8; 32768];
    has_vm_flag(smaps_block(start, &mut buf)?, flag)
}

/// The VMAs /proc/self/maps lists inside [start, end).
fn vmas_in(start: usize, end: usize) -> Result<usize, Fail> {
    let mut buf = [0u8; 16384];
    let text = rt::procfs::read_text("/proc/self/maps", &mut buf)?;
    Ok(text
        .lines()
        .filter_map(|l| usize::from_str_radix(l.split('-').next()?, 16).ok())
        .filter(|&a| (start..end).contains(&a))
        .count())
}

/// Runs `child` in a forked child and expects it to exit 0; a non-zero exit names the
/// check that failed there (`what`, by its number).
fn in_child(what: &str, child: impl FnOnce() -> i32) -> Outcome {
    let s = proc::fork_wait(child).ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "{what}: child {s} (check {} failed)",
        s.exit_status()
    );
    Ok(())
}

fn dontfork_child() -> Outcome {
    let r = filled()?;
    r.advise(4 * PAGE, 8 * PAGE, MADV_DONTFORK)
        .ctx("MADV_DONTFORK")?;
    ensure!(vm_flag(r.addr + 4 * PAGE, "dc")?, "smaps VmFlags lacks dc");
    ensure!(!vm_flag(r.addr, "dc")?, "dc outside the range");
    let addr = r.addr;
    in_child("the child's view", || {
        let mut v = [0u8; 8];
        if mincore(addr + 4 * PAGE, 8 * PAGE, &mut v) != Err(Errno::ENOMEM) {
            return 1;
        }
        // The pages around the hole are there, with the parent's data.
        if r.load(0) != OLD || r.load(12 * PAGE) != OLD {
            return 2;
        }
        0
    })
}

fn dontfork_parent() -> Outcome {
    let r = filled()?;
    r.advise(0, LEN, MADV_DONTFORK).ctx("MADV_DONTFORK")?;
    let (rd, wr) = rt::pipe::pipe2(0).ctx("pipe2")?;
    let pid = proc::spawn(|| {
        // Alive until the parent has written.
        let mut b = [0u8; 1];
        let _ = rt::fs::read(rd, &mut b);
        0
    })
    .ctx("fork")?;
    // After fork the parent's stack is shared: its first writes there fault (and
    // code not run yet may fault in): only the writes to the region may count.
    prefault_stack();
    prefault_image();
    let f0 = minflt()?;
    r.fill(0, LEN, 0x22);
    let faults = minflt()? - f0;
    rt::fs::write(wr, b"x").ctx("write")?;
    proc::wait(pid).ctx("wait4")?;
    let _ = (rt::fs::close(rd), rt::fs::close(wr));
    ensure!(
        faults == 0,
        "{faults} faults writing 16 DONTFORK pages while the child lives, want 0"
    );
    ensure!(r.find_not(0, LEN, 0x22).is_none(), "the parent's data");
    Ok(())
}

fn dontfork_vmas() -> Outcome {
    let r = filled()?;
    let end = r.addr + LEN;
    r.advise(4 * PAGE, 8 * PAGE, MADV_DONTFORK)
        .ctx("MADV_DONTFORK")?;
    let split = vmas_in(r.addr, end)?;
    r.advise(4 * PAGE, 8 * PAGE, MADV_DOFORK)
        .ctx("MADV_DOFORK")?;
    let merged = vmas_in(r.addr, end)?;
    ensure!(
        split == 3 && merged == 1,
        "VMAs: {split} after MADV_DONTFORK (want 3), {merged} after MADV_DOFORK (want 1)"
    );
    ensure!(!vm_flag(r.addr, "dc")?, "dc after MADV_DOFORK");
    Ok(())
}

fn wipeonfork_child() -> Outcome {
    let r = filled()?;
    r.advise(0, LEN, MADV_WIPEONFORK).ctx("MADV_WIPEONFORK")?;
    ensure!(vm_flag(r.addr, "wf")?, "smaps VmFlags lacks wf");
    let rr = &r;
    in_child("the child's view", || {
        if rr.find_not(0, LEN, 0).is_some() {
            return 1;
        }
        rr.fill(0, LEN, 0x33);
        if rr.find_not(0, LEN, 0x33).is_some() {
            return 2;
        }
        0
    })?;
    ensure!(
        r.find_not(0, LEN, OLD).is_none(),
        "the parent's data changed"
    );
    Ok(())
}

fn wipeonfork_inherited() -> Outcome {
    let r = filled()?;
    r.advise(0, LEN, MADV_WIPEONFORK).ctx("MADV_WIPEONFORK")?;
    let rr = &r;
    in_child("child and grandchild", || {
        let Ok(flag) = vm_flag(rr.addr, "wf") else {
            return 1;
        };
        if !flag {
            return 2;
        }
        rr.fill(0, LEN, 0x44);
        match proc::fork_wait(|| rr.find_not(0, LEN, 0).is_some() as i32) {
            Ok(s) if s.exited() && s.exit_status() == 0 => 0,
            _ => 3,
        }
    })?;
    r.advise(0, LEN, MADV_KEEPONFORK).ctx("MADV_KEEPONFORK")?;
    ensure!(!vm_flag(r.addr, "wf")?, "wf after MADV_KEEPONFORK");
    in_child("after MADV_KEEPONFORK", || {
        rr.find_not(0, LEN, OLD).is_some() as i32
    })
}

fn wipeonfork_text() -> Outcome {
    let text = (main as *const () as usize) & !(PAGE - 1);
    // SAFETY: the advice is refused; MADV_DONTFORK and MADV_DOFORK change no contents.
    let wipe = unsafe { madvise(text, PAGE, MADV_WIPEONFORK) };
    ensure!(
        wipe == Err(Errno::EINVAL),
        "MADV_WIPEONFORK of the text: {wipe:?}, want EINVAL"
    );
    // SAFETY: as above.
    unsafe { madvise(text, PAGE, MADV_DONTFORK) }.ctx("MADV_DONTFORK of the text")?;
    // SAFETY: as above.
    unsafe { madvise(text, PAGE, MADV_DOFORK) }.ctx("MADV_DOFORK of the text")?;
    Ok(())
}

fn mlock_populates() -> Outcome {
    let r = Region::anon_aligned(LEN, PAGE, RW).ctx("mmap")?;
    let lck0 = status_kb("VmLck")?;
    ensure!(resident(&r, 0, LEN)? == 0, "resident before mlock");
    mlock(r.addr, LEN).ctx("mlock")?;
    ensure!(
        resident(&r, 0, LEN)? == 16,
        "mlock populated {} of 16 pages",
        resident(&r, 0, LEN)?
    );
    ensure!(vm_flag(r.addr, "lo")?, "smaps VmFlags lacks lo");
    let mut buf = [0u8; 32768];
    let locked = field(smaps_block(r.addr, &mut buf)?, "Locked")?;
    ensure!(locked == 64, "smaps Locked: {locked} kB, want 64");
    let lck = status_kb("VmLck")?;
    ensure!(lck == lck0 + 64, "VmLck {lck} kB, want {} + 64", lck0);
    ensure!(r.find_not(0, LEN, 0).is_none(), "populated pages read zero");
    munlock(r.addr, LEN).ctx("munlock")?;
    ensure!(!vm_flag(r.addr, "lo")?, "lo after munlock");
    ensure!(status_kb("VmLck")? == lck0, "VmLck after munlock");
    // mmap(MAP_LOCKED) is mmap and mlock in one.
    let m = Region::anon(LEN, RW, MAP_LOCKED).ctx("mmap(MAP_LOCKED)")?;
    ensure!(resident(&m, 0, LEN)? == 16, "MAP_LOCKED: not populated");
    ensure!(vm_flag(m.addr, "lo")?, "MAP_LOCKED: no lo");
    Ok(())
}

fn mlock_onfault() -> Outcome {
    let r = Region::anon_aligned(LEN, PAGE, RW).ctx("mmap")?;
    mlock2(r.addr, LEN, MLOCK_ONFAULT).ctx("mlock2")?;
    ensure!(resident(&r, 0, LEN)? == 0, "MLOCK_ONFAULT populated pages");
    ensure!(
        vm_flag(r.addr, "lo")? && vm_flag(r.addr, "lf")?,
        "smaps VmFlags lacks lo lf"
    );
    r.store(0, 1);
    ensure!(resident(&r, 0, LEN)? == 1, "one page after one write");
    munlock(r.addr, LEN).ctx("munlock")?;
    ensure!(!vm_flag(r.addr, "lf")?, "lf after munlock");
    Ok(())
}

fn mlock_refuses_discard() -> Outcome {
    let r = filled()?;
    mlock(r.addr, LEN).ctx("mlock")?;
    for (advice, name) in [
        (MADV_FREE, "MADV_FREE"),
        (MADV_DONTNEED, "MADV_DONTNEED"),
        (MADV_PAGEOUT, "MADV_PAGEOUT"),
    ] {
        let got = r.advise(0, LEN, advice);
        ensure!(
            got == Err(Errno::EINVAL),
            "{name} of a locked range: {got:?}, want EINVAL"
        );
    }
    ensure!(
        r.find_not(0, LEN, OLD).is_none(),
        "data after refused advice"
    );
    r.advise(0, LEN, MADV_DONTNEED_LOCKED)
        .ctx("MADV_DONTNEED_LOCKED")?;
    ensure!(
        r.find_not(0, LEN, 0).is_none(),
        "MADV_DONTNEED_LOCKED left data"
    );
    munlock(r.addr, LEN).ctx("munlock")?;
    Ok(())
}

fn mlock_not_inherited() -> Outcome {
    let r = filled()?;
    mlock(r.addr, LEN).ctx("mlock")?;
    let addr = r.addr;
    in_child("the child's flags", || {
        match (vm_flag(addr, "lo"), status_kb("VmLck")) {
            (Ok(false), Ok(0)) => 0,
            (Ok(true), _) => 1,
            _ => 2,
        }
    })?;
    munlock(r.addr, LEN).ctx("munlock")?;
    Ok(())
}

fn mlockall_future() -> Outcome {
    mlockall(MCL_FUTURE).ctx("mlockall(MCL_FUTURE)")?;
    let r = Region::anon_aligned(LEN, PAGE, RW);
    // Read before munlockall, whatever came of the mmap.
    let seen = r
        .as_ref()
        .map(|r| (resident(r, 0, LEN), vm_flag(r.addr, "lo")))
        .map_err(|e| *e);
    munlockall().ctx("munlockall")?;
    let r = r.ctx("mmap")?;
    if let Ok((pages, lo)) = seen {
        // anon_aligned maps more and trims it: the part kept was populated whole.
        ensure!(pages? == 16, "a new mapping under MCL_FUTURE not populated");
        ensure!(lo?, "a new mapping under MCL_FUTURE lacks lo");
    }
    ensure!(!vm_flag(r.addr, "lo")?, "lo after munlockall");
    let after = Region::anon_aligned(LEN, PAGE, RW).ctx("mmap")?;
    ensure!(resident(&after, 0, LEN)? == 0, "populated after munlockall");
    ensure!(status_kb("VmLck")? == 0, "VmLck after munlockall");
    Ok(())
}

fn locked_lazyfree() -> Outcome {
    let r = filled()?;
    r.advise(0, LEN, MADV_FREE).ctx("MADV_FREE")?;
    r.protect(0, LEN, PROT_READ).ctx("mprotect")?;
    mlock(r.addr, LEN).ctx("mlock")?;
    let got = r.advise(0, LEN, MADV_PAGEOUT);
    ensure!(
        got == Err(Errno::EINVAL),
        "MADV_PAGEOUT of a locked range: {got:?}"
    );
    ensure!(
        r.find_not(0, LEN, OLD).is_none(),
        "locked lazyfree data lost"
    );
    munlock(r.addr, LEN).ctx("munlock")?;
    r.advise(0, LEN, MADV_PAGEOUT).ctx("MADV_PAGEOUT")?;
    ensure!(
        r.find_not(0, LEN, 0).is_none(),
        "unlocked clean lazyfree pages survived MADV_PAGEOUT"
    );
    Ok(())
}

fn mlock_writable_lazyfree() -> Outcome {
    let r = filled()?;
    r.advise(0, LEN, MADV_FREE).ctx("MADV_FREE")?;
    mlock(r.addr, LEN).ctx("mlock")?;
    munlock(r.addr, LEN).ctx("munlock")?;
    r.advise(0, LEN, MADV_PAGEOUT).ctx("MADV_PAGEOUT")?;
    ensure!(
        r.find_not(0, LEN, OLD).is_none(),
        "MADV_FREE, mlock, munlock, MADV_PAGEOUT: data lost"
    );
    Ok(())
}

fn mlock_prot_none() -> Outcome {
    let r = Region::anon_aligned(LEN, PAGE, PROT_NONE).ctx("mmap")?;
    let got = mlock(r.addr, LEN);
    ensure!(
        got == Err(Errno::ENOMEM),
        "mlock of PROT_NONE: {got:?}, want ENOMEM (population fails)"
    );
    ensure!(resident(&r, 0, LEN)? == 0, "PROT_NONE pages populated");
    ensure!(vm_flag(r.addr, "lo")?, "the VMA is locked all the same");
    mlock2(r.addr, LEN, MLOCK_ONFAULT).ctx("mlock2(MLOCK_ONFAULT) of PROT_NONE")?;
    munlock(r.addr, LEN).ctx("munlock")?;
    Ok(())
}

/// A child locks all, now and in future, and marks a mapping DONTFORK and
/// WIPEONFORK, then execs this program with `after-exec`: a new address space, so
/// nothing is locked and a new mapping is neither locked nor populated.
fn exec_clears(args: &rt::Args) -> Outcome {
    let mut path = args.sibling("memflags");
    let r = filled()?;
    in_child("the exec'd program", || {
        let _ = r.advise(0, LEN, MADV_DONTFORK);
        let _ = r.advise(0, LEN, MADV_WIPEONFORK);
        if mlockall(MCL_CURRENT | MCL_FUTURE).is_err() {
            return 1;
        }
        let path = path.as_cstr();
        let e = proc::execve(path, &[path, c"after-exec"], &[]);
        rt::println!("memflags: execve: {e}");
        2
    })
}

/// `memflags after-exec` (run by `exec_clears`): exit 0 if nothing is locked.
fn after_exec() -> i32 {
    rt::thp::mount_pseudo_fs();
    let Ok(r) = Region::anon_aligned(LEN, PAGE, RW) else {
        return 3;
    };
    match (
        status_kb("VmLck"),
        resident(&r, 0, LEN),
        vm_flag(r.addr, "lo"),
    ) {
        (Ok(0), Ok(0), Ok(false)) => 0,
        (Ok(0), _, _) => 5,
        _ => 4,
    }
}
