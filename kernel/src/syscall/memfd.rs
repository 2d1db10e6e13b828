//! memfd_create, ftruncate, fallocate: files of the RAM file system (`mm::shmem`),
//! and hugetlb memfds (`MFD_HUGETLB`: `mm::hugetlb`, Linux's hugetlbfs files), with
//! Linux's checks and errnos. Their reads, writes and mappings go through the
//! descriptor (`fs::File::Shm` and `Huge`, `memory::mmap`).

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::Errno;
use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::arch::aarch64::mm::machine::Mm;
use crate::arch::aarch64::uaccess::strncpy_from_user;
use crate::fs::{File, HugeFd, ShmFile};
use crate::mm::hugetlb::resv::HugeFile;
use crate::mm::shmem::{self, Shmem};
use crate::mm::PAGE_SIZE;
use crate::proc::mmlock::MmLock;
use crate::proc::sched::me;
use crate::proc::task;
use crate::uapi::*;

const MFD_CLOEXEC: u64 = 0x1;
const MFD_ALLOW_SEALING: u64 = 0x2;
const MFD_HUGETLB: u64 = 0x4;
const MFD_NOEXEC_SEAL: u64 = 0x8;
const MFD_EXEC: u64 = 0x10;
/// The hugetlb page size field of the flags (MFD_HUGE_SHIFT 26, 6 bits).
const MFD_HUGE_MASK: u64 = 0x3f << 26;
/// Longest name: NAME_MAX less the "memfd:" prefix.
const MFD_NAME_MAX_LEN: usize = 255 - 6;

const FALLOC_FL_KEEP_SIZE: u64 = 0x1;
const FALLOC_FL_PUNCH_HOLE: u64 = 0x2;

/// memfd_create: a new empty file of the RAM file system, sealable with
/// MFD_ALLOW_SEALING (else F_SEAL_SEAL from the start). MFD_HUGETLB makes a hugetlb
/// file of the size in the MFD_HUGE bits (the default size if 0; ENODEV for a size
/// without a pool, as Linux's `hugetlb_file_setup`). Sealing a hugetlb memfd is not
/// built: MFD_HUGETLB with MFD_ALLOW_SEALING is EINVAL here (Linux allows it).
pub fn memfd_create(name: u64, flags: u64) -> Result<u64, Errno> {
    let known = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC;
    if flags & MFD_HUGETLB == 0 {
        if flags & !known != 0 {
            return Err(EINVAL);
        }
    } else if flags & !(known | MFD_HUGE_MASK) != 0 {
        return Err(EINVAL);
    }
    if flags & MFD_EXEC != 0 && flags & MFD_NOEXEC_SEAL != 0 {
        return Err(EINVAL);
    }
    let mut buf = vec![0u8; MFD_NAME_MAX_LEN + 1];
    let len = strncpy_from_user(&mut buf, name as usize)
        .map_err(|_| EFAULT)?
        .ok_or(EINVAL)?;
    if flags & MFD_HUGETLB != 0 {
        if flags & MFD_ALLOW_SEALING != 0 {
            return Err(EINVAL);
        }
        let size = crate::mm::hugetlb::map::size_of_flags(flags).ok_or(ENODEV)?;
        let file = File::Huge(HugeFd {
            file: crate::mm::hugetlb::map::new_file(size),
            pos: 0,
        });
        return me().files.lock().install(file, 0, flags & MFD_CLOEXEC != 0);
    }
    let name = core::str::from_utf8(&buf[..len]).unwrap_or("?");
    let shmem = Shmem::new(|_| format!("/memfd:{name}"), 0);
    if flags & MFD_NOEXEC_SEAL != 0 {
        // Sealable, and sealed against becoming executable (Linux makes the file
        // 0666 first; here every memfd is 0777, so the seal implies the others).
        shmem.allow_sealing();
        shmem.add_seals(shmem::F_SEAL_EXEC)?;
    } else if flags & MFD_ALLOW_SEALING != 0 {
        shmem.allow_sealing();
    }
    let file = File::Shm(ShmFile {
        file: shmem,
        pos: 0,
        writable: true,
    });
    me().files.lock().install(file, 0, flags & MFD_CLOEXEC != 0)
}

