//! mremap of large folios (issue 23), one folio size at a time (4K, 16K, 64K, 2M:
//! only that size `always`), the same checks on contkernel and on Linux 6.12 / 7.3.
//!
//! `move_<N>k`: 4 MiB aligned to 2 MiB, one pattern word per page, its frame numbers
//! (/proc/self/pagemap) and folio heads and tails (/proc/kpageflags) read; then it is
//! moved with MREMAP_MAYMOVE | MREMAP_FIXED to a destination with the same offset
//! inside 2 MiB, one 64 KiB past it, and one 4 KiB past it. After each move every
//! page holds its word and is backed by the same frame as before (moved, not
//! copied), every folio still has its head and tails (not split), and the size's
//! `split` counter has not moved. On contkernel /proc/self/thpmaps shows the folios
//! at the new address: order=4M, pmd=4M for 2M at the same offset inside 2 MiB,
//! cont=4M where the offset inside 64 KiB is kept (64K and 2M, contiguous entries in
//! use), cont=0 at the 4 KiB offset; on Linux smaps AnonHugePages says 4096 kB for
//! 2M at the same offset and 0 elsewhere (Linux splits the PMD, keeping the folio).
//! Then it shrinks by 8 pages in place (the tail is gone: pagemap shows no frame),
//! grows back with MREMAP_MAYMOVE (the kept pages keep their data, the new ones read
//! zero), and moves with MREMAP_DONTUNMAP: the data and frames go to the new address,
//! the old range stays mapped and reads zero.
//!
//! `expand_merge_maps` (Linux's selftest `mremap expand merge`): 3 pages with the
//! middle one unmapped; /proc/self/maps opened and read; the first page grown in
//! place to 2 pages joins the third; the same descriptor rewound (lseek 0) and read
//! again shows one mapping over all 3 pages (Linux's seq_file renders anew from
//! position 0).
//!
//! `move_multiple_vmas[_dontunmap]` (Linux's selftests `mremap move multiple vmas`,
//! with 64 KiB folios): 1 MiB written, a 64 KiB hole punched, a one-page hole cutting
//! a folio, a read-only piece (a VMA of its own), a 64 KiB hole at the end; the range
//! from page 8 through the end hole is moved with MREMAP_FIXED and the same length
//! (with MREMAP_DONTUNMAP in the second) over a read-only placeholder. Since Linux
//! 6.17 (7.3 and contkernel) every piece moves to the same offset: its words and
//! frames (pagemap) are at the destination, its folios whole (kpageflags), the
//! placeholder still maps the images of the holes (mincore) and reads zero; the
//! source is unmapped, or with DONTUNMAP mapped and reading zero. Linux 6.12 moves
//! only within one VMA: EFAULT, the source as it was.
//!
//! `hostile`: 8 MiB of 64 KiB folios moved back and forth 24 times among three
//! destinations (the same offset inside 2 MiB, 64 KiB past it, 4 KiB past it) while a
//! forked child keeps MADV_FREE'ing, rewriting and MADV_PAGEOUT'ing its copy of the
//! same folios and the collapse thread scans every millisecond (2 MiB folios allowed
//! once the range is written; `scan_sleep_millisecs` 1, restored after); the parent
//! does the same to a rotating 256 KiB of its own range every third move. Before each
//! move, calls that must be refused change nothing: a destination overlapping the
//! source, one that wraps past the top of the address space, a new length of 2^60.
//! Every page's word is checked after each step, in both processes.
//!
//! The policy found at start is written back at the end.
#![no_std]
#![no_main]

use rt::mm::{
    Region, MADV_FREE, MADV_PAGEOUT, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PAGE,
    PROT_READ, PROT_WRITE,
};
use rt::pagemap::{Pagemap, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL};
use rt::test::{Context, Outcome, Suite};
use rt::text::Text;
use rt::thp::{self, CONT_SIZE, PMD_SIZE};
use rt::{ensure, println};

rt::entry!(main);

const RW: usize = PROT_READ | PROT_WRITE;
const LEN: usize = 2 * PMD_SIZE;
const PAGES: usize = LEN / PAGE;
/// Pages cut off by the shrink.
const CUT: usize = 8;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("mremap");
    let Some(sc) = thp::Scenario::begin("mremap", &mut t) else {
        return t.finish();
    };
    let cont_on = sc.cont_on;
    for kb in [4, 16, 64, 2048] {
        let name = Text::<16>::from_fmt(format_args!("move_{kb}k"));
        t.run(name.as_str(), || moves(kb, cont_on));
    }
    t.run("expand_merge_maps", expand_merge_maps);
    t.run("move_multiple_vmas", || move_multiple_vmas(false));
    t.run("move_multiple_vmas_dontunmap", || move_multiple_vmas(true));
    t.run("hostile", hostile);
    sc.end(t)
}

