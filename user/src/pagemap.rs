//! /proc/self/pagemap and /proc/kpageflags, read as Linux's mm selftests do: one
//! 8-byte entry per page (pread at `(addr / page size) * 8`) and one flags word per
//! frame (pread at `pfn * 8`). Bits from Linux's Documentation/admin-guide/mm/pagemap.rst
//! and include/uapi/linux/kernel-page-flags.h.

use crate::ensure;
use crate::fs::{self, AT_FDCWD, O_CLOEXEC, O_RDONLY};
use crate::mm::PAGE;
use crate::test::{Context, Fail};

pub const PM_PRESENT: u64 = 1 << 63;
pub const PM_SWAP: u64 = 1 << 62;
pub const PM_FILE: u64 = 1 << 61;
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
pub const PM_PFN: u64 = (1 << 55) - 1;

pub const KPF_MMAP: u64 = 1 << 11;
pub const KPF_ANON: u64 = 1 << 12;
pub const KPF_COMPOUND_HEAD: u64 = 1 << 15;
pub const KPF_COMPOUND_TAIL: u64 = 1 << 16;
pub const KPF_THP: u64 = 1 << 22;
pub const KPF_ZERO_PAGE: u64 = 1 << 24;

/// The pagemap entry of the page at `addr`.
pub fn entry(addr: usize) -> Result<u64, Fail> {
    let fd = fs::openat(AT_FDCWD, c"/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0)
        .ctx("open /proc/self/pagemap")?;
    let mut e = [0u8; 8];
    let n = fs::pread(fd, &mut e, addr / PAGE * 8);
    let _ = fs::close(fd);
    ensure!(n == Ok(8), "pread of pagemap: {n:?}");
    Ok(u64::from_le_bytes(e))
}

/// The /proc/kpageflags word of the frame mapped at `addr`.
pub fn kpageflags(addr: usize) -> Result<u64, Fail> {
    let pfn = entry(addr)? & PM_PFN;
    let fd = fs::openat(AT_FDCWD, c"/proc/kpageflags", O_RDONLY | O_CLOEXEC, 0)
        .ctx("open /proc/kpageflags")?;
    let mut e = [0u8; 8];
    let n = fs::pread(fd, &mut e, pfn as usize * 8);
    let _ = fs::close(fd);
    ensure!(n == Ok(8), "pread of kpageflags: {n:?}");
    Ok(u64::from_le_bytes(e))
}