/// The file of descriptor `fd` if it is open for writing and of the RAM file system:
/// EBADF for no descriptor, else `not_ours`.
fn writable_file(fd: u64, not_ours: Errno) -> Result<Arc<Shmem>, Errno> {
    let t = me();
    let mut files = t.files.lock();
    match files.get(fd)? {
        File::Shm(f) if f.writable => Ok(f.file.clone()),
        _ => Err(not_ours),
    }
}

/// ftruncate: EINVAL for a negative length or a file that is not a writable regular
/// file (Linux's do_ftruncate). A cut unmaps the file past its new end from every
/// address space (`Mm::unmap_file_from`), one at a time, holding no other lock.
pub fn ftruncate(fd: u64, length: u64) -> Result<u64, Errno> {
    if (length as i64) < 0 {
        return Err(EINVAL);
    }
    if let Some(file) = huge_file(fd)? {
        return truncate_huge(&file, length).map(|()| 0);
    }
    let file = writable_file(fd, EINVAL)?;
    let old = file.size();
    file.set_size(&KernelMachine, length)?;
    if length < old {
        let keep = length.div_ceil(PAGE_SIZE as u64);
        each_address_space(|mm| mm.unmap_file_from(&file, keep))?;
    }
    Ok(0)
}

/// The hugetlb file of descriptor `fd`, if it is one (EBADF for no descriptor).
fn huge_file(fd: u64) -> Result<Option<Arc<HugeFile>>, Errno> {
    let t = me();
    let mut files = t.files.lock();
    Ok(match files.get(fd)? {
        File::Huge(f) => Some(f.file.clone()),
        _ => None,
    })
}

/// ftruncate of a hugetlb file: the length must be a multiple of its page size
/// (Linux's `hugetlbfs_setattr`: EINVAL); a cut unmaps the part past the new end from
/// every address space, then the file lets go of its pages there.
fn truncate_huge(file: &Arc<HugeFile>, length: u64) -> Result<(), Errno> {
    let bytes = file.page_size().bytes() as u64;
    if !length.is_multiple_of(bytes) {
        return Err(EINVAL);
    }
    let old = file.length();
    let cut = file.set_len(length);
    if length < old {
        each_address_space(|mm| mm.hugetlb_unmap_file_range(file, length, u64::MAX))?;
    }
    file.put_pages(cut);
    Ok(())
}

/// FALLOC_FL_PUNCH_HOLE of a hugetlb file: the whole pages inside the range leave the
/// file (Linux's `hugetlbfs_punch_hole`; a partial page at either end is left as it
/// is, hugetlbfs zeroes nothing), unmapped from every address space first.
pub fn punch_huge(file: &Arc<HugeFile>, offset: u64, len: u64) -> Result<(), Errno> {
    let bytes = file.page_size().bytes() as u64;
    let from = offset.next_multiple_of(bytes);
    let to = offset.saturating_add(len) / bytes * bytes;
    if from >= to {
        return Ok(());
    }
    let pages = file.take_range((from / bytes) as usize, (to / bytes) as usize);
    each_address_space(|mm| mm.hugetlb_unmap_file_range(file, from, to))?;
    file.put_pages(pages);
    Ok(())
}

/// `f` on every address space in turn, under its `Mm` lock only (threads share one:
/// visited once); the first error ends the walk. Linux reaches a file's mappings
/// through its reverse map (`i_mmap`); this kernel has none and walks the processes.
fn each_address_space(mut f: impl FnMut(&mut Mm) -> Result<(), Errno>) -> Result<(), Errno> {
    let mut seen: Vec<*const MmLock> = Vec::new();
    for t in task::all_user() {
        if seen.contains(&Arc::as_ptr(&t.mm)) {
            continue;
        }
        seen.push(Arc::as_ptr(&t.mm));
        if let Some(mm) = t.mm.lock().as_mut() {
            f(mm)?;
        }
    }
    Ok(())
}

const F_ADD_SEALS: u64 = 1033;
const F_GET_SEALS: u64 = 1034;

