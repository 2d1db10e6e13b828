//! Alignment faults the kernel must turn into SIGBUS (BUS_ADRALN) for the faulting
//! process only, as Linux does: each bad access runs in a forked child, and the parent
//! checks with wait4 that the child was killed by signal 7. Exclusive and
//! acquire/release accesses must be aligned whatever SCTLR_EL1.A says (LDXR on an odd
//! address, LDAR/STLR off their size, LDAXP off 16 bytes), on a mapped page as on one
//! never touched. A plain unaligned LDR/STR to Normal memory does not fault (SCTLR_EL1.A
//! is 0 on both kernels). Before the kernel told fault status codes apart, the
//! alignment fault on a mapped page went to the page-fault handler, which found the
//! page mapped, "fixed" it and let the child re-fault forever.
//!
//! With FEAT_LSE2 (AT_HWCAP's USCAT, from ID_AA64MMFR2_EL1.AT, as Linux reports it) a
//! load-acquire or store-release whose bytes stay inside one aligned 16-byte quantity
//! does not fault (Arm ARM B2.5.2, SCTLR_EL1.nAA = 0): QEMU 10's `-cpu max` has it,
//! 7.2's does not. So the bad accesses cross a 16-byte boundary, which faults on every
//! CPU, and the accesses inside 16 bytes are expected to fault or to work by the bit.
#![no_std]
#![no_main]

use core::arch::asm;
use rt::ensure;
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc::{self, SIGBUS};
use rt::start::{at, hwcap};
use rt::test::{Context, Outcome, Suite};

rt::entry!(main);

fn main(args: &rt::Args) -> i32 {
    let uscat = args.aux(at::HWCAP).unwrap_or(0) & hwcap::USCAT != 0;
    let mut t = Suite::new("sigbus");
    // Each of these crosses a 16-byte boundary (page + 16).
    t.run("ldxr_odd_address", || on_mapped_page(|a| ldxr(a + 12)));
    t.run("ldxr_w_off_by_two", || on_mapped_page(|a| ldxr_w(a + 14)));
    t.run("ldxr_odd_address_untouched_page", ldxr_untouched);
    t.run("ldar_unaligned", || on_mapped_page(|a| ldar(a + 12)));
    t.run("stlr_unaligned", || on_mapped_page(|a| stlr(a + 9)));
    t.run("ldaxp_off_16_bytes", || on_mapped_page(|a| ldaxp(a + 8)));
    // Inside one aligned 16 bytes: by the CPU's LSE2.
    t.run("ldar_inside_16_bytes", || {
        inside_16_bytes(uscat, |a| ldar(a + 4))
    });
    t.run("stlr_inside_16_bytes", || {
        inside_16_bytes(uscat, |a| stlr(a + 1))
    });
    t.run("plain_unaligned_ldr_str_work", plain_unaligned);
    t.run("parent_alive", parent_alive);
    t.finish()
}

/// An unaligned acquire/release access inside one aligned 16 bytes: SIGBUS without
/// LSE2; with it the child runs on and exits 0.
fn inside_16_bytes(uscat: bool, access: fn(usize)) -> Outcome {
    if !uscat {
        return on_mapped_page(access);
    }
    let page = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    page.fill(0, PAGE, 0x5a);
    let addr = page.addr;
    let s = proc::fork_wait(|| {
        access(addr);
        0
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "with LSE2 the child must run on: {s}"
    );
    Ok(())
}

/// A written (so mapped) page; `bad(addr)` runs in a child, which must die of SIGBUS.
fn on_mapped_page(bad: fn(usize)) -> Outcome {
    let page = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    page.fill(0, PAGE, 0x5a);
    bus_error(|| bad(page.addr))
}

/// Runs `bad` in a child, which must be killed by SIGBUS (not exit, not SIGSEGV).
fn bus_error(bad: impl FnOnce()) -> Outcome {
    proc::expect_killed("sigbus", SIGBUS, bad)
}

/// The same fault where the page has never been touched (no entry yet): whether the
/// CPU reports the alignment or the translation fault first, the end is SIGBUS.
fn ldxr_untouched() -> Outcome {
    let page = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    bus_error(|| ldxr(page.addr + 12))
}

// SAFETY (all the asm below): the address is inside a readable and writable page this
// program mapped; the misaligned ones run only in a child that the alignment fault
// kills before anything uses the result.

fn ldxr(addr: usize) {
    let _v: u64;
    unsafe { asm!("ldxr {v}, [{a}]", "clrex", a = in(reg) addr, v = out(reg) _v) };
}

fn ldxr_w(addr: usize) {
    let _v: u32;
    unsafe { asm!("ldxr {v:w}, [{a}]", "clrex", a = in(reg) addr, v = out(reg) _v) };
}

fn ldar(addr: usize) {
    let _v: u64;
    unsafe { asm!("ldar {v}, [{a}]", a = in(reg) addr, v = out(reg) _v) };
}

fn stlr(addr: usize) {
    unsafe { asm!("stlr {v}, [{a}]", a = in(reg) addr, v = in(reg) 0u64) };
}

fn ldaxp(addr: usize) {
    let (_lo, _hi): (u64, u64);
    unsafe {
        asm!("ldaxp {lo}, {hi}, [{a}]", "clrex", a = in(reg) addr, lo = out(reg) _lo, hi = out(reg) _hi)
    };
}

/// LDR/STR of 8 bytes at an odd address in the parent itself: no fault, the bytes
/// land where they belong.
fn plain_unaligned() -> Outcome {
    let page = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    page.fill(0, PAGE, 0);
    let addr = page.addr + 0x101;
    let want = 0x1122_3344_5566_7788u64;
    let got: u64;
    unsafe {
        asm!("str {v}, [{a}]", "ldr {g}, [{a}]", a = in(reg) addr, v = in(reg) want, g = out(reg) got)
    };
    ensure!(got == want, "unaligned LDR read {got:#x}, want {want:#x}");
    ensure!(
        page.load(0x101) == 0x88 && page.load(0x108) == 0x11 && page.load(0x100) == 0,
        "unaligned STR wrote the wrong bytes"
    );
    Ok(())
}

/// After all that, the parent still runs and can fork a child that exits normally.
fn parent_alive() -> Outcome {
    let s = proc::fork_wait(|| 7).ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 7, "child {s}");
    Ok(())
}
