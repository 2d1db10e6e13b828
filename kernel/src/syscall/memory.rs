//! brk, mmap, munmap, mremap, mprotect, madvise, mincore, msync and the mlock family:
//! argument checks with Linux's errnos, then the address space (`mm::aspace`,
//! `mm::mlock`).

use super::Errno;
use crate::arch::aarch64::uaccess::{copy_to_user, is_user_range};
use alloc::string::String;

use super::memfd;
use crate::arch::aarch64::mm::machine::Mm;
use crate::fs::File;
use crate::mm::aspace::STACK_TOP;
use crate::mm::hugetlb::map::HugeSource;
use crate::mm::mlock::Lock;
use crate::mm::shmem::Shmem;
use crate::mm::vma::VmProt;
use crate::mm::{VirtAddr, PAGE_SIZE};
use crate::proc::sched::me;
use crate::uapi::*;

const PAGE: u64 = PAGE_SIZE as u64;

fn with_mm<R>(f: impl FnOnce(&mut Mm) -> Result<R, Errno>) -> Result<R, Errno> {
    let t = me();
    let mut mm = t.mm.lock();
    f(mm.as_mut().ok_or(EINVAL)?)
}

/// `[addr, addr + len)` rounded to pages: EINVAL if misaligned or beyond the user half.
fn range(addr: u64, len: u64) -> Result<(VirtAddr, VirtAddr), Errno> {
    if !addr.is_multiple_of(PAGE) {
        return Err(EINVAL);
    }
    let end = addr
        .checked_add(len)
        .and_then(|e| e.checked_next_multiple_of(PAGE))
        .ok_or(EINVAL)?;
    if end > STACK_TOP {
        return Err(ENOMEM);
    }
    Ok((VirtAddr(addr), VirtAddr(end)))
}

pub fn brk(addr: u64) -> Result<u64, Errno> {
    with_mm(|mm| Ok(mm.set_brk(VirtAddr(addr)).as_u64()))
}

/// mmap of a hugetlb memfd at byte `off` (a multiple of its page size, else EINVAL),
/// shared or private (`Mm::mmap_hugetlb`).
fn mmap_huge_file(
    addr: u64,
    len: u64,
    prot: VmProt,
    flags: u64,
    shared: bool,
    file: alloc::sync::Arc<crate::mm::hugetlb::resv::HugeFile>,
    off: u64,
) -> Result<u64, Errno> {
    if off.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
        return Err(EOVERFLOW);
    }
    with_mm(|mm| {
        mm.mmap_hugetlb(addr, len, prot, flags, shared, HugeSource::File(file, off))
            .map(|v| v.as_u64())
    })
}

/// mmap of anonymous memory: hugetlb pages with MAP_HUGETLB, else private memory, or
/// for a shared mapping a new file of its length (Linux's shmem_zero_setup: fork
/// shares it, nothing else can reach it).
fn mmap_anon(addr: u64, len: u64, prot: VmProt, flags: u64, shared: bool) -> Result<u64, Errno> {
    if flags & MAP_HUGETLB != 0 {
        let size = crate::mm::hugetlb::map::size_of_flags(flags).ok_or(EINVAL)?;
        return with_mm(|mm| {
            mm.mmap_hugetlb(addr, len, prot, flags, shared, HugeSource::Anon(size))
                .map(|v| v.as_u64())
        });
    }
    if !shared {
        return with_mm(|mm| mm.mmap(addr, len, prot, flags).map(|v| v.as_u64()));
    }
    let len_pages = len.checked_next_multiple_of(PAGE).ok_or(ENOMEM)?;
    let file = Shmem::new(|_| String::from("/dev/zero"), len_pages);
    with_mm(|mm| {
        mm.mmap_file(addr, len, prot, flags, file, 0)
            .map(|v| v.as_u64())
    })
}

pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> Result<u64, Errno> {
    let prot = VmProt::from_linux(prot).ok_or(EINVAL)?;
    if len == 0 || !off.is_multiple_of(PAGE) {
        return Err(EINVAL);
    }
    let shared = match flags & MAP_TYPE {
        MAP_PRIVATE => false,
        MAP_SHARED | MAP_SHARED_VALIDATE => true,
        _ => return Err(EINVAL),
    };
    let len_pages = len.checked_next_multiple_of(PAGE).ok_or(ENOMEM)?;
    if flags & MAP_ANONYMOUS != 0 {
        return mmap_anon(addr, len, prot, flags, shared);
    }
    // A file, in Linux's do_mmap order: EBADF for no descriptor, EACCES for a file
    // not open for reading or a shared writable mapping of one not open for writing,
    // then ENODEV for a file that cannot be mapped (only the RAM file system's can).
    let (file, access) = {
        let t = me();
        let mut files = t.files.lock();
        let f = files.get(fd)?;
        let file = match f {
            File::Shm(s) => Some(s.file.clone()),
            File::Huge(h) => {
                let file = h.file.clone();
                drop(files);
                return mmap_huge_file(addr, len, prot, flags, shared, file, off);
            }
            _ => None,
        };
        (file, f.status() & crate::fs::O_ACCMODE)
    };
    // MAP_HUGETLB of a file that is not hugetlbfs's (none is, here): Linux's EINVAL.
    if flags & MAP_HUGETLB != 0 {
        return Err(EINVAL);
    }
    if access == crate::fs::O_WRONLY || (shared && prot.write && access != crate::fs::O_RDWR) {
        return Err(EACCES);
    }
    let file = file.ok_or(ENODEV)?;
    // A write-sealed file takes no new writable shared mapping (Linux's
    // memfd_check_seals_mmap); mprotect refuses to make one writable (`mm::map`).
    if shared && prot.write && file.seals() & crate::mm::shmem::WRITE_SEALS != 0 {
        return Err(EPERM);
    }
    if off
        .checked_add(len_pages)
        .is_none_or(|e| e > i64::MAX as u64)
    {
        return Err(EOVERFLOW);
    }
    with_mm(|mm| {
        mm.mmap_file(addr, len, prot, flags, file, off)
            .map(|v| v.as_u64())
    })
}

