//! The mTHP fault path, one folio size at a time, then the fallback to order 0 when
//! a 2 MiB folio cannot be had.
//!
//! `fault_<N>k`, for each N of 16 32 64 128 256 512 1024 2048: only N may be used
//! (top-level `never`, hugepages-<N>kB `always`, every other size `never`); a region
//! of two folios of N aligned to N gets one byte written in its first folio. Checked:
//! one minor fault (getrusage); anon_fault_alloc of N +1 and of every other size +0;
//! mincore shows the whole aligned first folio resident and the second not; the
//! thpmaps line of the region shows order<k>=N and no other order, cont=N from 64K
//! up (0 below), pmd=2M for 2M (0 otherwise; for 2M, cont may be 0 or 2M: a PMD
//! block is not made of contiguous entries, and the format does not say); the folio
//! reads zero but the byte, then the rest of it takes a pattern with no further
//! fault and reads it back.
//!
//! The fallback, each in a child (an out-of-memory kill then shows as the child's
//! signal), with MemFree back within a margin after munmap (in the child) and after
//! the child has gone (in the parent): 4 MiB on contkernel, 32 MiB on Linux, whose
//! per-CPU free lists hold freed pages MemFree does not count.
//!
//! `fallback_2m_memcg` (Linux only; n/a on contkernel, which has no cgroups): the
//! child joins a memory cgroup with memory.max = 9 MiB (cgroup2 mounted on
//! /sys/fs/cgroup if needed; n/a without it); with only 2M, one byte per 2 MiB of a
//! 64 MiB region until anon_fault_fallback goes up: the fifth 2 MiB folio cannot be
//! charged (Linux counts that as anon_fault_fallback, and _charge, printed).
//!
//! `fallback_2m_exhausted` (contkernel only): with only 2M, a region of MemTotal +
//! 64 MiB (MemTotal - 4 MiB where that is refused, as Linux's overcommit heuristic
//! does), one byte per 2 MiB until anon_fault_fallback goes up. Linux 6.12 does not
//! fall back there: it takes 2 MiB folios down to the min watermark and then the
//! page table deposited with the next one fails and the OOM killer ends the process
//! (measured), so this one is n/a on Linux.
//!
//! Both check that the fault that fell back mapped one order-0 page: fallback +1 and
//! anon_fault_alloc + the folios before it; mincore shows that page alone resident
//! in its 2 MiB while the 2 MiB before it is wholly resident; thpmaps shows
//! order0=4K and order9=pmd= the 2 MiB folios before it.
//!
//! The policy found at start is written back at the end (`restore_policy`).
//! Files missing on Linux (thpmaps) are n/a there and required on contkernel.
//! With contpte=off every cont= is expected 0: whether contiguous entries are in
//! use comes from a `mode` line of contpte/stats if the kernel gives one, else from
//! a probe (a 64K fault must move cont_maps or folds), printed at start.
#![no_std]
#![no_main]

use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Fail, Outcome, Suite};
use rt::text::Text;
use rt::thp::{self, Delta, Opt, Stats, PMD_SIZE, SIZES_KB};
use rt::{ensure, fail, fs, println};

rt::entry!(main);

const MIB: usize = 1 << 20;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("thp_fault");
    let Some(sc) = thp::Scenario::begin("thp_fault", &mut t) else {
        return t.finish();
    };
    for kb in SIZES_KB {
        t.run(
            Text::<32>::from_fmt(format_args!("fault_{kb}k")).as_str(),
            || fault(kb, sc.cont_on),
        );
    }
    t.run("fallback_2m_memcg", fallback_memcg);
    t.run("fallback_2m_exhausted", fallback_exhausted);
    sc.end(t)
}

/// The word at `o` of the first folio after the single byte write.
fn zero_but(o: usize, byte_at: usize, byte: u8) -> u64 {
    if o == byte_at & !7 {
        (byte as u64) << (8 * (byte_at % 8))
    } else {
        0
    }
}

