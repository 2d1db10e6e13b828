//! The mTHP fault path, one folio size at a time, then the fallback to order 0 when
//! no 2 MiB block is left.
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
//! `fallback_2m_under_pressure`, in a child (an out-of-memory kill then shows as
//! the child's signal): only 2M, a region of MemTotal + 64 MiB (MemTotal - 4 MiB
//! where that is refused, as Linux's overcommit heuristic does), one byte written per
//! 2 MiB until hugepages-2048kB/stats/anon_fault_fallback goes up (bounded by the
//! region). The fault that fell back mapped one order-0 page: mincore shows that page
//! alone resident in its 2 MiB while the 2 MiB before it is wholly resident, and
//! thpmaps shows order0=4K and order9=pmd= the 2 MiB folios before it. After munmap,
//! MemFree is back within 16 MiB of its value before the mapping (in the child, and
//! again in the parent after the child has gone).
//!
//! The policy found at start is written back at the end (`restore_policy`).
//! Files missing on Linux (thpmaps) are n/a there and required on contkernel.
#![no_std]
#![no_main]

use rt::mm::{self, Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc::{self, RUSAGE_SELF};
use rt::test::{Context, Fail, Outcome, Suite};
use rt::text::Text;
use rt::thp::{self, Delta, Opt, Stats, PMD_SIZE, SIZES_KB};
use rt::{ensure, fail, println};

rt::entry!(main);

const MIB: usize = 1 << 20;
/// Bytes MemFree may stay below its starting value after the big region is gone
/// (per-CPU free lists on Linux, page tables not yet freed, ...).
const FREE_MARGIN_KB: u64 = 16 * 1024;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("thp_fault");
    thp::mount_pseudo_fs();
    mm::prefault_stack();
    mm::prefault_image();
    if let Ok(u) = proc::uname() {
        println!("thp_fault: kernel={} {}", u.sysname(), u.release());
    }
    let saved = match thp::Policy::save() {
        Ok(p) => p,
        Err(e) => {
            t.report("save_policy", Err(e.into()));
            return t.finish();
        }
    };
    println!("thp_fault: policy before: {saved}");
    for kb in SIZES_KB {
        t.run(Text::<32>::from_fmt(format_args!("fault_{kb}k")).as_str(), || fault(kb));
    }
    t.run("fallback_2m_under_pressure", fallback);
    t.run("restore_policy", || {
        saved.restore()?;
        let now = thp::Policy::save()?;
        println!("thp_fault: policy after: {now}");
        Ok(())
    });
    t.finish()
}

