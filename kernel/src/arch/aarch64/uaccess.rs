//! Access to user memory from the kernel. The copies use LDTRB/STTRB, the unprivileged
//! loads and stores: they are checked with EL0's permissions, so the kernel can never
//! be tricked into reading or writing memory the process may not touch, and PAN stays
//! on all the time (PAN restricts only privileged accesses; Arm ARM "PSTATE.PAN").
//!
//! A copy may fault. For a user address the trap code first lets the memory manager
//! resolve the fault (demand paging, copy-on-write) and retries the instruction; if it
//! cannot, the registered fix-up makes the routine return u64::MAX, and the caller
//! turns that into EFAULT. Addresses outside the user half fail before any access.
//!
//! One routine cannot use the unprivileged instructions: the compare-and-swap of a
//! futex word (`cmpxchg_user_u32`), which needs the exclusives LDXR/STLXR, as Linux's
//! `futex_atomic_cmpxchg_inatomic`. It lifts PAN around them (Linux's
//! `uaccess_enable_privileged`) and its callers first read the word with LDTR, so
//! that EL0 may read it; a page EL0 may read is writable at EL1 exactly when it is at
//! EL0 (Arm ARM "Data access permissions for stage 1": AP[2] applies to both), and a
//! PROT_NONE page is read-only at EL1 (`pgtable::desc::Prot`), so the store never
//! writes where the process could not.

use super::trap::{register_fixup, Fixup};

/// End of the user (TTBR0) address space: 48-bit virtual addresses.
pub const USER_END: usize = 1 << 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

core::arch::global_asm!(
    // u64 uaccess_copy_from(dst kernel x0, src user x1, len x2): 0, or u64::MAX on a fault.
    ".global uaccess_copy_from",
    "uaccess_copy_from:",
    "    cbz x2, 2f",
    "1:",
    ".global uaccess_copy_from_insn",
    "uaccess_copy_from_insn:",
    "    ldtrb w3, [x1]",
    "    strb w3, [x0], #1",
    "    add x1, x1, #1",
    "    subs x2, x2, #1",
    "    b.ne 1b",
    "2:  mov x0, #0",
    ".global uaccess_fault_return",
    "uaccess_fault_return:",
    "    ret",
    // u64 uaccess_copy_to(dst user x0, src kernel x1, len x2).
    ".global uaccess_copy_to",
    "uaccess_copy_to:",
    "    cbz x2, 2f",
    "1:  ldrb w3, [x1], #1",
    ".global uaccess_copy_to_insn",
    "uaccess_copy_to_insn:",
    "    sttrb w3, [x0]",
    "    add x0, x0, #1",
    "    subs x2, x2, #1",
    "    b.ne 1b",
    "2:  mov x0, #0",
    "    ret",
    // u64 uaccess_strncpy(dst kernel x0, src user x1, max x2): length without the NUL,
    // x2 if no NUL within max bytes, u64::MAX on a fault.
    ".global uaccess_strncpy",
    "uaccess_strncpy:",
    "    mov x4, #0",
    "1:  cmp x4, x2",
    "    b.hs 2f",
    ".global uaccess_strncpy_insn",
    "uaccess_strncpy_insn:",
    "    ldtrb w3, [x1, #0]",
    "    strb w3, [x0, x4]",
    "    cbz w3, 2f",
    "    add x1, x1, #1",
    "    add x4, x4, #1",
    "    b 1b",
    "2:  mov x0, x4",
    "    ret",
    // u64 uaccess_cmpxchg32(addr user x0, old w1, new w2), PAN already lifted: one
    // LDXR/STLXR attempt. The value found (< 2^32): the swap happened iff it equals
    // `old`; 1 << 32 if the store-exclusive lost its reservation; u64::MAX on a fault
    // (the fix-up's resume, shared with the copies).
    ".global uaccess_cmpxchg32",
    "uaccess_cmpxchg32:",
    "    mov x3, x0",
    ".global uaccess_cmpxchg32_load",
    "uaccess_cmpxchg32_load:",
    "    ldxr w0, [x3]",
    "    cmp w0, w1",
    "    b.ne 1f",
    ".global uaccess_cmpxchg32_store",
    "uaccess_cmpxchg32_store:",
    "    stlxr w4, w2, [x3]",
    "    cbnz w4, 2f",
    "    dmb ish",
    "    ret",
    "1:  clrex",
    "    ret",
    "2:  mov x0, #1 << 32",
    "    ret",
);

extern "C" {
    fn uaccess_copy_from(dst: *mut u8, src: usize, len: usize) -> u64;
    fn uaccess_copy_to(dst: usize, src: *const u8, len: usize) -> u64;
    fn uaccess_strncpy(dst: *mut u8, src: usize, max: usize) -> u64;
    fn uaccess_cmpxchg32(addr: usize, old: u32, new: u32) -> u64;
    static uaccess_copy_from_insn: u8;
    static uaccess_copy_to_insn: u8;
    static uaccess_strncpy_insn: u8;
    static uaccess_cmpxchg32_load: u8;
    static uaccess_cmpxchg32_store: u8;
    static uaccess_fault_return: u8;
}

