//! Access to user memory from the kernel. The copies use LDTRB/STTRB, the unprivileged
//! loads and stores: they are checked with EL0's permissions, so the kernel can never
//! be tricked into reading or writing memory the process may not touch, and PAN stays
//! on all the time (PAN restricts only privileged accesses; Arm ARM "PSTATE.PAN").
//!
//! A copy may fault. For a user address the trap code first lets the memory manager
//! resolve the fault (demand paging, copy-on-write) and retries the instruction; if it
//! cannot, the registered fix-up makes the routine return u64::MAX, and the caller
//! turns that into EFAULT. Addresses outside the user half fail before any access.

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
);

extern "C" {
    fn uaccess_copy_from(dst: *mut u8, src: usize, len: usize) -> u64;
    fn uaccess_copy_to(dst: usize, src: *const u8, len: usize) -> u64;
    fn uaccess_strncpy(dst: *mut u8, src: usize, max: usize) -> u64;
    static uaccess_copy_from_insn: u8;
    static uaccess_copy_to_insn: u8;
    static uaccess_strncpy_insn: u8;
    static uaccess_fault_return: u8;
}

/// Register the fix-ups of the user-access instructions (boot, once).
pub fn init() {
    let resume = core::ptr::addr_of!(uaccess_fault_return) as usize;
    for insn in [
        core::ptr::addr_of!(uaccess_copy_from_insn),
        core::ptr::addr_of!(uaccess_copy_to_insn),
        core::ptr::addr_of!(uaccess_strncpy_insn),
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