fn minflt() -> Result<i64, Fail> {
    Ok(proc::getrusage(RUSAGE_SELF).ctx("getrusage")?.minflt)
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

fn fault(kb: usize) -> Outcome {
    let size = kb * 1024;
    let order = thp::order_of_kb(kb);
    thp::only(kb)?;
    let r = Region::anon_aligned(2 * size, size, PROT_READ | PROT_WRITE).ctx("mmap")?;
    let before = SIZES_KB.map(Stats::read);
    let off = size / 2 + 123;
    let f0 = minflt()?;
    r.store(off, 0x5a);
    let f1 = minflt()?;
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
        "mincore: expected pages 0..{} resident and {}..{} not, got {resident} resident (first gap {:?}, first resident after the folio {:?})",
        pages / 2,
        pages / 2,
        pages,
        first,
        second.map(|p| p + pages / 2)
    );

    if let Some(m) = &map {
        let cont = if kb >= 64 { size as u64 } else { 0 };
        let pmd = if kb == 2048 { PMD_SIZE as u64 } else { 0 };
        let field = Text::<8>::from_fmt(format_args!("order{order}"));
        let want = [(field.as_str(), size as u64), ("pmd", pmd)];
        m.expect(r.addr, r.addr + 2 * size, &want)?;
        // 2M: a PMD block; the brief's format counts contiguous entries in cont=,
        // so 0 and 2M are both accepted there (and printed above).
        let got = m.get("cont").unwrap_or(u64::MAX);
        ensure!(
            got == cont || (kb == 2048 && got == 0),
            "/proc/self/thpmaps {:x}-{:x}: cont= expected {cont:#x}, got {got:#x} (`{m}`)",
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
    let f2 = minflt()?;
    (0..size).step_by(8).for_each(|o| r.store_u64(o, pattern(o)));
    let f3 = minflt()?;
    ensure!(
        f3 == f2,
        "writing the rest of the {kb}K folio took {} faults, expected 0 (the folio is mapped whole)",
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

/// Only 2M; the pressure is made in a child, whose exit code says how it went (its
/// reason is printed by the child); MemFree is compared again once it has gone.
fn fallback() -> Outcome {
    thp::only(2048)?;
    let free0 = mem_free()?;
    let pid = proc::spawn(|| match pressure() {
        Ok(()) => 0,
        Err(Fail(why)) => {
            println!("thp_fault: fallback child: FAILED: {why}");
            1
        }
    })
    .ctx("fork")?;
    let s = proc::wait(pid).ctx("wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} ({})",
        if s.signaled() {
            "killed: out of memory instead of falling back?"
        } else {
            "its reason is on the line above"
        }
    );
    let free1 = mem_free()?;
    println!("thp_fault: fallback: parent MemFree {free0} kB before, {free1} kB after the child");
    ensure!(
        free1 + FREE_MARGIN_KB >= free0,
        "/proc/meminfo MemFree: {free1} kB after the child, {free0} kB before (more than {FREE_MARGIN_KB} kB short)"
    );
    Ok(())
}

fn pressure() -> Outcome {
    let total = thp::meminfo_kb("MemTotal")
        .ok_or_else(|| Fail::new(format_args!("/proc/meminfo: no MemTotal")))?;
    let free0 = mem_free()?;
    let s0 = Stats::read(2048);
    let fb0 = s0.get("anon_fault_fallback").ok_or_else(|| {
        Fail::new(format_args!(
            "{}/hugepages-2048kB/stats/anon_fault_fallback: missing",
            thp::THP
        ))
    })?;
    // More than RAM where the kernel lets it be mapped; Linux's overcommit heuristic
    // refuses more than MemTotal (ENOMEM), so then a little less than MemTotal,
    // which is still more than is free there.
    let ram = total as usize * 1024;
    let tries = [(ram + 64 * MIB) & !(PMD_SIZE - 1), (ram - 4 * MIB) & !(PMD_SIZE - 1)];
    let prot = PROT_READ | PROT_WRITE;
    let (r, len) = match Region::anon_aligned(tries[0], PMD_SIZE, prot) {
        Ok(r) => (r, tries[0]),
        Err(_) => (
            Region::anon_aligned(tries[1], PMD_SIZE, prot).ctx("mmap MemTotal - 4 MiB")?,
            tries[1],
        ),
    };
    println!(
        "thp_fault: fallback: MemTotal {total} kB, MemFree {free0} kB, mapped {} MiB",
        len / MIB
    );
    let chunks = len / PMD_SIZE;
    let mut found = None;
    let mut fb = fb0;
    for i in 0..chunks {
        r.store(i * PMD_SIZE, 1);
        fb = thp::stat(2048, "anon_fault_fallback").unwrap_or(fb);
        if fb > fb0 {
            found = Some(i);
            break;
        }
    }
    let free_at = mem_free()?;
    let Some(i) = found else {
        fail!(
            "no anon_fault_fallback of 2048kB after {chunks} faults of 2 MiB ({} MiB touched, MemFree {free_at} kB)",
            chunks * 2
        );
    };
    let s1 = Stats::read(2048);
    println!(
        "thp_fault: fallback: at the fault of chunk {i} ({} MiB in 2 MiB folios before it), MemFree then {free_at} kB; 2048kB anon_fault_alloc {} anon_fault_fallback {}",
        i * 2,
        Delta(s0.delta(&s1, "anon_fault_alloc")),
        Delta(s0.delta(&s1, "anon_fault_fallback"))
    );
    ensure!(i > 0, "the very first 2 MiB fault fell back (MemFree {free0} kB)");
    ensure!(
        fb == fb0 + 1,
        "anon_fault_fallback of 2048kB: expected +1, got +{}",
        fb - fb0
    );
    s0.expect_delta(&s1, "anon_fault_alloc", i as i64)?;

    let mut vec = [0u8; PMD_SIZE / PAGE];
    r.mincore(i * PMD_SIZE, PMD_SIZE, &mut vec).ctx("mincore")?;
    let resident = vec.iter().filter(|&&v| v & 1 != 0).count();
    ensure!(
        vec[0] & 1 != 0 && resident == 1,
        "mincore of the 2 MiB that fell back: {resident} pages resident (page 0: {}), expected page 0 alone (order 0)",
        vec[0] & 1
    );
    r.mincore((i - 1) * PMD_SIZE, PMD_SIZE, &mut vec).ctx("mincore")?;
    let resident = vec.iter().filter(|&&v| v & 1 != 0).count();
    ensure!(
        resident == PMD_SIZE / PAGE,
        "mincore of the 2 MiB before: {resident} pages resident, expected all 512 (a 2 MiB folio)"
    );

    if let Some(m) = thp::need_thpmaps(r.addr)? {
        println!("thp_fault: fallback: thpmaps: {m}");
        let huge = (i * PMD_SIZE) as u64;
        m.expect(
            r.addr,
            r.addr + len,
            &[("order0", PAGE as u64), ("order9", huge), ("pmd", huge)],
        )?;
    }
    drop(r);
    let free1 = mem_free()?;
    println!("thp_fault: fallback: MemFree {free1} kB after munmap ({free0} kB before the mapping)");
    ensure!(
        free1 + FREE_MARGIN_KB >= free0,
        "/proc/meminfo MemFree after munmap: {free1} kB, {free0} kB before (more than {FREE_MARGIN_KB} kB short)"
    );
    Ok(())
}