/// Register the fix-ups of the user-access instructions (boot, once).
pub fn init() {
    let resume = core::ptr::addr_of!(uaccess_fault_return) as usize;
    for insn in [
        core::ptr::addr_of!(uaccess_copy_from_insn),
        core::ptr::addr_of!(uaccess_copy_to_insn),
        core::ptr::addr_of!(uaccess_strncpy_insn),
        core::ptr::addr_of!(uaccess_cmpxchg32_load),
        core::ptr::addr_of!(uaccess_cmpxchg32_store),
    ] {
        register_fixup(Fixup {
            insn: insn as usize,
            resume,
        });
    }
}

/// Whether `[addr, addr + len)` lies in the user half (no access is made).
pub fn is_user_range(addr: usize, len: usize) -> bool {
    addr.checked_add(len).is_some_and(|end| end <= USER_END)
}

pub fn copy_from_user(dst: &mut [u8], src: usize) -> Result<(), Fault> {
    if !is_user_range(src, dst.len()) {
        return Err(Fault);
    }
    // SAFETY: dst is a valid kernel buffer of dst.len() bytes; the user side is
    // accessed with EL0 permissions and faults are fixed up.
    match unsafe { uaccess_copy_from(dst.as_mut_ptr(), src, dst.len()) } {
        0 => Ok(()),
        _ => Err(Fault),
    }
}

pub fn copy_to_user(dst: usize, src: &[u8]) -> Result<(), Fault> {
    if !is_user_range(dst, src.len()) {
        return Err(Fault);
    }
    // SAFETY: as copy_from_user, in the other direction.
    match unsafe { uaccess_copy_to(dst, src.as_ptr(), src.len()) } {
        0 => Ok(()),
        _ => Err(Fault),
    }
}

/// Copy a NUL-terminated string into `dst`; `Ok(None)` if it does not fit.
pub fn strncpy_from_user(dst: &mut [u8], src: usize) -> Result<Option<usize>, Fault> {
    if src >= USER_END {
        return Err(Fault);
    }
    let max = dst.len().min(USER_END - src);
    // SAFETY: as copy_from_user; at most `max` bytes are read and written.
    match unsafe { uaccess_strncpy(dst.as_mut_ptr(), src, max) } {
        u64::MAX => Err(Fault),
        n if (n as usize) < dst.len() => Ok(Some(n as usize)),
        _ => Ok(None),
    }
}

/// Read a plain value (integers, `#[repr(C)]` structs of integers) from user memory.
pub fn read_user<T: Copy + Default>(src: usize) -> Result<T, Fault> {
    let mut v = T::default();
    // SAFETY: T is plain data (Copy, no invariants on its bytes in our uses).
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut v as *mut T as *mut u8, core::mem::size_of::<T>())
    };
    copy_from_user(bytes, src)?;
    Ok(v)
}

/// Write a plain value to user memory.
pub fn write_user<T: Copy>(dst: usize, v: &T) -> Result<(), Fault> {
    // SAFETY: viewing a Copy value's bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>())
    };
    copy_to_user(dst, bytes)
}

/// Atomically replace the user word at `addr` with `new` if it holds `old` (a futex
/// word: 4-aligned, which the callers check); returns the value found, so the swap
/// happened iff it equals `old`. A fault that the memory manager resolves (demand
/// paging, copy-on-write, a software dirty bit) is retried, as for the copies; a lost
/// reservation is retried at once.
pub fn cmpxchg_user_u32(addr: usize, old: u32, new: u32) -> Result<u32, Fault> {
    if !is_user_range(addr, 4) || !addr.is_multiple_of(4) {
        return Err(Fault);
    }
    let pan = super::features::features().pan;
    loop {
        // SAFETY: PAN (where implemented) is lifted only around the two exclusives,
        // which touch the one user word, and set again before anything else runs on
        // this CPU's account (an exception taken between them sets it on entry and
        // restores the cleared state on return; the kernel is not preempted). The word
        // is accessed with EL1's permissions, which equal EL0's on any page EL0 may
        // read (module doc); faults are fixed up.
        let r = unsafe {
            if pan {
                core::arch::asm!(".arch armv8.1-a", "msr pan, #0", options(nomem, nostack));
            }
            let r = uaccess_cmpxchg32(addr, old, new);
            if pan {
                core::arch::asm!(".arch armv8.1-a", "msr pan, #1", options(nomem, nostack));
            }
            r
        };
        match r {
            u64::MAX => return Err(Fault),
            v if v > u64::from(u32::MAX) => core::hint::spin_loop(),
            v => return Ok(v as u32),
        }
    }
}
