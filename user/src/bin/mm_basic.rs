//! The address-space calls on anonymous memory: mmap / munmap / mprotect splitting a
//! mapping and putting it back together, checked with mincore and with reads and
//! writes (forbidden accesses in a child, which must die of SIGSEGV); MAP_FIXED,
//! MAP_FIXED_NOREPLACE, MAP_POPULATE, placement hints; brk; every madvise advice the
//! kernel implements.
#![no_std]
#![no_main]

use rt::mm::*;
use rt::proc::{self, SIGSEGV};
use rt::test::{Context, Outcome, Suite};
use rt::{ensure, fail, Errno};

rt::entry!(main);

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("mm_basic");
    t.run("mincore_untouched_touched", mincore_untouched_touched);
    t.run("munmap_hole", munmap_hole);
    t.run("mprotect_split_merge", mprotect_split_merge);
    t.run("mprotect_none", mprotect_none);
    t.run("map_fixed_replaces", map_fixed_replaces);
    t.run("map_fixed_noreplace", map_fixed_noreplace);
    t.run("map_populate", map_populate);
    t.run("hint", hint);
    t.run("brk_grow_shrink", brk_grow_shrink);
    t.run("madv_dontneed", madv_dontneed);
    t.run("madv_free", madv_free);
    t.run("madv_hugepage", madv_hugepage);
    t.run("madv_populate", madv_populate);
    t.run("madv_unknown", madv_unknown);
    t.run("el0_counter", el0_counter);
    t.finish()
}

const RW: usize = PROT_READ | PROT_WRITE;

/// Resident flags (bit 0 of mincore) of `pages` pages from page `first`.
fn resident(r: &Region, first: usize, pages: usize) -> Result<[bool; 64], rt::test::Fail> {
    let mut vec = [0u8; 64];
    r.mincore(first * PAGE, pages * PAGE, &mut vec[..pages])
        .ctx("mincore")?;
    Ok(vec.map(|b| b & 1 != 0))
}

/// Expects `child` to be killed by SIGSEGV.
fn segfaults(what: &str, child: impl FnOnce()) -> Outcome {
    proc::expect_killed("mm_basic", SIGSEGV, child)
        .map_err(|e| rt::test::Fail::new(format_args!("{what}: {}", e.0)))
}

/// An untouched mapping has nothing resident; touched pages are resident.
fn mincore_untouched_touched() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, 0).ctx("mmap")?;
    ensure!(
        resident(&r, 0, 16)?[..16].iter().all(|&b| !b),
        "untouched pages resident"
    );
    r.store(0, 1);
    r.store(5 * PAGE + 7, 1);
    let res = resident(&r, 0, 16)?;
    ensure!(
        res[0] && res[5],
        "touched pages 0 and 5 not resident: {:?}",
        &res[..16]
    );
    Ok(())
}

/// munmap of the middle of a mapping leaves two mappings with their contents and a
/// hole mincore calls ENOMEM.
fn munmap_hole() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 16 * PAGE, 0x5a);
    r.unmap(4 * PAGE, 4 * PAGE).ctx("munmap")?;
    let mut vec = [0u8; 16];
    ensure!(
        r.mincore(4 * PAGE, 4 * PAGE, &mut vec) == Err(Errno::ENOMEM),
        "mincore of the hole"
    );
    ensure!(
        r.mincore(0, 16 * PAGE, &mut vec) == Err(Errno::ENOMEM),
        "mincore across the hole"
    );
    ensure!(
        resident(&r, 0, 4)?[..4].iter().all(|&b| b),
        "pages below the hole not resident"
    );
    ensure!(
        resident(&r, 8, 8)?[..8].iter().all(|&b| b),
        "pages above the hole not resident"
    );
    ensure!(
        r.find_not(0, 4 * PAGE, 0x5a).is_none(),
        "contents below the hole changed"
    );
    ensure!(
        r.find_not(8 * PAGE, 8 * PAGE, 0x5a).is_none(),
        "contents above the hole changed"
    );
    ensure!(r.unmap(0, 16 * PAGE).is_ok(), "munmap over a hole");
    Ok(())
}

