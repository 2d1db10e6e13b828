//! The shared zero page, on contkernel and on Linux (`scripts/linux.sh -- zero_page`).
//!
//! `read_maps_zero_page`: with 64 KiB mTHP allowed, reading every page of 16 MiB of
//! untouched memory takes one fault per page and allocates nothing: smaps Rss stays 0
//! (Linux's smaps skips the zero page), MemFree falls by less than 1 MiB (page tables),
//! pagemap shows every page present at one frame, mapped exclusively by nobody, and
//! /proc/kpageflags marks that frame ZERO_PAGE and not anonymous.
//!
//! `write_over_zero`: a write to one page of a 64 KiB block read before allocates; Linux
//! 6.12 and 7.3 allocate one 4 KiB page (`wp_page_copy` of the zero pfn), contkernel the
//! whole 64 KiB folio (anon_fault_alloc of 64K +1, Rss 64 kB): either, as the kernel
//! says, with the byte written and zeros around it.
//!
//! `fork_then_write`: parent and child both map the zero page after fork; the child's
//! write is its own, the parent still reads zeros.
//!
//! `mprotect_and_madvise`: mprotect to read-only and back keeps the zero page out of
//! reach of stores (the next store faults and gets its own page: the byte reads back,
//! the neighbours stay zero); MADV_FREE, MADV_PAGEOUT and MADV_DONTNEED over zero-page
//! entries succeed and leave zeros.
//!
//! `huge_zero_page`: with only 2 MiB folios allowed (and `use_zero_page` 1, the
//! default), reading 4 MiB maps the huge zero page: Rss and AnonHugePages stay 0, the
//! pagemap frames of a 2 MiB run are consecutive and the same in both, kpageflags marks
//! them ZERO_PAGE and THP. A write then: Linux 6.12 splits the block and allocates
//! one 4 KiB page, Linux 7.3 and contkernel the 2 MiB folio (AnonHugePages 2048 kB).
#![no_std]
#![no_main]

use rt::mm::{Region, MADV_DONTNEED, MADV_FREE, MADV_PAGEOUT, PAGE, PROT_READ, PROT_WRITE};
use rt::pagemap::{self, KPF_ANON, KPF_THP, KPF_ZERO_PAGE, PM_MMAP_EXCLUSIVE, PM_PFN, PM_PRESENT};
use rt::proc;
use rt::test::{Context, Outcome};
use rt::thp::{self, Stats};
use rt::{ensure, println};

rt::entry!(main);

const RW: usize = PROT_READ | PROT_WRITE;
const KB64: usize = 64 << 10;

fn main(_args: &rt::Args) -> i32 {
    let mut t = rt::test::Suite::new("zero_page");
    let Some(sc) = thp::Scenario::begin("zero_page", &mut t) else {
        return t.finish();
    };
    t.run("read_maps_zero_page", read_maps_zero_page);
    t.run("write_over_zero", write_over_zero);
    t.run("fork_then_write", fork_then_write);
    t.run("mprotect_and_madvise", mprotect_and_madvise);
    t.run("huge_zero_page", huge_zero_page);
    sc.end(t)
}

/// Every page of `[off, off + len)` of `r` reads zero (one load per word).
fn all_zero(r: &Region, off: usize, len: usize) -> bool {
    (off..off + len).step_by(8).all(|o| r.load_u64(o) == 0)
}

