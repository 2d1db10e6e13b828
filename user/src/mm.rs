//! Address space: mmap, munmap, mprotect, madvise, mincore, brk.
//!
//! Calls that can remove or change memory (fixed mappings, munmap, mprotect, madvise,
//! brk) are `unsafe`: the caller makes sure no Rust reference points into the range.

use crate::sys::{nr, Errno};
use crate::syscall;

pub const PAGE: usize = 4096;

pub const PROT_NONE: usize = 0;
pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const PROT_EXEC: usize = 4;

pub const MAP_SHARED: usize = 0x01;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_FIXED: usize = 0x10;
pub const MAP_ANONYMOUS: usize = 0x20;
pub const MAP_POPULATE: usize = 0x8000;
pub const MAP_FIXED_NOREPLACE: usize = 0x10_0000;

pub const MADV_NORMAL: usize = 0;
pub const MADV_DONTNEED: usize = 4;
pub const MADV_FREE: usize = 8;
pub const MADV_HUGEPAGE: usize = 14;
pub const MADV_NOHUGEPAGE: usize = 15;
pub const MADV_POPULATE_READ: usize = 22;
pub const MADV_POPULATE_WRITE: usize = 23;

/// mmap(2).
///
/// # Safety
/// With MAP_FIXED the range may replace memory in use.
pub unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: usize,
    flags: usize,
    fd: isize,
    off: usize,
) -> Result<usize, Errno> {
    // SAFETY: the caller's contract; the kernel itself reads no user memory here.
    unsafe { syscall!(nr::MMAP, addr, len, prot, flags, fd, off) }
}

/// A new private anonymous mapping wherever the kernel puts it (`extra` flags are
/// OR-ed in, e.g. MAP_POPULATE).
pub fn map_anon(len: usize, prot: usize, extra: usize) -> Result<usize, Errno> {
    // SAFETY: without MAP_FIXED(_NOREPLACE) the kernel picks a free range, so nothing
    // in use is replaced.
    unsafe {
        mmap(
            0,
            len,
            prot,
            MAP_PRIVATE | MAP_ANONYMOUS | (extra & !MAP_FIXED),
            -1,
            0,
        )
    }
}

/// munmap(2).
///
/// # Safety
/// Nothing may reference the range afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's contract.
    unsafe { syscall!(nr::MUNMAP, addr, len) }
}

/// mprotect(2).
///
/// # Safety
/// Removing access from memory Rust code uses makes that use fault.
pub unsafe fn mprotect(addr: usize, len: usize, prot: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's contract.
    unsafe { syscall!(nr::MPROTECT, addr, len, prot) }
}

/// madvise(2).
///
/// # Safety
/// MADV_DONTNEED and MADV_FREE may discard the contents of the range.
pub unsafe fn madvise(addr: usize, len: usize, advice: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's contract.
    unsafe { syscall!(nr::MADVISE, addr, len, advice) }
}

/// mincore(2): one byte per page of [addr, addr + len) into `vec` (bit 0: resident).
/// `vec` must hold a byte per page (EINVAL from here otherwise).
pub fn mincore(addr: usize, len: usize, vec: &mut [u8]) -> Result<usize, Errno> {
    if vec.len() < len.div_ceil(PAGE) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the kernel writes one byte per page, which fits in vec.
    unsafe { syscall!(nr::MINCORE, addr, len, vec.as_mut_ptr()) }
}

/// brk(2): asks for the program break at `addr` (0: just ask) and returns the break
/// the kernel settled on (unchanged when it refused).
///
/// # Safety
/// Shrinking the break unmaps memory above it.
pub unsafe fn brk(addr: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's contract.
    unsafe { syscall!(nr::BRK, addr) }
}

/// A mapping this program made and owns: no Rust reference points into it, so its
/// bytes are reached only through volatile accesses here, and changing, advising or
/// unmapping parts of it cannot invalidate anything Rust holds. An access that the
/// current protection forbids (or one to a punched hole) faults: the process is
/// killed by SIGSEGV, which is what some tests check in a child. Unmapped on drop.
pub struct Region {
    pub addr: usize,
    pub len: usize,
}