fn word(i: usize) -> u64 {
    0x6d72_656d_6170_0000 | i as u64
}

/// Every page of the first `pages` of `r` holds its word (or zero if `zero`).
fn check_data(r: &Region, pages: usize, zero: bool) -> Outcome {
    for i in 0..pages {
        let got = r.load_u64(i * PAGE);
        let want = if zero { 0 } else { word(i) };
        ensure!(
            got == want,
            "page {i} at {:#x}: {got:#x}, want {want:#x}",
            r.addr + i * PAGE
        );
    }
    Ok(())
}

/// The frames of the first `pages` pages of `r` are `frames`, and each is the head of
/// a folio of `kb` or one of its tails (neither for 4K).
fn check_frames(r: &Region, pages: usize, frames: &[u64; PAGES], kb: usize) -> Outcome {
    let per_folio = kb * 1024 / PAGE;
    let pm = Pagemap::open()?;
    for (i, &was) in frames.iter().enumerate().take(pages) {
        let at = r.addr + i * PAGE;
        let f = pm.pfn(at)?;
        ensure!(
            f == was,
            "page {i} at {at:#x}: frame {f:#x}, was {:#x} (copied?)",
            was
        );
        let flags = pm.kpageflags(at)?;
        let compound = flags & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL);
        let want = match (per_folio, i % per_folio) {
            (1, _) => 0,
            (_, 0) => KPF_COMPOUND_HEAD,
            _ => KPF_COMPOUND_TAIL,
        };
        ensure!(
            compound == want,
            "page {i} at {at:#x}: kpageflags {flags:#x} (split?)"
        );
    }
    Ok(())
}

/// A placeholder 2 MiB-aligned range with `LEN` bytes free `off` bytes in: the
/// address to move to (the placeholder's own pages there are replaced by the move,
/// the rest unmapped after it).
struct Spot {
    wide: Region,
    off: usize,
    len: usize,
}

impl Spot {
    fn new(off: usize) -> Result<Spot, rt::test::Fail> {
        Spot::sized(off, LEN)
    }

    /// A spot for `len` bytes.
    fn sized(off: usize, len: usize) -> Result<Spot, rt::test::Fail> {
        let wide = Region::anon_aligned(len + PMD_SIZE, PMD_SIZE, RW).ctx("mmap destination")?;
        Ok(Spot { wide, off, len })
    }

    fn addr(&self) -> usize {
        self.wide.addr + self.off
    }

    /// After the move into it: unmap what is left of the placeholder around it.
    fn done(self) -> Outcome {
        if self.off > 0 {
            self.wide.unmap(0, self.off).ctx("munmap")?;
        }
        let rest = self.wide.len - self.off - self.len;
        self.wide.unmap(self.off + self.len, rest).ctx("munmap")?;
        core::mem::forget(self.wide);
        Ok(())
    }
}

