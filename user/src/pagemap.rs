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

/// The two files open, for reading many pages without an open and a close each.
pub struct Pagemap {
    pagemap: usize,
    kpageflags: usize,
}

impl Pagemap {
    pub fn open() -> Result<Pagemap, Fail> {
        let open = |f: &core::ffi::CStr| fs::openat(AT_FDCWD, f, O_RDONLY | O_CLOEXEC, 0);
        let pagemap = open(c"/proc/self/pagemap").ctx("open /proc/self/pagemap")?;
        match open(c"/proc/kpageflags") {
            Ok(kpageflags) => Ok(Pagemap {
                pagemap,
                kpageflags,
            }),
            Err(e) => {
                let _ = fs::close(pagemap);
                Err(Fail::new(format_args!("open /proc/kpageflags: {e:?}")))
            }
        }
    }

    /// Word `index` of the file open as `fd`.
    fn word(fd: usize, index: usize, what: &str) -> Result<u64, Fail> {
        let mut e = [0u8; 8];
        let n = fs::pread(fd, &mut e, index * 8);
        ensure!(n == Ok(8), "pread of {what}: {n:?}");
        Ok(u64::from_le_bytes(e))
    }

    /// The pagemap entry of the page at `addr`.
    pub fn entry(&self, addr: usize) -> Result<u64, Fail> {
        Self::word(self.pagemap, addr / PAGE, "pagemap")
    }

    /// The frame number backing the page at `addr` (0 if none).
    pub fn pfn(&self, addr: usize) -> Result<u64, Fail> {
        Ok(self.entry(addr)? & PM_PFN)
    }

    /// The /proc/kpageflags word of the frame mapped at `addr`.
    pub fn kpageflags(&self, addr: usize) -> Result<u64, Fail> {
        Self::word(self.kpageflags, self.pfn(addr)? as usize, "kpageflags")
    }
}

impl Drop for Pagemap {
    fn drop(&mut self) {
        let _ = fs::close(self.pagemap);
        let _ = fs::close(self.kpageflags);
    }
}

/// Word `index` of `file`, opened for the one read.
fn read_word(file: &core::ffi::CStr, index: usize, what: &str) -> Result<u64, Fail> {
    let fd = fs::openat(AT_FDCWD, file, O_RDONLY | O_CLOEXEC, 0).ctx(what)?;
    let w = Pagemap::word(fd, index, what);
    let _ = fs::close(fd);
    w
}

/// The pagemap entry of the page at `addr`.
pub fn entry(addr: usize) -> Result<u64, Fail> {
    read_word(c"/proc/self/pagemap", addr / PAGE, "pagemap")
}

/// The /proc/kpageflags word of the frame mapped at `addr`.
pub fn kpageflags(addr: usize) -> Result<u64, Fail> {
    let pfn = entry(addr)? & PM_PFN;
    read_word(c"/proc/kpageflags", pfn as usize, "kpageflags")
}
