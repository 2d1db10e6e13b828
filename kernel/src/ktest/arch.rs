//! Tests of the architecture layer on the real (emulated) CPU.

use core::sync::atomic::Ordering;

use super::TestResult;
use crate::arch::aarch64::regs::read_sysreg;
use crate::arch::aarch64::trap::{register_fixup, Fixup};
use crate::{kassert, kassert_eq};

core::arch::global_asm!(
    // u64 ktest_probe_read(addr): a load that may fault; the fix-up returns u64::MAX.
    ".global ktest_probe_read",
    "ktest_probe_read:",
    ".global ktest_probe_read_insn",
    "ktest_probe_read_insn:",
    "    ldr x0, [x0]",
    ".global ktest_probe_read_done",
    "ktest_probe_read_done:",
    "    ret",
    // u64 ktest_exec_probe(target): call target; if it cannot be executed the fix-up
    // registered for that target resumes at ktest_exec_probe_ret with x0 = u64::MAX.
    ".global ktest_exec_probe",
    "ktest_exec_probe:",
    "    stp x29, x30, [sp, #-16]!",
    "    blr x0",
    ".global ktest_exec_probe_ret",
    "ktest_exec_probe_ret:",
    "    ldp x29, x30, [sp], #16",
    "    ret",
    ".global ktest_return7",
    "ktest_return7:",
    "    mov x0, #7",
    "    ret",
);

extern "C" {
    fn ktest_probe_read(addr: usize) -> u64;
    static ktest_probe_read_insn: u8;
    static ktest_probe_read_done: u8;
    pub(super) fn ktest_exec_probe(target: usize) -> u64;
    static ktest_exec_probe_ret: u8;
    fn ktest_return7() -> u64;
}

/// Register a fix-up so that executing `target` that faults returns u64::MAX from
/// `ktest_exec_probe` (registering the same pair twice is harmless).
pub(super) fn exec_probe_fixup(target: usize) {
    let resume = core::ptr::addr_of!(ktest_exec_probe_ret) as usize;
    register_fixup(Fixup {
        insn: target,
        resume,
    });
}

pub fn return7_address() -> usize {
    ktest_return7 as *const () as usize
}

pub fn features_match_id_registers() -> TestResult {
    let f = crate::arch::aarch64::features::features();
    let tcr = read_sysreg!(tcr_el1);
    kassert_eq!(tcr & (1 << 39) != 0, f.hw_access_flag());
    kassert_eq!(tcr & (1 << 40) != 0, f.hw_dirty());
    let sctlr = read_sysreg!(sctlr_el1);
    kassert_eq!(sctlr & (1 << 23) == 0, f.pan);
    if f.pan {
        let pan: u64;
        // SAFETY: reads PSTATE.PAN.
        unsafe {
            core::arch::asm!(".arch armv8.1-a", "mrs {}, pan", out(reg) pan, options(nomem, nostack))
        };
        kassert!(pan & (1 << 22) != 0, "PAN is implemented but off");
    }
    Ok(())
}

pub fn semihosting_probe_fixup() -> TestResult {
    // The harness always runs QEMU with -semihosting; a broken probe would make the
    // kernel exit through PSCI and lose the exit status.
    kassert!(crate::power::semihosting(), "semihosting not detected");
    Ok(())
}

pub fn fixup_recovers_faulting_access() -> TestResult {
    let (insn, done) = (
        core::ptr::addr_of!(ktest_probe_read_insn) as usize,
        core::ptr::addr_of!(ktest_probe_read_done) as usize,
    );
    register_fixup(Fixup { insn, resume: done });
    let value = 0x1234_5678_u64;
    kassert_eq!(
        // SAFETY: a readable address: the load succeeds.
        unsafe { ktest_probe_read(&value as *const u64 as usize) },
        value
    );
    // SAFETY: an unmapped address: the load faults and the fix-up returns u64::MAX.
    kassert_eq!(unsafe { ktest_probe_read(0xffff_8000_0000_0000) }, u64::MAX);
    // Executable kernel text runs through the probe; the fix-up stays out of the way.
    exec_probe_fixup(return7_address());
    // SAFETY: ktest_return7 is a leaf function in kernel text.
    kassert_eq!(unsafe { ktest_exec_probe(return7_address()) }, 7);
    kassert!(crate::percpu::this_cpu().online.load(Ordering::Relaxed));
    Ok(())
}

static RESOLVER_CALLS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// A memory manager that resolves every fault it is asked about, counting the calls.
fn resolve_everything(_far: usize, _write: bool) -> bool {
    RESOLVER_CALLS.fetch_add(1, Ordering::Relaxed);
    true
}

/// The decision of the user-access fault path (`trap::uaccess_retry`): only a
/// translation, access-flag or permission fault on a user address reaches the memory
/// manager; an alignment fault, an external abort or a TLB conflict on a mapped user
/// page fails at once (EFAULT), where "resolving" it would retry the copy forever.
/// None of those can be provoked from EL0 with byte-sized LDTRB/STTRB on QEMU, so the
/// decision is tested with syndromes as the CPU reports them.
pub fn uaccess_non_mm_fault_fails_without_retry() -> TestResult {
    use crate::arch::aarch64::esr::Esr;
    use crate::arch::aarch64::trap::uaccess_retry;
    // EC 0x25 (data abort, same EL), IL, WnR as given, DFSC.
    let dabt = |fsc: u64, write: bool| Esr((0x25 << 26) | (1 << 25) | ((write as u64) << 6) | fsc);
    let user = 0x4000_1001u64;
    let calls = || RESOLVER_CALLS.load(Ordering::Relaxed);
    let resolver = Some(resolve_everything as fn(usize, bool) -> bool);
    let before = calls();
    for (fsc, what) in [
        (0x21, "alignment fault"),
        (0x10, "synchronous external abort"),
        (0x30, "TLB conflict abort"),
        (0x01, "address size fault"),
        (0x35, "unsupported exclusive"),
    ] {
        kassert!(
            !uaccess_retry(dabt(fsc, false), user, resolver),
            "{what} retried"
        );
        kassert!(
            !uaccess_retry(dabt(fsc, true), user, resolver),
            "{what} (write) retried"
        );
    }
    kassert_eq!(
        calls(),
        before,
        "the memory manager was asked about a non-MM fault"
    );
    for fsc in [0x07, 0x0b, 0x0f] {
        kassert!(
            uaccess_retry(dabt(fsc, true), user, resolver),
            "FSC {fsc:#x} not resolved"
        );
    }
    kassert_eq!(calls(), before + 3);
    // A kernel address never goes to the memory manager, whatever the fault.
    kassert!(!uaccess_retry(
        dabt(0x07, false),
        0xffff_0000_4000_0000,
        resolver
    ));
    kassert_eq!(calls(), before + 3);
    Ok(())
}