pub fn munmap(addr: u64, len: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(EINVAL);
    }
    let (start, end) = range(addr, len).map_err(|_| EINVAL)?;
    with_mm(|mm| mm.munmap(start, end).map(|()| 0))
}

/// mremap: every check is the address space's (`mm::mremap`, Linux's order).
pub fn mremap(
    addr: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
) -> Result<u64, Errno> {
    with_mm(|mm| {
        mm.mremap(addr, old_len, new_len, flags, new_addr)
            .map(|v| v.as_u64())
    })
}

pub fn mprotect(addr: u64, len: u64, prot: u64) -> Result<u64, Errno> {
    let prot = VmProt::from_linux(prot).ok_or(EINVAL)?;
    let (start, end) = range(addr, len)?;
    if start == end {
        return Ok(0);
    }
    with_mm(|mm| mm.mprotect(start, end, prot).map(|()| 0))
}

pub fn madvise(addr: u64, len: u64, advice: u64) -> Result<u64, Errno> {
    const KNOWN: [u64; 18] = [
        MADV_REMOVE,
        MADV_NORMAL,
        MADV_RANDOM,
        MADV_SEQUENTIAL,
        MADV_WILLNEED,
        MADV_DONTNEED,
        MADV_DONTNEED_LOCKED,
        MADV_FREE,
        MADV_DONTFORK,
        MADV_DOFORK,
        MADV_WIPEONFORK,
        MADV_KEEPONFORK,
        MADV_PAGEOUT,
        MADV_HUGEPAGE,
        MADV_NOHUGEPAGE,
        MADV_POPULATE_READ,
        MADV_POPULATE_WRITE,
        MADV_COLLAPSE,
    ];
    if !KNOWN.contains(&advice) {
        return Err(EINVAL);
    }
    let (start, end) = range(addr, len).map_err(|e| if e == ENOMEM { ENOMEM } else { EINVAL })?;
    if start == end {
        return Ok(0);
    }
    if advice == MADV_REMOVE {
        return madvise_remove(start, end).map(|()| 0);
    }
    with_mm(|mm| mm.madvise(start, end, advice).map(|()| 0))
}

/// MADV_REMOVE (Linux's `madvise_remove`): punch the file pages behind each VMA of the
/// range out of their file, a VMA at a time, the `Mm` lock dropped around the punch
/// (which takes every address space's, this one's too). A locked VMA or one with no
/// file is EINVAL, a private file mapping EACCES; a hole in the range ENOMEM once the
/// rest is done, as madvise.
fn madvise_remove(start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
    let mut at = start;
    let mut hole = false;
    while at < end {
        let piece = with_mm(|mm| {
            let Some(v) = mm.vmas.next_from(at).filter(|v| v.start < end).cloned() else {
                return Ok(None);
            };
            let (from, to) = (v.start.max(at), v.end.min(end));
            if v.flags.locked || v.flags.lockonfault {
                return Err(EINVAL);
            }
            let len = to.offset_from(from) as u64;
            if let Some(h) = v.hugetlb() {
                // Every hugetlb mapping has a file in Linux (hugetlbfs), shared or not.
                let file = h.file.as_ref().filter(|_| h.shared).ok_or(EACCES)?;
                let off = from.as_u64().wrapping_sub(h.origin);
                return Ok(Some((
                    v.start > at,
                    Punch::Huge(file.clone()),
                    off,
                    len,
                    to,
                )));
            }
            let m = v.file().ok_or(EINVAL)?;
            if !m.shared {
                return Err(EACCES);
            }
            let off = m.index(from) * PAGE;
            Ok(Some((
                v.start > at,
                Punch::Shm(m.file.clone()),
                off,
                len,
                to,
            )))
        })?;
        let Some((gap, file, off, len, next)) = piece else {
            hole = true;
            break;
        };
        hole |= gap;
        match file {
            Punch::Shm(file) => memfd::punch_hole(&file, off, len)?,
            Punch::Huge(file) => memfd::punch_huge(&file, off, len)?,
        }
        at = next;
    }
    if hole {
        Err(ENOMEM)
    } else {
        Ok(())
    }
}