fn read_maps_zero_page() -> Outcome {
    thp::only(64)?;
    let len = 16 << 20;
    let r = Region::anon_aligned(len, 2 << 20, RW).ctx("mmap")?;
    let free0 = thp::meminfo_kb("MemFree").unwrap_or(0);
    let zf0 = thp::keyed(c"/proc/vmstat", "zero_page_faults");
    let f0 = thp::minflt()?;
    let mut sum = 0u64;
    for p in 0..len / PAGE {
        sum |= r.load(p * PAGE) as u64;
    }
    let faults = thp::minflt()? - f0;
    let zf1 = thp::keyed(c"/proc/vmstat", "zero_page_faults");
    let free1 = thp::meminfo_kb("MemFree").unwrap_or(0);
    let rss = thp::smaps_kb(r.addr, "Rss");
    let (first, last) = (
        pagemap::entry(r.addr)?,
        pagemap::entry(r.addr + len - PAGE)?,
    );
    let flags = pagemap::kpageflags(r.addr)?;
    println!(
        "zero_page: read 16 MiB: minflt={faults} Rss={rss:?} kB MemFree -{} kB pagemap {first:#x} kpageflags {flags:#x} zero_page_faults {zf0:?}->{zf1:?}",
        free0.saturating_sub(free1)
    );
    ensure!(sum == 0, "untouched memory read non-zero");
    ensure!(
        faults == (len / PAGE) as i64,
        "{faults} faults for {} pages",
        len / PAGE
    );
    ensure!(rss == Some(0), "Rss {rss:?} kB after reads only");
    ensure!(
        free0.saturating_sub(free1) < 1024,
        "MemFree fell by {} kB",
        free0 - free1
    );
    for (what, e) in [("first page", first), ("last page", last)] {
        ensure!(e & PM_PRESENT != 0, "{what}: {e:#x} not present");
        ensure!(
            e & PM_MMAP_EXCLUSIVE == 0,
            "{what}: {e:#x} mapped exclusively"
        );
    }
    ensure!(
        first & PM_PFN == last & PM_PFN,
        "two frames: {first:#x} {last:#x}"
    );
    ensure!(
        flags & KPF_ZERO_PAGE != 0,
        "kpageflags {flags:#x}: no ZERO_PAGE"
    );
    ensure!(flags & KPF_ANON == 0, "kpageflags {flags:#x}: anonymous");
    if thp::on_contkernel() {
        let (a, b) = (zf0.unwrap_or(0), zf1.unwrap_or(0));
        ensure!(b - a == (len / PAGE) as u64, "zero_page_faults +{}", b - a);
    }
    Ok(())
}

fn write_over_zero() -> Outcome {
    thp::only(64)?;
    let r = Region::anon_aligned(2 * KB64, KB64, RW).ctx("mmap")?;
    ensure!(all_zero(&r, 0, 2 * KB64), "untouched memory read non-zero");
    let s0 = Stats::read(64);
    r.store(5 * PAGE + 7, 0xa5);
    let s1 = Stats::read(64);
    let alloc = s0.delta(&s1, "anon_fault_alloc");
    let rss = thp::smaps_kb(r.addr, "Rss");
    println!("zero_page: write over zero: anon_fault_alloc(64K) {alloc:?} Rss={rss:?} kB");
    let want = if thp::on_contkernel() {
        ensure!(alloc == Some(1), "64K anon_fault_alloc {alloc:?}");
        64
    } else {
        4
    };
    ensure!(rss == Some(want), "Rss {rss:?} kB, expected {want}");
    ensure!(r.load(5 * PAGE + 7) == 0xa5, "the byte written");
    r.store(5 * PAGE + 7, 0);
    ensure!(all_zero(&r, 0, 2 * KB64), "zeros around the byte");
    Ok(())
}

fn fork_then_write() -> Outcome {
    thp::only(64)?;
    let len = 1 << 20;
    let r = Region::anon_aligned(len, KB64, RW).ctx("mmap")?;
    ensure!(all_zero(&r, 0, len), "untouched memory read non-zero");
    let s = proc::fork_wait(|| {
        if !all_zero(&r, 0, len) {
            return 1;
        }
        r.store(0, 0x11);
        r.store(len - 1, 0x22);
        if r.load(0) != 0x11 || r.load(len - 1) != 0x22 || !all_zero(&r, PAGE, len - 2 * PAGE) {
            return 2;
        }
        0
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} (1: non-zero after fork, 2: its writes)"
    );
    ensure!(all_zero(&r, 0, len), "the child's writes in the parent");
    Ok(())
}