/// mprotect of the middle makes three parts: the read-only part reads but does not
/// write (a child dies trying), the others still write; protecting the whole range
/// back and forth works across the parts; mprotect over a hole is ENOMEM.
fn mprotect_split_merge() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 16 * PAGE, 0x11);
    r.protect(4 * PAGE, 4 * PAGE, PROT_READ)
        .ctx("mprotect(READ)")?;
    ensure!(
        r.find_not(0, 16 * PAGE, 0x11).is_none(),
        "contents changed by mprotect"
    );
    r.store(3 * PAGE, 0x22);
    r.store(8 * PAGE, 0x22);
    segfaults("write to a PROT_READ page", || r.store(5 * PAGE, 0x33))?;
    r.protect(4 * PAGE, 4 * PAGE, RW).ctx("mprotect(RW)")?;
    r.store(5 * PAGE, 0x33);
    ensure!(
        r.load(5 * PAGE) == 0x33,
        "write after mprotect back to RW lost"
    );
    r.protect(0, 16 * PAGE, PROT_READ)
        .ctx("mprotect(READ) of the whole")?;
    segfaults("write to the read-only whole", || r.store(12 * PAGE, 0x44))?;
    r.protect(0, 16 * PAGE, RW)
        .ctx("mprotect(RW) of the whole")?;
    r.fill(0, 16 * PAGE, 0x66);
    ensure!(
        r.find_not(0, 16 * PAGE, 0x66).is_none(),
        "contents after merging back"
    );
    r.unmap(10 * PAGE, PAGE).ctx("munmap")?;
    ensure!(
        r.protect(8 * PAGE, 4 * PAGE, PROT_READ) == Err(Errno::ENOMEM),
        "mprotect over a hole"
    );
    Ok(())
}

/// PROT_NONE forbids reads (the child dies) and keeps the contents for later.
fn mprotect_none() -> Outcome {
    let r = Region::anon(4 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 4 * PAGE, 0x77);
    r.protect(PAGE, 2 * PAGE, PROT_NONE).ctx("mprotect(NONE)")?;
    segfaults("read of a PROT_NONE page", || {
        r.load(2 * PAGE);
    })?;
    r.protect(PAGE, 2 * PAGE, PROT_READ).ctx("mprotect(READ)")?;
    ensure!(
        r.find_not(0, 4 * PAGE, 0x77).is_none(),
        "contents lost under PROT_NONE"
    );
    Ok(())
}

/// MAP_FIXED over a mapping replaces exactly its range with fresh zero pages.
fn map_fixed_replaces() -> Outcome {
    let r = Region::anon(8 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 8 * PAGE, 0x77);
    let at = r
        .map_at(2 * PAGE, 2 * PAGE, RW, MAP_FIXED)
        .ctx("mmap(MAP_FIXED)")?;
    ensure!(
        at == r.addr + 2 * PAGE,
        "MAP_FIXED placed at {at:#x}, asked {:#x}",
        r.addr + 2 * PAGE
    );
    ensure!(
        r.find_not(2 * PAGE, 2 * PAGE, 0).is_none(),
        "MAP_FIXED range not zero"
    );
    ensure!(
        r.find_not(0, 2 * PAGE, 0x77).is_none(),
        "below the fixed range changed"
    );
    ensure!(
        r.find_not(4 * PAGE, 4 * PAGE, 0x77).is_none(),
        "above the fixed range changed"
    );
    Ok(())
}

/// MAP_FIXED_NOREPLACE fails with EEXIST over any mapped page and succeeds, exactly
/// there, in a hole.
fn map_fixed_noreplace() -> Outcome {
    let r = Region::anon(8 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 8 * PAGE, 0x77);
    let e = r.map_at(2 * PAGE, 2 * PAGE, RW, MAP_FIXED_NOREPLACE);
    ensure!(e == Err(Errno::EEXIST), "NOREPLACE over a mapping: {e:?}");
    r.unmap(2 * PAGE, 2 * PAGE).ctx("munmap")?;
    let e = r.map_at(PAGE, 2 * PAGE, RW, MAP_FIXED_NOREPLACE);
    ensure!(
        e == Err(Errno::EEXIST),
        "NOREPLACE half over a mapping: {e:?}"
    );
    let at = r
        .map_at(2 * PAGE, 2 * PAGE, RW, MAP_FIXED_NOREPLACE)
        .ctx("NOREPLACE into a hole")?;
    ensure!(at == r.addr + 2 * PAGE, "NOREPLACE placed at {at:#x}");
    ensure!(
        r.find_not(2 * PAGE, 2 * PAGE, 0).is_none(),
        "new range not zero"
    );
    ensure!(
        r.find_not(4 * PAGE, 4 * PAGE, 0x77).is_none(),
        "neighbour changed"
    );
    Ok(())
}

/// MAP_POPULATE makes every page resident before the first access.
fn map_populate() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, MAP_POPULATE).ctx("mmap(MAP_POPULATE)")?;
    ensure!(
        resident(&r, 0, 16)?[..16].iter().all(|&b| b),
        "populated pages not resident"
    );
    ensure!(
        r.find_not(0, 16 * PAGE, 0).is_none(),
        "populated pages not zero"
    );
    Ok(())
}

