//! Address space: mmap, munmap, mprotect, madvise, mincore, brk, the mlock family.
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
pub const MAP_LOCKED: usize = 0x2000;
pub const MAP_POPULATE: usize = 0x8000;
pub const MAP_FIXED_NOREPLACE: usize = 0x10_0000;

pub const MREMAP_MAYMOVE: usize = 1;
pub const MREMAP_FIXED: usize = 2;
pub const MREMAP_DONTUNMAP: usize = 4;

pub const MADV_NORMAL: usize = 0;
pub const MADV_DONTNEED: usize = 4;
pub const MADV_FREE: usize = 8;
pub const MADV_REMOVE: usize = 9;
pub const MADV_DONTFORK: usize = 10;
pub const MADV_DOFORK: usize = 11;
pub const MADV_WIPEONFORK: usize = 18;
pub const MADV_KEEPONFORK: usize = 19;
pub const MADV_HUGEPAGE: usize = 14;
pub const MADV_PAGEOUT: usize = 21;
pub const MADV_NOHUGEPAGE: usize = 15;
pub const MADV_POPULATE_READ: usize = 22;
pub const MADV_POPULATE_WRITE: usize = 23;
pub const MADV_DONTNEED_LOCKED: usize = 24;
pub const MADV_COLLAPSE: usize = 25;

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

/// mremap(2): the new address.
///
/// # Safety
/// The old range may be unmapped or moved: nothing may reference it afterwards, nor
/// anything mapped at `new_addr` with MREMAP_FIXED.
pub unsafe fn mremap(
    addr: usize,
    old_len: usize,
    new_len: usize,
    flags: usize,
    new_addr: usize,
) -> Result<usize, Errno> {
    // SAFETY: the caller's contract.
    unsafe { syscall!(nr::MREMAP, addr, old_len, new_len, flags, new_addr) }
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

pub const MLOCK_ONFAULT: usize = 1;
pub const MCL_CURRENT: usize = 1;
pub const MCL_FUTURE: usize = 2;
pub const MCL_ONFAULT: usize = 4;

/// mlock(2): lock (and populate) the pages of [addr, addr + len).
pub fn mlock(addr: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: locking changes no contents and no mapping.
    unsafe { syscall!(nr::MLOCK, addr, len) }
}

/// mlock2(2): as mlock, MLOCK_ONFAULT in `flags` populates nothing.
pub fn mlock2(addr: usize, len: usize, flags: usize) -> Result<usize, Errno> {
    // SAFETY: as in `mlock`.
    unsafe { syscall!(nr::MLOCK2, addr, len, flags) }
}

/// munlock(2).
pub fn munlock(addr: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: as in `mlock`.
    unsafe { syscall!(nr::MUNLOCK, addr, len) }
}

/// mlockall(2): MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT.
pub fn mlockall(flags: usize) -> Result<usize, Errno> {
    // SAFETY: as in `mlock`.
    unsafe { syscall!(nr::MLOCKALL, flags) }
}

/// munlockall(2).
pub fn munlockall() -> Result<usize, Errno> {
    // SAFETY: as in `mlock`.
    unsafe { syscall!(nr::MUNLOCKALL) }
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

    /// A new private anonymous mapping of `len` bytes whose start is a multiple of
    /// `align` (a power of two, at least a page), with an unmapped page on either
    /// side so that it is a VMA of its own (no neighbour can merge with it): a
    /// larger mapping is made and its ends are trimmed.
    pub fn anon_aligned(len: usize, align: usize, prot: usize) -> Result<Region, Errno> {
        assert!(
            align.is_power_of_two() && align >= PAGE,
            "alignment {align:#x}"
        );
        // head in [PAGE, align], so tail = align + PAGE - head >= PAGE.
        let total = len + align + PAGE;
        let wide = Region::anon(total, prot, 0)?;
        let start = (wide.addr + PAGE + align - 1) & !(align - 1);
        let head = start - wide.addr;
        let tail = total - head - len;
        wide.unmap(0, head)?;
        wide.unmap(head + len, tail)?;
        core::mem::forget(wide);
        // SAFETY: [start, start + len) is what is left of the mapping just made,
        // whose owner was forgotten so that only this Region unmaps it.
        Ok(unsafe { Region::from_raw(start, len) })
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

    /// mremap of the whole region to `new_len` bytes with `flags` (and `new_addr` for
    /// MREMAP_FIXED): the region as it is afterwards, or the error and the region
    /// unchanged. With MREMAP_DONTUNMAP the old range stays mapped (empty) and is
    /// given back as the second region.
    pub fn remap(
        self,
        new_len: usize,
        flags: usize,
        new_addr: usize,
    ) -> Result<(Region, Option<Region>), (Region, Errno)> {
        // SAFETY: the region is owned (type docs): nothing references it, and the
        // caller owns what lies at `new_addr` (it is replaced).
        match unsafe { mremap(self.addr, self.len, new_len, flags, new_addr) } {
            Ok(addr) => {
                let old = (flags & MREMAP_DONTUNMAP != 0).then(|| Region {
                    addr: self.addr,
                    len: self.len,
                });
                core::mem::forget(self);
                Ok((Region { addr, len: new_len }, old))
            }
            Err(e) => Err((self, e)),
        }
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

impl Region {
    /// Map `len` bytes of file `fd` from byte `file_off` (or, with `fd` -1, new shared
    /// anonymous memory) over `[off, off + len)` of the region, MAP_SHARED or
    /// MAP_PRIVATE as `share` says; the region still owns (and unmaps) the range.
    pub fn map_file_at(
        &self,
        off: usize,
        len: usize,
        prot: usize,
        share: usize,
        fd: isize,
        file_off: usize,
    ) -> Result<usize, Errno> {
        let anon = if fd < 0 { MAP_ANONYMOUS } else { 0 };
        // SAFETY: inside the owned region (type docs).
        unsafe {
            mmap(
                self.at(off, len),
                len,
                prot,
                share | anon | MAP_FIXED,
                fd,
                file_off,
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

/// Bytes of stack [`prefault_stack`] touches.
pub const PREFAULT_STACK: usize = 256 * 1024;

/// Touches [`PREFAULT_STACK`] bytes of stack below the caller, a byte per page, so
/// that later calls do not take stack faults (for tests that count faults or
/// folio allocations in a window).
#[inline(never)]
pub fn prefault_stack() {
    let mut buf = [0u8; PREFAULT_STACK];
    for i in (0..PREFAULT_STACK).step_by(PAGE) {
        // SAFETY: a byte of a local array.
        unsafe { core::ptr::write_volatile(&mut buf[i], 1) };
    }
    core::hint::black_box(&buf);
}

/// Reads a byte of every page of the program's text and read-only data (from
/// `_start`, the first text byte, up to the initialised data), so that running
/// code not yet run does not take page faults in a window where a test counts them.
pub fn prefault_image() {
    static DATA_MARK: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(1);
    extern "C" {
        fn _start();
    }
    let start = (_start as *const () as usize) & !(PAGE - 1);
    let end = &DATA_MARK as *const _ as usize;
    for a in (start..end).step_by(PAGE) {
        // SAFETY: the text, rodata and data segments are mapped readable and
        // contiguous (link.ld: each starts on the next page), and `a` lies below
        // the data segment's static.
        unsafe { core::ptr::read_volatile(a as *const u8) };
    }
}