fn moves(kb: usize, cont_on: bool) -> Outcome {
    thp::only(if kb == 4 { 0 } else { kb })?;
    let contkernel = thp::on_contkernel();
    let mut r = Region::anon_aligned(LEN, PMD_SIZE, RW).ctx("mmap")?;
    for i in 0..PAGES {
        r.store_u64(i * PAGE, word(i));
    }
    let pm = Pagemap::open()?;
    let mut frames = [0u64; PAGES];
    for (i, f) in frames.iter_mut().enumerate() {
        *f = pm.pfn(r.addr + i * PAGE)?;
    }
    check_frames(&r, PAGES, &frames, kb)?;
    let split0 = if kb > 4 { thp::stat(kb, "split") } else { None };
    for off in [0, CONT_SIZE, PAGE] {
        let spot = Spot::new(off)?;
        let to = spot.addr();
        r = match r.remap(LEN, MREMAP_MAYMOVE | MREMAP_FIXED, to) {
            Ok((moved, _)) => moved,
            Err((_, e)) => rt::fail!("mremap to {to:#x}: {e:?}"),
        };
        spot.done()?;
        ensure!(r.addr == to, "moved to {:#x}, asked {to:#x}", r.addr);
        check_data(&r, PAGES, false)?;
        check_frames(&r, PAGES, &frames, kb)?;
        let block = kb == 2048 && off == 0;
        let huge_kb = thp::smaps_kb(r.addr, "AnonHugePages");
        println!("mremap: {kb}K moved to offset {off:#x}: AnonHugePages {huge_kb:?} kB");
        if !contkernel {
            let want = if block { LEN as u64 / 1024 } else { 0 };
            ensure!(
                huge_kb == Some(want),
                "AnonHugePages {huge_kb:?} kB, want {want}"
            );
        }
        if let Some(m) = thp::need_thpmaps(r.addr)? {
            println!("mremap: {m}");
            let order =
                Text::<8>::from_fmt(format_args!("order{}", (kb * 1024 / PAGE).trailing_zeros()));
            let whole = (order.as_str(), LEN as u64);
            if block {
                // A PMD block is not made of contiguous entries: cont= is not checked.
                m.expect(r.addr, r.addr + LEN, &[whole, ("pmd", LEN as u64)])?;
            } else {
                let folded = cont_on && kb >= 64 && off % CONT_SIZE == 0;
                let cont = if folded { LEN as u64 } else { 0 };
                m.expect(r.addr, r.addr + LEN, &[whole, ("pmd", 0), ("cont", cont)])?;
            }
        }
    }
    if let Some(s0) = split0 {
        let s1 = thp::stat(kb, "split");
        ensure!(
            s1 == Some(s0),
            "hugepages-{kb}kB split {s0} -> {s1:?}: a move split a folio"
        );
    }
    // Shrink in place: the tail is unmapped.
    let short = LEN - CUT * PAGE;
    r = match r.remap(short, 0, 0) {
        Ok((r, _)) => r,
        Err((_, e)) => rt::fail!("mremap shrink: {e:?}"),
    };
    check_data(&r, PAGES - CUT, false)?;
    for i in PAGES - CUT..PAGES {
        let f = pm.pfn(r.addr + i * PAGE)?;
        ensure!(
            f == 0,
            "page {i} past the shrunk end still has frame {f:#x}"
        );
    }
    // Grow back, moving if it must: the new pages read zero.
    r = match r.remap(LEN, MREMAP_MAYMOVE, 0) {
        Ok((r, _)) => r,
        Err((_, e)) => rt::fail!("mremap grow: {e:?}"),
    };
    check_data(&r, PAGES - CUT, false)?;
    for i in PAGES - CUT..PAGES {
        ensure!(r.load_u64(i * PAGE) == 0, "grown page {i} not zero");
    }
    // DONTUNMAP: data and frames move, the old range stays and reads zero.
    let before = r.addr;
    let (moved, old) = match r.remap(LEN, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0) {
        Ok(x) => x,
        Err((_, e)) => rt::fail!("mremap DONTUNMAP: {e:?}"),
    };
    let Some(old) = old else {
        rt::fail!("no old region");
    };
    ensure!(
        moved.addr != before && old.addr == before,
        "DONTUNMAP moved to {:#x}",
        moved.addr
    );
    check_data(&moved, PAGES - CUT, false)?;
    // The folios the shrink did not cut keep their frames and stay whole.
    let per_folio = kb * 1024 / PAGE;
    check_frames(&moved, (PAGES - CUT) / per_folio * per_folio, &frames, kb)?;
    ensure!(pm.pfn(old.addr)? == 0, "the old range still has a frame");
    check_data(&old, PAGES, true)?;
    Ok(())
}