/// A free page-aligned hint is taken as is; an unaligned one is rounded to a page;
/// a hint over a mapping gives another place and leaves the mapping alone.
fn hint() -> Outcome {
    let free = Region::anon(64 * PAGE, RW, 0).ctx("mmap")?;
    let base = free.addr;
    drop(free);
    let want = base + 8 * PAGE;
    // SAFETY: a hint without MAP_FIXED never replaces a mapping.
    let got = unsafe { mmap(want, 4 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) }
        .ctx("mmap(hint)")?;
    // SAFETY: the kernel gave this mapping to us just now.
    let taken = unsafe { Region::from_raw(got, 4 * PAGE) };
    ensure!(got == want, "free aligned hint {want:#x} gave {got:#x}");
    // SAFETY: as above.
    let got = unsafe {
        mmap(
            base + 20 * PAGE + 123,
            PAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .ctx("mmap(unaligned hint)")?;
    // SAFETY: as above.
    drop(unsafe { Region::from_raw(got, PAGE) });
    ensure!(got % PAGE == 0, "unaligned hint gave unaligned {got:#x}");
    taken.fill(0, 4 * PAGE, 0x42);
    // SAFETY: as above.
    let other = unsafe { mmap(want, 4 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) }
        .ctx("mmap(busy hint)")?;
    // SAFETY: as above.
    drop(unsafe { Region::from_raw(other, 4 * PAGE) });
    ensure!(
        other + 4 * PAGE <= want || other >= want + 4 * PAGE,
        "busy hint overlapped: {other:#x}"
    );
    ensure!(
        taken.find_not(0, 4 * PAGE, 0x42).is_none(),
        "busy hint changed the mapping there"
    );
    Ok(())
}

/// brk grows (new memory is zero and writable), shrinks back, and grows again with
/// fresh zero memory.
fn brk_grow_shrink() -> Outcome {
    const GROW: usize = 16 * PAGE;
    // SAFETY: nothing in this program uses the heap; the brk area belongs to this test.
    let cur = unsafe { brk(0) }.ctx("brk(0)")?;
    // SAFETY: as above.
    let up = unsafe { brk(cur + GROW) }.ctx("brk(grow)")?;
    ensure!(
        up == cur + GROW,
        "brk grow to {:#x} gave {up:#x}",
        cur + GROW
    );
    // SAFETY: [cur, cur + GROW) is the heap just granted, used only through `heap`
    // until the shrink below; forgotten before it so no unmap happens on drop.
    let heap = unsafe { Region::from_raw(cur, GROW) };
    ensure!(heap.find_not(0, GROW, 0).is_none(), "new heap not zero");
    heap.fill(0, GROW, 0x99);
    ensure!(heap.find_not(0, GROW, 0x99).is_none(), "heap writes lost");
    core::mem::forget(heap);
    // SAFETY: as above.
    let down = unsafe { brk(cur) }.ctx("brk(shrink)")?;
    // SAFETY: as above.
    let now = unsafe { brk(0) }.ctx("brk(0)")?;
    ensure!(
        down == cur && now == cur,
        "shrink to {cur:#x} gave {down:#x}, then brk(0) {now:#x}"
    );
    // SAFETY: as above.
    let up = unsafe { brk(cur + GROW) }.ctx("brk(regrow)")?;
    ensure!(up == cur + GROW, "regrow gave {up:#x}");
    // SAFETY: as above.
    let heap = unsafe { Region::from_raw(cur, GROW) };
    // The page holding `cur` may be shared with what was below the old break.
    let fresh = cur.next_multiple_of(PAGE) - cur;
    let dirty = heap.find_not(fresh, GROW - fresh, 0);
    core::mem::forget(heap);
    ensure!(
        dirty.is_none(),
        "regrown heap not zero at +{:#x}",
        dirty.unwrap_or(0)
    );
    // SAFETY: as above.
    unsafe { brk(cur) }.ctx("brk(shrink)")?;
    Ok(())
}

/// MADV_DONTNEED drops the pages (not resident, zero on the next read) and only those.
fn madv_dontneed() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 16 * PAGE, 0x33);
    r.advise(0, 8 * PAGE, MADV_DONTNEED)
        .ctx("madvise(DONTNEED)")?;
    ensure!(
        resident(&r, 0, 8)?[..8].iter().all(|&b| !b),
        "dropped pages still resident"
    );
    ensure!(
        r.find_not(0, 8 * PAGE, 0).is_none(),
        "dropped pages not zero"
    );
    ensure!(
        r.find_not(8 * PAGE, 8 * PAGE, 0x33).is_none(),
        "pages past the range changed"
    );
    Ok(())
}