fn mprotect_and_madvise() -> Outcome {
    thp::only(64)?;
    let len = 4 * KB64;
    let r = Region::anon_aligned(len, KB64, RW).ctx("mmap")?;
    ensure!(all_zero(&r, 0, len), "untouched memory read non-zero");
    r.protect(0, len, PROT_READ).ctx("mprotect read-only")?;
    r.protect(0, len, RW).ctx("mprotect read-write")?;
    r.store(3 * PAGE, 0x33);
    ensure!(r.load(3 * PAGE) == 0x33, "the byte written after mprotect");
    r.store(3 * PAGE, 0);
    ensure!(all_zero(&r, 0, len), "a store reached other pages");
    r.store(3 * PAGE, 0x33);
    for (what, advice) in [
        ("MADV_FREE", MADV_FREE),
        ("MADV_PAGEOUT", MADV_PAGEOUT),
        ("MADV_DONTNEED", MADV_DONTNEED),
    ] {
        r.advise(KB64, 3 * KB64, advice).ctx(what)?;
        ensure!(
            all_zero(&r, KB64, 3 * KB64),
            "{what}: zero pages read non-zero"
        );
    }
    ensure!(
        r.load(3 * PAGE) == 0x33,
        "the byte outside the advised range"
    );
    Ok(())
}

fn huge_zero_page() -> Outcome {
    thp::only(2048)?;
    let len = 4 << 20;
    let r = Region::anon_aligned(len, 2 << 20, RW).ctx("mmap")?;
    let word = thp::read_word(c"/sys/kernel/mm/transparent_hugepage/use_zero_page");
    let zero = word.as_ref().map_or("?", |w| w.as_str());
    ensure!(all_zero(&r, 0, len), "untouched memory read non-zero");
    let rss = thp::smaps_kb(r.addr, "Rss");
    let huge = thp::smaps_kb(r.addr, "AnonHugePages");
    let (a, b) = (pagemap::entry(r.addr)?, pagemap::entry(r.addr + PAGE)?);
    let c = pagemap::entry(r.addr + (2 << 20))?;
    let flags = pagemap::kpageflags(r.addr + PAGE)?;
    println!(
        "zero_page: huge: use_zero_page={zero} Rss={rss:?} AnonHugePages={huge:?} pagemap {a:#x} {b:#x} {c:#x} kpageflags {flags:#x}"
    );
    ensure!(
        rss == Some(0) && huge == Some(0),
        "Rss {rss:?} AnonHugePages {huge:?} after reads"
    );
    ensure!(
        (b & PM_PFN) == (a & PM_PFN) + 1,
        "frames of the block not consecutive: {a:#x} {b:#x}"
    );
    ensure!(
        a & PM_PFN == c & PM_PFN,
        "two huge zero pages: {a:#x} {c:#x}"
    );
    ensure!(
        flags & (KPF_ZERO_PAGE | KPF_THP) == KPF_ZERO_PAGE | KPF_THP,
        "kpageflags {flags:#x}: not ZERO_PAGE and THP"
    );
    r.store(100 * PAGE, 0x77);
    let rss = thp::smaps_kb(r.addr, "Rss");
    let huge = thp::smaps_kb(r.addr, "AnonHugePages");
    println!("zero_page: huge: after a write Rss={rss:?} AnonHugePages={huge:?}");
    // Linux 6.12 splits the block and copies one page; Linux 7.3 (measured) takes the
    // 2 MiB folio, as contkernel does.
    let six = proc::uname().is_ok_and(|u| u.release().starts_with("6."));
    let want = if thp::on_contkernel() || !six {
        (2048, 2048)
    } else {
        (4, 0)
    };
    ensure!(
        rss == Some(want.0) && huge == Some(want.1),
        "after a write: Rss {rss:?} AnonHugePages {huge:?}, expected {want:?}"
    );
    ensure!(r.load(100 * PAGE) == 0x77, "the byte written");
    r.store(100 * PAGE, 0);
    ensure!(all_zero(&r, 0, len), "zeros around the byte");
    Ok(())
}
