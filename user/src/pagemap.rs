//! /proc/self/pagemap and /proc/kpageflags, read as Linux's mm selftests read them
//! (pread of one 8-byte entry): which frame backs a page, and what that frame is
//! (anonymous, mapped, head or tail of a large folio). Both kernels provide them.

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

/// The two files, open: many pages read without an open and close each.
pub struct Pagemap {
    pagemap: usize,
    kpageflags: usize,
}

impl Pagemap {
    pub fn open() -> Result<Pagemap, Fail> {
        let open = |f: &core::ffi::CStr| fs::openat(AT_FDCWD, f, O_RDONLY | O_CLOEXEC, 0);
        let pagemap = open(c"/proc/self/pagemap").ctx("open /proc/self/pagemap")?;
        let kpageflags = match open(c"/proc/kpageflags") {
            Ok(fd) => fd,
            Err(e) => {
                let _ = fs::close(pagemap);
                return Err(Fail::new(format_args!("open /proc/kpageflags: {e:?}")));
            }
        };
        Ok(Pagemap {
            pagemap,
            kpageflags,
        })
    }

    /// Entry `index` (8 bytes) of the file open as `fd`.
    fn entry(fd: usize, index: usize) -> Result<u64, Fail> {
        let mut e = [0u8; 8];
        let n = fs::pread(fd, &mut e, index * 8);
        if n != Ok(8) {
            return Err(Fail::new(format_args!("pread of entry {index}: {n:?}")));
        }
        Ok(u64::from_le_bytes(e))
    }

    /// The pagemap entry of the page at `addr`.
    pub fn entry_of(&self, addr: usize) -> Result<u64, Fail> {
        Self::entry(self.pagemap, addr / PAGE)
    }

    /// The frame number backing the page at `addr` (0 if none).
    pub fn pfn(&self, addr: usize) -> Result<u64, Fail> {
        Ok(self.entry_of(addr)? & PM_PFN)
    }

    /// The /proc/kpageflags word of the frame mapped at `addr`.
    pub fn flags(&self, addr: usize) -> Result<u64, Fail> {
        Self::entry(self.kpageflags, self.pfn(addr)? as usize)
    }
}

impl Drop for Pagemap {
    fn drop(&mut self) {
        let _ = fs::close(self.pagemap);
        let _ = fs::close(self.kpageflags);
    }
}

/// The pagemap entry of the page at `addr` (one open of the file).
pub fn pagemap(addr: usize) -> Result<u64, Fail> {
    Pagemap::open()?.entry_of(addr)
}

/// The /proc/kpageflags word of the frame mapped at `addr` (one open of each file).
pub fn kpageflags(addr: usize) -> Result<u64, Fail> {
    Pagemap::open()?.flags(addr)
}