/// fcntl F_ADD_SEALS and F_GET_SEALS (`None` for another command), in Linux's
/// memfd_fcntl order: EINVAL for a file that cannot be sealed; adding needs the file
/// open for writing (EPERM), known seals (EINVAL), no F_SEAL_SEAL yet (EPERM), and
/// for F_SEAL_WRITE no shared mapping of the file anywhere (EBUSY: every shared
/// mapping of a memfd may write, Linux's `mapping_deny_writable`).
pub fn seals(fd: u64, cmd: u64, arg: u64) -> Option<Result<u64, Errno>> {
    if cmd != F_ADD_SEALS && cmd != F_GET_SEALS {
        return None;
    }
    Some((|| {
        let (file, writable) = {
            let t = me();
            let mut files = t.files.lock();
            match files.get(fd)? {
                File::Shm(f) => (f.file.clone(), f.writable),
                _ => return Err(EINVAL),
            }
        };
        if cmd == F_GET_SEALS {
            return Ok(u64::from(file.seals()));
        }
        if !writable {
            return Err(EPERM);
        }
        let add = arg as u32;
        let new_write = add & shmem::F_SEAL_WRITE != 0 && file.seals() & shmem::F_SEAL_WRITE == 0;
        if new_write && add & !ALL_SEALS == 0 && file.seals() & shmem::F_SEAL_SEAL == 0 {
            each_address_space(|mm| {
                let mapped = mm.vmas.iter().any(|v| {
                    v.file()
                        .is_some_and(|m| m.shared && Arc::ptr_eq(&m.file, &file))
                });
                if mapped {
                    Err(EBUSY)
                } else {
                    Ok(())
                }
            })?;
        }
        file.add_seals(add).map(|()| 0)
    })())
}

/// Every seal Linux knows (`F_ALL_SEALS`).
const ALL_SEALS: u32 = shmem::F_SEAL_SEAL
    | shmem::F_SEAL_SHRINK
    | shmem::F_SEAL_GROW
    | shmem::F_SEAL_WRITE
    | shmem::F_SEAL_FUTURE_WRITE
    | shmem::F_SEAL_EXEC;

/// fallocate: mode 0 or FALLOC_FL_KEEP_SIZE allocates, FALLOC_FL_PUNCH_HOLE (with
/// KEEP_SIZE, as Linux requires) frees (`punch_hole`). Linux's vfs_fallocate order:
/// EINVAL for a negative offset or a length not above 0, EOPNOTSUPP for another mode
/// or a hole without KEEP_SIZE, EBADF unless open for writing, ESPIPE for a pipe,
/// ENODEV for another file that is not regular, EFBIG past the largest size.
pub fn fallocate(fd: u64, mode: u64, offset: u64, len: u64) -> Result<u64, Errno> {
    if (offset as i64) < 0 || (len as i64) <= 0 {
        return Err(EINVAL);
    }
    let punch = mode & FALLOC_FL_PUNCH_HOLE != 0;
    if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE) != 0
        || (punch && mode & FALLOC_FL_KEEP_SIZE == 0)
    {
        return Err(EOPNOTSUPP);
    }
    let (writable, stream) = {
        let t = me();
        let mut files = t.files.lock();
        let f = files.get(fd)?;
        (f.status() & crate::fs::O_ACCMODE != 0, f.stream().is_some())
    };
    if !writable {
        return Err(EBADF);
    }
    if stream {
        return Err(ESPIPE);
    }
    if let Some(file) = huge_file(fd)? {
        if punch {
            return punch_huge(&file, offset, len).map(|()| 0);
        }
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        return crate::mm::hugetlb::map::allocate(&KernelMachine, &file, offset, len, keep)
            .map(|()| 0);
    }
    let file = writable_file(fd, ENODEV)?;
    if punch {
        return punch_hole(&file, offset, len).map(|()| 0);
    }
    file.allocate(&KernelMachine, offset, len, mode & FALLOC_FL_KEEP_SIZE != 0)?;
    Ok(0)
}

/// Free `[offset, offset + len)` of `file` (Linux's `shmem_fallocate` with
/// FALLOC_FL_PUNCH_HOLE): the cache drops or zeroes it (`Shmem::punch`), then every
/// address space unmaps the whole pages in it, the shared mappings' and the private
/// mappings' file pages (their private copies stay), one at a time holding no other
/// lock. MADV_REMOVE comes here too.
pub fn punch_hole(file: &Arc<Shmem>, offset: u64, len: u64) -> Result<(), Errno> {
    let (first, end) = file.punch(&KernelMachine, offset, len)?;
    if first < end {
        each_address_space(|mm| mm.unmap_file_range(file, first, end, false))?;
    }
    Ok(())
}