impl Region {
    /// A new private anonymous mapping (see [`map_anon`]).
    pub fn anon(len: usize, prot: usize, extra: usize) -> Result<Region, Errno> {
        map_anon(len, prot, extra).map(|addr| Region { addr, len })
    }

    /// Takes ownership of [addr, addr + len).
    ///
    /// # Safety
    /// The range is a mapping nothing else uses or will unmap.
    pub unsafe fn from_raw(addr: usize, len: usize) -> Region {
        Region { addr, len }
    }

    fn at(&self, off: usize, size: usize) -> usize {
        assert!(
            off + size <= self.len,
            "offset {off:#x} outside the region ({:#x} bytes)",
            self.len
        );
        self.addr + off
    }

    pub fn load(&self, off: usize) -> u8 {
        // SAFETY: inside the owned region (type docs); a forbidden access faults.
        unsafe { core::ptr::read_volatile(self.at(off, 1) as *const u8) }
    }

    pub fn store(&self, off: usize, v: u8) {
        // SAFETY: as in `load`.
        unsafe { core::ptr::write_volatile(self.at(off, 1) as *mut u8, v) }
    }

    pub fn load_u64(&self, off: usize) -> u64 {
        // SAFETY: as in `load` (a byte array: no alignment needed).
        u64::from_le_bytes(unsafe { core::ptr::read_volatile(self.at(off, 8) as *const [u8; 8]) })
    }

    pub fn store_u64(&self, off: usize, v: u64) {
        // SAFETY: as in `load`.
        unsafe { core::ptr::write_volatile(self.at(off, 8) as *mut [u8; 8], v.to_le_bytes()) }
    }

    /// Writes `byte` over [off, off + len), a u64 at a time (len a multiple of 8).
    pub fn fill(&self, off: usize, len: usize, byte: u8) {
        let word = u64::from_le_bytes([byte; 8]);
        (off..off + len)
            .step_by(8)
            .for_each(|o| self.store_u64(o, word));
    }

    /// The first offset in [off, off + len) whose byte is not `byte`.
    pub fn find_not(&self, off: usize, len: usize, byte: u8) -> Option<usize> {
        let word = u64::from_le_bytes([byte; 8]);
        (off..off + len)
            .step_by(8)
            .find(|&o| self.load_u64(o) != word)
            .map(|o| (o..o + 8).find(|&b| self.load(b) != byte).unwrap_or(o))
    }

    /// Residency of [off, off + len) by mincore, one byte per page (bit 0).
    pub fn mincore(&self, off: usize, len: usize, vec: &mut [u8]) -> Result<usize, Errno> {
        mincore(self.at(off, len), len, vec)
    }

    pub fn protect(&self, off: usize, len: usize, prot: usize) -> Result<usize, Errno> {
        // SAFETY: inside the owned region (type docs).
        unsafe { mprotect(self.at(off, len), len, prot) }
    }

    pub fn advise(&self, off: usize, len: usize, advice: usize) -> Result<usize, Errno> {
        // SAFETY: inside the owned region (type docs).
        unsafe { madvise(self.at(off, len), len, advice) }
    }

    /// Punches a hole: later accesses there fault.
    pub fn unmap(&self, off: usize, len: usize) -> Result<usize, Errno> {
        // SAFETY: inside the owned region (type docs).
        unsafe { munmap(self.at(off, len), len) }
    }

    /// mmap with `flags` | MAP_FIXED-style placement (`fixed` is MAP_FIXED or
    /// MAP_FIXED_NOREPLACE) at `off`; returns the address the kernel gave.
    pub fn map_at(
        &self,
        off: usize,
        len: usize,
        prot: usize,
        fixed: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: inside the owned region (type docs).
        unsafe {
            mmap(
                self.at(off, len),
                len,
                prot,
                MAP_PRIVATE | MAP_ANONYMOUS | fixed,
                -1,
                0,
            )
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the region is owned and nothing references it any more.
        let _ = unsafe { munmap(self.addr, self.len) };
    }
}