fn pattern(o: usize) -> u64 {
    (o as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn fault(kb: usize, cont_on: bool) -> Outcome {
    let size = kb * 1024;
    let order = thp::order_of_kb(kb);
    thp::only(kb)?;
    let r = Region::anon_aligned(2 * size, size, PROT_READ | PROT_WRITE).ctx("mmap")?;
    let before = SIZES_KB.map(Stats::read);
    let off = size / 2 + 123;
    let f0 = thp::minflt()?;
    r.store(off, 0x5a);
    let f1 = thp::minflt()?;
    let after = SIZES_KB.map(Stats::read);
    let alloc = before[order - 2].delta(&after[order - 2], "anon_fault_alloc");
    let map = thp::need_thpmaps(r.addr)?;
    println!(
        "thp_fault: {kb}k: minflt={} anon_fault_alloc={} thpmaps: {}",
        f1 - f0,
        Delta(alloc),
        Opt(map.as_ref())
    );

    ensure!(
        f1 - f0 == 1,
        "one byte written at +{off:#x}: expected 1 minor fault, got {}",
        f1 - f0
    );
    for (b, a) in before.iter().zip(&after) {
        b.expect_delta(a, "anon_fault_alloc", (b.kb == kb) as i64)?;
    }

    let pages = 2 * size / PAGE;
    let mut vec = [0u8; 2 * PMD_SIZE / PAGE];
    r.mincore(0, 2 * size, &mut vec[..pages]).ctx("mincore")?;
    let resident = vec[..pages].iter().filter(|&&v| v & 1 != 0).count();
    let first = vec[..pages / 2].iter().position(|&v| v & 1 == 0);
    let second = vec[pages / 2..pages].iter().position(|&v| v & 1 != 0);
    ensure!(
        first.is_none() && second.is_none(),
        "mincore: want pages 0..{} resident, {}..{} not; got {resident} resident, gap at {:?}, extra at {:?}",
        pages / 2,
        pages / 2,
        pages,
        first,
        second.map(|p| p + pages / 2)
    );

    if let Some(m) = &map {
        let cont = if kb >= 64 && cont_on { size as u64 } else { 0 };
        let pmd = if kb == 2048 { PMD_SIZE as u64 } else { 0 };
        let field = Text::<8>::from_fmt(format_args!("order{order}"));
        let want = [(field.as_str(), size as u64), ("pmd", pmd)];
        m.expect(r.addr, r.addr + 2 * size, &want)?;
        // 2M: a PMD block; the brief's format counts contiguous entries in cont=,
        // so 0 and 2M are both accepted there (and printed above).
        let got = m.get("cont").unwrap_or(u64::MAX);
        ensure!(
            got == cont || (kb == 2048 && got == 0),
            "/proc/self/thpmaps {:x}-{:x}: cont= expected {cont:#x}, got {got:#x}",
            m.start,
            m.end
        );
    }

    for o in (0..size).step_by(8) {
        let (got, want) = (r.load_u64(o), zero_but(o, off, 0x5a));
        ensure!(
            got == want,
            "after the write: word at +{o:#x} reads {got:#x}, expected {want:#x}"
        );
    }
    let f2 = thp::minflt()?;
    (0..size)
        .step_by(8)
        .for_each(|o| r.store_u64(o, pattern(o)));
    let f3 = thp::minflt()?;
    ensure!(
        f3 == f2,
        "writing the rest of the {kb}K folio took {} faults, expected 0 (mapped whole)",
        f3 - f2
    );
    for o in (0..size).step_by(8) {
        let got = r.load_u64(o);
        ensure!(
            got == pattern(o),
            "word at +{o:#x} reads {got:#x}, wrote {:#x}",
            pattern(o)
        );
    }
    Ok(())
}

fn mem_free() -> Result<u64, Fail> {
    thp::meminfo_kb("MemFree").ok_or_else(|| Fail::new(format_args!("/proc/meminfo: no MemFree")))
}

fn mem_total() -> Result<u64, Fail> {
    thp::meminfo_kb("MemTotal").ok_or_else(|| Fail::new(format_args!("/proc/meminfo: no MemTotal")))
}

/// How far below its starting value MemFree may stay once the memory is given
/// back: on Linux freed pages wait on per-CPU lists, which MemFree does not count
/// (24 MiB seen there with 2 CPUs); contkernel gives frames straight back.
fn free_margin_kb() -> u64 {
    if thp::on_contkernel() {
        4 * 1024
    } else {
        32 * 1024
    }
}

/// Runs `check` in a child (an out-of-memory kill then shows as its signal; its
/// reason is printed by the child), then checks MemFree came back in the parent.
fn in_child(what: &str, check: fn() -> Outcome) -> Outcome {
    let free0 = mem_free()?;
    let pid = proc::spawn(|| match check() {
        Ok(()) => 0,
        Err(Fail(why)) => {
            println!("thp_fault: {what} child: FAILED: {why}");
            1
        }
    })
    .ctx("fork")?;
    let s = proc::wait(pid).ctx("wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} ({})",
        if s.signaled() {
            "killed: out of memory instead of falling back to order 0?"
        } else {
            "its reason is on the line above"
        }
    );
    let free1 = mem_free()?;
    let margin = free_margin_kb();
    println!("thp_fault: {what}: parent MemFree {free0} kB before, {free1} kB after the child");
    ensure!(
        free1 + margin >= free0,
        "/proc/meminfo MemFree: {free1} kB after the child, {free0} kB before (> {margin} kB short)"
    );
    Ok(())
}

/// The memory cgroup of `fallback_2m_memcg` (Linux).
const CGROUP: &str = "/sys/fs/cgroup/thp_fault";
/// Its memory.max: four 2 MiB folios and their page tables fit, a fifth does not,
/// and an order-0 page still does (an odd number of MiB, so that the page table
/// charged after a folio never meets the limit exactly, which would OOM-kill).
const CGROUP_MAX: usize = 9 * MIB;

/// Linux: the fallback under a memory cgroup limit (n/a without cgroup2, and on
/// contkernel, which has no cgroups).
fn fallback_memcg() -> Outcome {
    if thp::on_contkernel() {
        println!("thp_fault: fallback_2m_memcg: n/a on contkernel (no memory cgroups)");
        return Ok(());
    }
    if let Err(why) = cgroup_setup() {
        println!("thp_fault: fallback_2m_memcg: n/a: {why}");
        return Ok(());
    }
    let r = in_child("fallback_2m_memcg", memcg);
    let mut dir = thp::path(format_args!("{CGROUP}"));
    if let Err(e) = fs::rmdir(dir.as_cstr()) {
        println!("thp_fault: rmdir {CGROUP}: {e}");
    }
    r
}

/// cgroup2 on /sys/fs/cgroup (mounted if needed), the memory controller for
/// children, and [`CGROUP`] with memory.max = [`CGROUP_MAX`].
fn cgroup_setup() -> Result<(), Text<112>> {
    let fail = |what: &str, e: rt::Errno| Text::from_fmt(format_args!("{what}: {e}"));
    if fs::read_file(c"/sys/fs/cgroup/cgroup.controllers", &mut [0; 64]).is_err() {
        fs::mount(c"cgroup2", c"/sys/fs/cgroup", c"cgroup2", 0)
            .map_err(|e| fail("mount cgroup2 on /sys/fs/cgroup", e))?;
    }
    fs::write_file(c"/sys/fs/cgroup/cgroup.subtree_control", b"+memory")
        .map_err(|e| fail("/sys/fs/cgroup/cgroup.subtree_control +memory", e))?;
    let mut dir = thp::path(format_args!("{CGROUP}"));
    match fs::mkdir(dir.as_cstr(), 0o755) {
        Ok(_) | Err(rt::Errno::EEXIST) => {}
        Err(e) => return Err(fail("mkdir /sys/fs/cgroup/thp_fault", e)),
    }
    let mut max = thp::path(format_args!("{CGROUP}/memory.max"));
    let value = Text::<24>::from_fmt(format_args!("{CGROUP_MAX}"));
    fs::write_file(max.as_cstr(), value.as_bytes())
        .map_err(|e| fail("/sys/fs/cgroup/thp_fault/memory.max", e))?;
    Ok(())
}

/// In the child: joins [`CGROUP`], then only 2M, one byte per 2 MiB of a 64 MiB
/// region until a fault falls back.
fn memcg() -> Outcome {
    let free0 = mem_free()?;
    let mut procs = thp::path(format_args!("{CGROUP}/cgroup.procs"));
    fs::write_file(procs.as_cstr(), b"0").ctx("/sys/fs/cgroup/thp_fault/cgroup.procs")?;
    thp::only(2048)?;
    let r = Region::anon_aligned(64 * MIB, PMD_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    let s0 = Stats::read(2048);
    let charge0 = thp::stat(2048, "anon_fault_fallback_charge");
    let i = touch_until_fallback(&r, &s0)?;
    let charge = charge0.zip(thp::stat(2048, "anon_fault_fallback_charge"));
    println!(
        "thp_fault: fallback_2m_memcg: memory.max {} MiB: fell back at chunk {i}, anon_fault_fallback_charge {}",
        CGROUP_MAX / MIB,
        Delta(charge.map(|(a, b)| b as i64 - a as i64))
    );
    check_fallback(&r, i, &s0)?;
    drop(r);
    free_back(free0, "fallback_2m_memcg")
}

/// Exhausted memory (contkernel only: measured on Linux 6.12, 2 MiB folios are
/// taken down to the min watermark and the page table deposited with the next one
/// then fails, so the OOM killer ends the process before any fallback).
fn fallback_exhausted() -> Outcome {
    if !thp::on_contkernel() {
        println!(
            "thp_fault: fallback_2m_exhausted: n/a on Linux (it takes 2 MiB folios down to the min watermark, then OOM-kills on the page table of the next PMD instead of falling back; fallback_2m_memcg covers it there)"
        );
        return Ok(());
    }
    in_child("fallback_2m_exhausted", exhausted)
}

/// In the child: only 2M, a region bigger than RAM, one byte per 2 MiB until a
/// fault falls back.
fn exhausted() -> Outcome {
    thp::only(2048)?;
    let total = mem_total()?;
    let free0 = mem_free()?;
    // More than RAM where the kernel lets it be mapped; Linux's overcommit heuristic
    // refuses more than MemTotal (ENOMEM), so then a little less.
    let ram = total as usize * 1024;
    let tries = [
        (ram + 64 * MIB) & !(PMD_SIZE - 1),
        (ram - 4 * MIB) & !(PMD_SIZE - 1),
    ];
    let prot = PROT_READ | PROT_WRITE;
    let r = match Region::anon_aligned(tries[0], PMD_SIZE, prot) {
        Ok(r) => r,
        Err(_) => Region::anon_aligned(tries[1], PMD_SIZE, prot).ctx("mmap MemTotal - 4 MiB")?,
    };
    println!(
        "thp_fault: fallback_2m_exhausted: MemTotal {total} kB, MemFree {free0} kB, mapped {} MiB",
        r.len / MIB
    );
    let s0 = Stats::read(2048);
    let i = touch_until_fallback(&r, &s0)?;
    println!(
        "thp_fault: fallback_2m_exhausted: fell back at chunk {i} ({} MiB in 2 MiB folios before it), MemFree then {} kB",
        i * 2,
        mem_free()?
    );
    check_fallback(&r, i, &s0)?;
    drop(r);
    free_back(free0, "fallback_2m_exhausted")
}

/// Writes a byte at the start of each 2 MiB of `r` until hugepages-2048kB's
/// anon_fault_fallback goes up; returns that chunk.
fn touch_until_fallback(r: &Region, s0: &Stats) -> Result<usize, Fail> {
    let fb0 = s0.get("anon_fault_fallback").ok_or_else(|| {
        Fail::new(format_args!(
            "{}/hugepages-2048kB/stats/anon_fault_fallback: missing",
            thp::THP
        ))
    })?;
    for i in 0..r.len / PMD_SIZE {
        r.store(i * PMD_SIZE, 1);
        if thp::stat(2048, "anon_fault_fallback").unwrap_or(fb0) > fb0 {
            return Ok(i);
        }
    }
    fail!(
        "no anon_fault_fallback of 2048kB after {} faults of 2 MiB (MemFree {} kB)",
        r.len / PMD_SIZE,
        mem_free()?
    )
}

/// The fault at 2 MiB chunk `i` of `r` fell back: one fallback and `i` folios of
/// 2 MiB counted since `s0`; mincore shows that chunk's first page alone resident
/// and the chunk before wholly resident; thpmaps shows order0=4K and
/// order9=pmd=i * 2M.
fn check_fallback(r: &Region, i: usize, s0: &Stats) -> Outcome {
    let s1 = Stats::read(2048);
    println!(
        "thp_fault: 2048kB anon_fault_alloc {} anon_fault_fallback {}",
        Delta(s0.delta(&s1, "anon_fault_alloc")),
        Delta(s0.delta(&s1, "anon_fault_fallback"))
    );
    ensure!(i > 0, "the very first 2 MiB fault fell back");
    s0.expect_delta(&s1, "anon_fault_fallback", 1)?;
    s0.expect_delta(&s1, "anon_fault_alloc", i as i64)?;

    let mut vec = [0u8; PMD_SIZE / PAGE];
    r.mincore(i * PMD_SIZE, PMD_SIZE, &mut vec).ctx("mincore")?;
    let resident = vec.iter().filter(|&&v| v & 1 != 0).count();
    ensure!(
        vec[0] & 1 != 0 && resident == 1,
        "mincore of the 2 MiB that fell back: {resident} pages resident (page 0: {}), want page 0 alone",
        vec[0] & 1
    );
    r.mincore((i - 1) * PMD_SIZE, PMD_SIZE, &mut vec)
        .ctx("mincore")?;
    let resident = vec.iter().filter(|&&v| v & 1 != 0).count();
    ensure!(
        resident == PMD_SIZE / PAGE,
        "mincore of the 2 MiB before it: {resident} pages resident, expected 512 (a 2 MiB folio)"
    );
    if let Some(m) = thp::need_thpmaps(r.addr)? {
        println!("thp_fault: thpmaps: {m}");
        let huge = (i * PMD_SIZE) as u64;
        m.expect(
            r.addr,
            r.addr + r.len,
            &[("order0", PAGE as u64), ("order9", huge), ("pmd", huge)],
        )?;
    }
    Ok(())
}

/// MemFree, now that the regions are unmapped, is back within the margin of `free0`.
fn free_back(free0: u64, what: &str) -> Outcome {
    let free1 = mem_free()?;
    let margin = free_margin_kb();
    println!("thp_fault: {what}: MemFree {free1} kB after munmap, {free0} kB before");
    ensure!(
        free1 + margin >= free0,
        "/proc/meminfo MemFree after munmap: {free1} kB, {free0} kB before (> {margin} kB short)"
    );
    Ok(())
}