/// The file MADV_REMOVE punches a hole in.
enum Punch {
    Shm(alloc::sync::Arc<crate::mm::shmem::Shmem>),
    Huge(alloc::sync::Arc<crate::mm::hugetlb::resv::HugeFile>),
}

/// mlock, mlock2 and munlock's range, as Linux's `do_mlock`: the start rounded down
/// to its page and the length up (no alignment is required); an end that wraps is
/// EINVAL, but a length whose rounding wraps to 0 is an empty range (Linux's
/// `PAGE_ALIGN` overflows the same way). `None`: nothing to do.
fn lock_range(addr: u64, len: u64) -> Result<Option<(VirtAddr, VirtAddr)>, Errno> {
    let start = addr & !(PAGE - 1);
    let len = len.wrapping_add(addr - start).wrapping_add(PAGE - 1) & !(PAGE - 1);
    let end = start.checked_add(len).ok_or(EINVAL)?;
    Ok((end != start).then_some((VirtAddr(start), VirtAddr(end))))
}

fn do_mlock(addr: u64, len: u64, lock: Option<Lock>) -> Result<u64, Errno> {
    match lock_range(addr, len)? {
        Some((start, end)) => with_mm(|mm| mm.mlock(start, end, lock).map(|()| 0)),
        None => Ok(0),
    }
}

pub fn mlock(addr: u64, len: u64) -> Result<u64, Errno> {
    do_mlock(addr, len, Some(Lock::Populate))
}

pub fn mlock2(addr: u64, len: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !MLOCK_ONFAULT != 0 {
        return Err(EINVAL);
    }
    let lock = if flags & MLOCK_ONFAULT != 0 {
        Lock::OnFault
    } else {
        Lock::Populate
    };
    do_mlock(addr, len, Some(lock))
}

pub fn munlock(addr: u64, len: u64) -> Result<u64, Errno> {
    do_mlock(addr, len, None)
}

pub fn mlockall(flags: u64) -> Result<u64, Errno> {
    let known = MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT;
    if flags == 0 || flags & !known != 0 || flags == MCL_ONFAULT {
        return Err(EINVAL);
    }
    with_mm(|mm| mm.mlockall(flags).map(|()| 0))
}

pub fn munlockall() -> Result<u64, Errno> {
    with_mm(|mm| mm.mlockall(0).map(|()| 0))
}

/// msync flags.
const MS_ASYNC: u64 = 1;
const MS_INVALIDATE: u64 = 2;
const MS_SYNC: u64 = 4;

/// msync, in Linux's order: EINVAL for an unknown flag, a misaligned start, or
/// MS_ASYNC with MS_SYNC; the length rounded up to pages as Linux does (wrapping: a
/// length within a page of 2^64 rounds to 0, nothing to do); ENOMEM if the range
/// wraps or (after the whole range is looked at) any part of it is not mapped; EBUSY
/// for MS_INVALIDATE of a locked VMA. The files here live in RAM (`mm::shmem`): there is nothing to write back, so
/// a valid call has nothing more to do.
pub fn msync(addr: u64, len: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || !addr.is_multiple_of(PAGE)
        || flags & (MS_ASYNC | MS_SYNC) == MS_ASYNC | MS_SYNC
    {
        return Err(EINVAL);
    }
    let end = addr.wrapping_add(len.wrapping_add(PAGE - 1) & !(PAGE - 1));
    if end < addr {
        return Err(ENOMEM);
    }
    if end == addr {
        return Ok(0);
    }
    with_mm(|mm| {
        let mut at = VirtAddr(addr);
        let mut hole = false;
        while at.as_u64() < end {
            let Some(v) = mm.vmas.next_from(at).filter(|v| v.start.as_u64() < end) else {
                hole = true;
                break;
            };
            hole |= v.start > at;
            if flags & MS_INVALIDATE != 0 && v.flags.locked {
                return Err(EBUSY);
            }
            at = v.end;
        }
        if hole {
            Err(ENOMEM)
        } else {
            Ok(0)
        }
    })
}

/// Pages of residency one mincore step reports: the kernel buffer is this size
/// whatever the length (Linux fills a page of results at a time too).
const MINCORE_STEP: usize = 4096;

pub fn mincore(addr: u64, len: u64, vec: u64) -> Result<u64, Errno> {
    if !addr.is_multiple_of(PAGE) {
        return Err(EINVAL);
    }
    // Linux: a range that is not all user addresses is ENOMEM here.
    let (start, end) = range(addr, len).map_err(|_| ENOMEM)?;
    if start == end {
        return Ok(0);
    }
    let total = ((end.as_u64() - start.as_u64()) / PAGE) as usize;
    if !is_user_range(vec as usize, total) {
        return Err(EFAULT);
    }
    let mut buf = alloc::vec![0u8; MINCORE_STEP.min(total)];
    let mut done = 0;
    while done < total {
        let at = start.add(done * PAGE_SIZE);
        let want = (total - done).min(buf.len());
        let n = with_mm(|mm| mm.mincore(at, &mut buf[..want]))?;
        copy_to_user(vec as usize + done, &buf[..n]).map_err(|_| EFAULT)?;
        done += n;
    }
    Ok(0)
}