fn expand_merge_maps() -> Outcome {
    use rt::fs::{self, AT_FDCWD, O_CLOEXEC, O_RDONLY, SEEK_SET};
    let r = Region::anon(3 * PAGE, RW, 0).ctx("mmap")?;
    r.unmap(PAGE, PAGE).ctx("munmap")?;
    let fd = fs::openat(AT_FDCWD, c"/proc/self/maps", O_RDONLY | O_CLOEXEC, 0)
        .ctx("open /proc/self/maps")?;
    let mut buf = [0u8; 16384];
    let first = fs::read(fd, &mut buf);
    // SAFETY: [addr, addr + PAGE) is the region's own first page; growing it over the
    // hole the region punched leaves the region owning [addr, addr + 3 pages).
    let grown = unsafe { rt::mm::mremap(r.addr, PAGE, 2 * PAGE, 0, 0) };
    let again = fs::lseek(fd, 0, SEEK_SET).and_then(|_| {
        let mut n = 0;
        loop {
            match fs::read(fd, &mut buf[n..]) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k,
                Err(e) => return Err(e),
            }
        }
    });
    let _ = fs::close(fd);
    first.ctx("read /proc/self/maps")?;
    ensure!(grown == Ok(r.addr), "mremap grow in place: {grown:?}");
    let n = again.ctx("reread /proc/self/maps")?;
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("");
    let covered = text.lines().any(|l| {
        let range = l.split_whitespace().next().and_then(|w| w.split_once('-'));
        range.is_some_and(|(a, b)| {
            let a = usize::from_str_radix(a, 16).unwrap_or(usize::MAX);
            let b = usize::from_str_radix(b, 16).unwrap_or(0);
            a <= r.addr && b >= r.addr + 3 * PAGE
        })
    });
    ensure!(
        covered,
        "no /proc/self/maps line covers {:#x}+3 pages after the rewind",
        r.addr
    );
    Ok(())
}

/// `move_multiple_vmas`' region: 1 MiB of pages written and 64 KiB of hole after it.
const MULTI_PAGES: usize = 272;
const MULTI_WRITTEN: usize = 256;
/// The first page moved.
const MULTI_FIRST: usize = 8;

fn move_multiple_vmas(dontunmap: bool) -> Outcome {
    thp::only(CONT_SIZE / 1024)?;
    let hole = |i: usize| (16..32).contains(&i) || i == 100 || i >= MULTI_WRITTEN;
    let src = Region::anon_aligned(MULTI_PAGES * PAGE, PMD_SIZE, RW).ctx("mmap")?;
    for i in 0..MULTI_WRITTEN {
        src.store_u64(i * PAGE, word(i));
    }
    let pm = Pagemap::open()?;
    let mut frames = [0u64; MULTI_PAGES];
    for (i, f) in frames.iter_mut().enumerate().take(MULTI_WRITTEN) {
        *f = pm.pfn(src.addr + i * PAGE)?;
    }
    for (from, to) in [(16, 32), (100, 101), (MULTI_WRITTEN, MULTI_PAGES)] {
        src.unmap(from * PAGE, (to - from) * PAGE).ctx("munmap")?;
    }
    src.protect(32 * PAGE, 32 * PAGE, PROT_READ)
        .ctx("mprotect")?;
    let dst = Region::anon_aligned(MULTI_PAGES * PAGE, PMD_SIZE, PROT_READ).ctx("mmap")?;
    let (from, to) = (src.addr + MULTI_FIRST * PAGE, dst.addr + MULTI_FIRST * PAGE);
    let len = (MULTI_PAGES - MULTI_FIRST) * PAGE;
    let mut flags = MREMAP_MAYMOVE | MREMAP_FIXED;
    if dontunmap {
        flags |= MREMAP_DONTUNMAP;
    }
    // SAFETY: both ranges are this test's regions; what the move leaves where is
    // unmapped by their drops (holes are fine for munmap).
    let r = unsafe { rt::mm::mremap(from, len, len, flags, to) };
    let mapped = |at: usize| rt::mm::mincore(at, PAGE, &mut [0u8]).is_ok();
    if !thp::on_contkernel() && !rt::proc::linux_at_least(6, 17) {
        ensure!(
            r == Err(rt::Errno::EFAULT),
            "Linux 6.12: {r:?}, want EFAULT"
        );
        for i in (MULTI_FIRST..MULTI_WRITTEN).filter(|&i| !hole(i)) {
            ensure!(src.load_u64(i * PAGE) == word(i), "page {i} changed");
        }
        return Ok(());
    }
    ensure!(r == Ok(to), "mremap: {r:?}, want Ok({to:#x})");
    for (i, &was) in frames.iter().enumerate().skip(MULTI_FIRST) {
        let at = dst.addr + i * PAGE;
        ensure!(mapped(at), "page {i}'s image at {at:#x} is not mapped");
        let want = if hole(i) { 0 } else { word(i) };
        let got = dst.load_u64(i * PAGE);
        ensure!(got == want, "page {i} at {at:#x}: {got:#x}, want {want:#x}");
        if !hole(i) {
            let f = pm.pfn(at)?;
            ensure!(f == was, "page {i}: frame {f:#x}, was {was:#x}");
            let compound = pm.kpageflags(at)? & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL);
            let want = if i % 16 == 0 {
                KPF_COMPOUND_HEAD
            } else {
                KPF_COMPOUND_TAIL
            };
            ensure!(compound == want, "page {i}: not in a whole 64 KiB folio");
        }
        let source = src.addr + i * PAGE;
        ensure!(
            mapped(source) == (dontunmap && !hole(i)),
            "page {i}'s source at {source:#x}: mapped {}",
            mapped(source)
        );
        if dontunmap && !hole(i) {
            ensure!(src.load_u64(i * PAGE) == 0, "page {i}'s source not empty");
        }
    }
    Ok(())
}