/// MADV_FREE: pages may go lazily (each byte is the old value or zero); a write
/// after it keeps its page.
fn madv_free() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 16 * PAGE, 0x33);
    r.advise(0, 16 * PAGE, MADV_FREE).ctx("madvise(FREE)")?;
    r.store(PAGE + 1, 0x44);
    ensure!(r.load(PAGE + 1) == 0x44, "write after MADV_FREE lost");
    for page in (0..16).filter(|&p| p != 1) {
        let first = r.load(page * PAGE);
        ensure!(
            first == 0x33 || first == 0,
            "page {page} after MADV_FREE holds {first:#x}"
        );
        if let Some(off) = r.find_not(page * PAGE, PAGE, first) {
            fail!("page {page} mixes old and zero bytes at +{off:#x}");
        }
    }
    Ok(())
}

/// MADV_HUGEPAGE / NOHUGEPAGE are accepted and keep the contents.
fn madv_hugepage() -> Outcome {
    let r = Region::anon(32 * PAGE, RW, 0).ctx("mmap")?;
    r.fill(0, 32 * PAGE, 0x21);
    r.advise(0, 32 * PAGE, MADV_HUGEPAGE)
        .ctx("madvise(HUGEPAGE)")?;
    r.advise(0, 16 * PAGE, MADV_NOHUGEPAGE)
        .ctx("madvise(NOHUGEPAGE)")?;
    r.advise(0, 32 * PAGE, MADV_NORMAL).ctx("madvise(NORMAL)")?;
    ensure!(r.find_not(0, 32 * PAGE, 0x21).is_none(), "contents changed");
    Ok(())
}

/// MADV_POPULATE_READ / WRITE make the range resident (zero-filled); WRITE on a
/// read-only mapping is refused, and READ on a write-only one (Linux's selftest
/// madv_populate: PROT_WRITE alone does not allow reads to the kernel).
fn madv_populate() -> Outcome {
    let r = Region::anon(16 * PAGE, RW, 0).ctx("mmap")?;
    r.advise(0, 8 * PAGE, MADV_POPULATE_READ)
        .ctx("madvise(POPULATE_READ)")?;
    ensure!(
        resident(&r, 0, 8)?[..8].iter().all(|&b| b),
        "POPULATE_READ pages not resident"
    );
    r.advise(8 * PAGE, 8 * PAGE, MADV_POPULATE_WRITE)
        .ctx("madvise(POPULATE_WRITE)")?;
    ensure!(
        resident(&r, 8, 8)?[..8].iter().all(|&b| b),
        "POPULATE_WRITE pages not resident"
    );
    ensure!(
        r.find_not(0, 16 * PAGE, 0).is_none(),
        "populated pages not zero"
    );
    let ro = Region::anon(4 * PAGE, PROT_READ, 0).ctx("mmap(READ)")?;
    let e = ro.advise(0, 4 * PAGE, MADV_POPULATE_WRITE);
    ensure!(
        e == Err(Errno::EINVAL),
        "POPULATE_WRITE on a read-only mapping: {e:?}"
    );
    let wo = Region::anon(4 * PAGE, PROT_WRITE, 0).ctx("mmap(WRITE)")?;
    let e = wo.advise(0, 4 * PAGE, MADV_POPULATE_READ);
    ensure!(
        e == Err(Errno::EINVAL),
        "POPULATE_READ on a write-only mapping: {e:?}"
    );
    Ok(())
}

/// An advice the kernel does not know is EINVAL.
fn madv_unknown() -> Outcome {
    let r = Region::anon(4 * PAGE, RW, 0).ctx("mmap")?;
    let e = r.advise(0, 4 * PAGE, 9999);
    ensure!(e == Err(Errno::EINVAL), "madvise(9999): {e:?}");
    Ok(())
}

/// EL0 reads CNTFRQ_EL0 and CNTVCT_EL0 as on Linux (CNTKCTL_EL1.EL0VCTEN): a kernel
/// that traps them kills this program ("System register access trapped"). The counter
/// runs forward across a system call.
fn el0_counter() -> Outcome {
    let freq = rt::bench::frequency();
    ensure!(freq > 0, "CNTFRQ_EL0 reads 0");
    let a = rt::bench::counter();
    rt::time::sched_yield().ctx("sched_yield")?;
    let b = rt::bench::counter();
    ensure!(b > a, "CNTVCT_EL0 did not advance: {a} then {b}");
    Ok(())
}