const HOSTILE_LEN: usize = 8 << 20;
const HOSTILE_PAGES: usize = HOSTILE_LEN / PAGE;
/// The piece of the range each MADV_FREE / MADV_PAGEOUT round works on.
const CHUNK: usize = 256 << 10;

/// MADV_FREE of the `k`th chunk of `r`, its words written again (the pages are then
/// dirty: a discard may only have hit them before), MADV_PAGEOUT of it (dirty folios
/// are kept), and every word of `r` checked.
fn free_rewrite_pageout(r: &Region, k: usize) -> Outcome {
    let off = (k * CHUNK) % r.len;
    r.advise(off, CHUNK, MADV_FREE).ctx("MADV_FREE")?;
    for i in off / PAGE..(off + CHUNK) / PAGE {
        r.store_u64(i * PAGE, word(i));
    }
    r.advise(off, CHUNK, MADV_PAGEOUT).ctx("MADV_PAGEOUT")?;
    check_data(r, r.len / PAGE, false)
}

/// The child's side: rounds of `free_rewrite_pageout` over its copy; 0 if every
/// check passed.
fn child_rounds(r: &Region) -> i32 {
    for k in 0..64 {
        if let Err(f) = free_rewrite_pageout(r, k) {
            println!("mremap: hostile child, round {k}: {}", f.0.as_str());
            return 1;
        }
    }
    0
}

fn hostile() -> Outcome {
    thp::only(CONT_SIZE / 1024)?;
    let mut r = Region::anon_aligned(HOSTILE_LEN, PMD_SIZE, RW).ctx("mmap")?;
    for i in 0..HOSTILE_PAGES {
        r.store_u64(i * PAGE, word(i));
    }
    // Now the collapse thread may make 2 MiB folios of them, every millisecond.
    thp::write_policy(&thp::size_path(PMD_SIZE / 1024, "enabled"), "always")?;
    let _sleep = thp::ScanSleep::set(1).ctx("khugepaged write")?;
    let child = rt::proc::spawn(|| child_rounds(&r)).ctx("fork")?;
    for step in 0..24 {
        // Refused, and nothing changed: overlapping, wrapping, huge.
        for (len, flags, to) in [
            (HOSTILE_LEN, MREMAP_MAYMOVE | MREMAP_FIXED, r.addr + PAGE),
            (
                HOSTILE_LEN,
                MREMAP_MAYMOVE | MREMAP_FIXED,
                PAGE.wrapping_neg(),
            ),
            (1 << 60, MREMAP_MAYMOVE, 0),
        ] {
            r = match r.remap(len, flags, to) {
                Ok((moved, _)) => {
                    rt::fail!("mremap of {len:#x} to {to:#x} moved to {:#x}", moved.addr)
                }
                Err((r, _)) => r,
            };
        }
        check_data(&r, HOSTILE_PAGES, false)?;
        let off = [0, CONT_SIZE, PAGE][step % 3];
        let spot = Spot::sized(off, HOSTILE_LEN)?;
        let to = spot.addr();
        r = match r.remap(HOSTILE_LEN, MREMAP_MAYMOVE | MREMAP_FIXED, to) {
            Ok((moved, _)) => moved,
            Err((_, e)) => rt::fail!("step {step}: mremap to {to:#x}: {e:?}"),
        };
        spot.done()?;
        check_data(&r, HOSTILE_PAGES, false)?;
        if step % 3 == 2 {
            free_rewrite_pageout(&r, step)?;
        }
    }
    let status = rt::proc::wait(child).ctx("wait4")?;
    ensure!(
        status.exited() && status.exit_status() == 0,
        "the child: {status}"
    );
    check_data(&r, HOSTILE_PAGES, false)
}
