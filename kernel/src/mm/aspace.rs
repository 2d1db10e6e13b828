//! A user address space (`Mm`): its page tables, its VMAs and its heap (brk).
//!
//! Anonymous memory is faulted in one 4 KiB page at a time and zero-filled. A frame
//! mapped by user page tables carries one reference and one map count per mapping, so
//! fork shares frames by taking references, and the last unmap frees them. After fork
//! both processes map the shared frames read-only (the batched write-protect of the
//! contiguous layer); a write fault then either reuses the frame, if this mapping is
//! the only reference left, or copies it.
//!
//! Locking: the owning process's `Mm` lock is held for every call here; nothing here
//! touches user memory through user addresses (uaccess happens outside the lock).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::frame::{alloc_zeroed, frames};
use super::pgtable::{FaultFix, MapError, Prot, PteAttrs, Unmapped};
use super::ptenv::UserTables;
use super::vma::{HugeHint, VmProt, Vma, VmaKind, VmaSet};
use super::{phys_to_virt, MemType, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::syscall::abi::*;

/// Top of the initial stack, and its reserved size.
pub const STACK_TOP: u64 = 0x0000_ffff_f000_0000;
pub const STACK_SIZE: u64 = 8 << 20;
/// mmap searches downwards from here (below the stack and a gap).
pub const MMAP_BASE: u64 = STACK_TOP - STACK_SIZE - (256 << 20);
/// Lowest address mmap hands out (the first 64 KiB stay unmapped: NULL dereferences).
pub const MMAP_MIN: u64 = 0x1_0000;
const PMD: u64 = 2 << 20;

/// Which access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No VMA, or the VMA does not allow the access: SIGSEGV.
    Segv,
    /// No memory for the page or its tables.
    Oom,
}

pub use crate::syscall::Errno;

pub struct Mm {
    pub tables: UserTables,
    pub vmas: VmaSet,
    pub brk_start: VirtAddr,
    pub brk: VirtAddr,
}

fn pte_attrs(prot: VmProt) -> PteAttrs {
    // PROT_NONE pages stay mapped (their contents survive) but only for EL1.
    let prot = if prot.read || prot.write || prot.exec {
        Prot::user(prot.write, prot.exec)
    } else {
        Prot {
            write: false,
            exec: false,
            user: false,
        }
    };
    PteAttrs {
        prot,
        mem: MemType::Normal,
    }
}

fn pages(start: VirtAddr, end: VirtAddr) -> usize {
    ((end.as_u64() - start.as_u64()) / PAGE_SIZE as u64) as usize
}

fn map_error(e: MapError) -> FaultError {
    match e {
        MapError::NoMemory => FaultError::Oom,
        MapError::AlreadyMapped => unreachable!("fault path maps only empty entries"),
    }
}

/// Drop the frames an unmap returned: one map count and one reference per page.
fn release(records: Vec<Unmapped>) {
    for r in records {
        for k in 0..r.pages {
            let pa = r.pa.add(k * PAGE_SIZE);
            frames().meta(pa).mapcount.fetch_sub(1, Ordering::AcqRel);
            frames().put_ref(pa);
        }
    }
}

impl Mm {
    pub fn new() -> Result<Self, Errno> {
        Ok(Mm {
            tables: UserTables::new().map_err(|_| ENOMEM)?,
            vmas: VmaSet::new(),
            brk_start: VirtAddr(0),
            brk: VirtAddr(0),
        })
    }

    /// A frame for `va` in `vma`, mapped and accounted. The caller has checked the range is empty.
    fn map_new_page(&mut self, va: VirtAddr, prot: VmProt) -> Result<PhysAddr, FaultError> {
        let pa = alloc_zeroed(0).ok_or(FaultError::Oom)?;
        if let Err(e) = self.tables.map(va, pa, 1, pte_attrs(prot)) {
            frames().free(pa, 0);
            return Err(map_error(e));
        }
        frames().meta(pa).mapcount.fetch_add(1, Ordering::AcqRel);
        Ok(pa)
    }

    /// Resolve a fault at `va`; `Ok` means retry the access.
    pub fn handle_fault(&mut self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        let vma = *self.vmas.find(va).ok_or(FaultError::Segv)?;
        let allowed = match access {
            Access::Read => vma.prot.read || vma.prot.write || vma.prot.exec,
            Access::Write => vma.prot.write,
            Access::Exec => vma.prot.exec,
        };
        if !allowed {
            return Err(FaultError::Segv);
        }
        let page = va.align_down(PAGE_SIZE);
        let fix = match access {
            Access::Write => self.tables.write_fault(page),
            Access::Read | Access::Exec => self.tables.access_flag_fault(page),
        };
        match fix {
            FaultFix::Fixed => Ok(()),
            FaultFix::NotMapped => self.map_new_page(page, vma.prot).map(|_| ()),
            FaultFix::NotWritable => self.copy_on_write(page, vma.prot),
        }
    }

    /// Write fault on a read-only page of a writable VMA (shared since fork): reuse it
    /// if this mapping holds the only reference, else copy it.
    fn copy_on_write(&mut self, page: VirtAddr, prot: VmProt) -> Result<(), FaultError> {
        let old = self
            .tables
            .get(page)
            .expect("write fault on an unmapped page")
            .pa_of(page);
        if frames().refcount(old) == 1 {
            self.tables.make_writable(page, 1).map_err(map_error)?;
            return Ok(());
        }
        let new = frames().alloc(0).ok_or(FaultError::Oom)?;
        // SAFETY: both frames are RAM in the linear map; `new` is ours alone and `old`
        // is only read (its other mappings are read-only).
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(old).as_ptr::<u8>(),
                phys_to_virt(new).as_ptr::<u8>(),
                PAGE_SIZE,
            )
        };
        let records = self.tables.unmap(page, 1).map_err(map_error)?;
        release(records);
        if let Err(e) = self.tables.map(page, new, 1, pte_attrs(prot)) {
            frames().free(new, 0);
            return Err(map_error(e));
        }
        frames().meta(new).mapcount.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Fault in every page of `[start, end)` (MAP_POPULATE, MADV_POPULATE_*).
    pub fn populate(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        access: Access,
    ) -> Result<(), FaultError> {
        let mut va = start;
        while va < end {
            self.handle_fault(va, access)?;
            va = va.add(PAGE_SIZE);
        }
        Ok(())
    }

    /// Copy `data` to `va` in this address space (exec: segments and the stack),
    /// faulting pages in regardless of the VMA's protection.
    pub fn write_bytes(&mut self, va: VirtAddr, data: &[u8]) -> Result<(), FaultError> {
        let mut done = 0;
        while done < data.len() {
            let at = va.add(done);
            let page = at.align_down(PAGE_SIZE);
            let pa = match self.tables.get(page) {
                Some(leaf) => leaf.pa_of(page),
                None => {
                    let vma = *self.vmas.find(page).ok_or(FaultError::Segv)?;
                    self.map_new_page(page, vma.prot)?
                }
            };
            let off = (at.as_u64() - page.as_u64()) as usize;
            let n = (PAGE_SIZE - off).min(data.len() - done);
            // SAFETY: `pa` is a frame this address space maps; written through the linear map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data[done..].as_ptr(),
                    phys_to_virt(pa).as_ptr::<u8>().add(off),
                    n,
                )
            };
            done += n;
        }
        Ok(())
    }

    /// Unmap `[start, end)`: VMAs and pages (munmap, MADV_DONTNEED without the VMA part).
    fn unmap_pages(&mut self, start: VirtAddr, end: VirtAddr) {
        let records = self
            .tables
            .unmap(start, pages(start, end))
            .expect("unmap of whole pages cannot need memory");
        release(records);
    }

    pub fn munmap(&mut self, start: VirtAddr, end: VirtAddr) {
        self.vmas.remove(start, end);
        self.unmap_pages(start, end);
    }

    /// mmap of anonymous private memory; returns the start.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: VmProt,
        flags: u64,
    ) -> Result<VirtAddr, Errno> {
        let len = len.checked_add(PAGE_SIZE as u64 - 1).ok_or(ENOMEM)? & !(PAGE_SIZE as u64 - 1);
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if addr % PAGE_SIZE as u64 != 0 {
                return Err(EINVAL);
            }
            let end = addr
                .checked_add(len)
                .filter(|&e| e <= STACK_TOP && addr >= MMAP_MIN)
                .ok_or(ENOMEM)?;
            if !self.vmas.is_free(VirtAddr(addr), VirtAddr(end)) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                self.munmap(VirtAddr(addr), VirtAddr(end));
            }
            VirtAddr(addr)
        } else {
            let align = if len >= PMD { PMD as usize } else { PAGE_SIZE };
            let hint = VirtAddr(addr).align_down(PAGE_SIZE);
            let hint_ok = addr >= MMAP_MIN
                && hint
                    .as_u64()
                    .checked_add(len)
                    .is_some_and(|e| e <= MMAP_BASE)
                && self.vmas.is_free(hint, hint.add(len as usize));
            if hint_ok {
                hint
            } else {
                self.vmas
                    .find_free(len as usize, align, VirtAddr(MMAP_BASE), VirtAddr(MMAP_MIN))
                    .ok_or(ENOMEM)?
            }
        };
        let end = start.add(len as usize);
        self.vmas
            .insert(Vma {
                start,
                end,
                prot,
                huge: HugeHint::Default,
                kind: VmaKind::Anon,
            })
            .map_err(|_| ENOMEM)?;
        if flags & MAP_POPULATE != 0 {
            let access = if prot.write {
                Access::Write
            } else {
                Access::Read
            };
            self.populate(start, end, access).map_err(|_| ENOMEM)?;
        }
        Ok(start)
    }

    pub fn mprotect(&mut self, start: VirtAddr, end: VirtAddr, prot: VmProt) -> Result<(), Errno> {
        self.vmas.protect(start, end, prot).map_err(|_| ENOMEM)?;
        self.tables
            .protect(start, pages(start, end), pte_attrs(prot).prot)
            .map_err(|_| ENOMEM)
    }

    /// madvise; the range is page-aligned and non-empty.
    pub fn madvise(&mut self, start: VirtAddr, end: VirtAddr, advice: u64) -> Result<(), Errno> {
        if !self.vmas.covers(start, end) {
            return Err(ENOMEM);
        }
        match advice {
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED => Ok(()),
            MADV_DONTNEED => {
                self.unmap_pages(start, end);
                Ok(())
            }
            // Lazy free: the pages become clean and old; until reclaim discards them
            // they keep their contents, and a write makes them dirty again.
            MADV_FREE => self
                .tables
                .clear_young_dirty(start, pages(start, end))
                .map_err(|_| ENOMEM),
            MADV_HUGEPAGE => self
                .vmas
                .set_huge(start, end, HugeHint::Huge)
                .map_err(|_| ENOMEM),
            MADV_NOHUGEPAGE => self
                .vmas
                .set_huge(start, end, HugeHint::NoHuge)
                .map_err(|_| ENOMEM),
            MADV_POPULATE_READ => self.populate(start, end, Access::Read).map_err(|e| {
                if e == FaultError::Oom {
                    ENOMEM
                } else {
                    EFAULT
                }
            }),
            MADV_POPULATE_WRITE
                if self
                    .vmas
                    .iter()
                    .any(|v| v.start < end && start < v.end && !v.prot.write) =>
            {
                Err(EINVAL)
            }
            MADV_POPULATE_WRITE => self.populate(start, end, Access::Write).map_err(|e| {
                if e == FaultError::Oom {
                    ENOMEM
                } else {
                    EFAULT
                }
            }),
            _ => Err(EINVAL),
        }
    }

    /// Whether each page of `[start, end)` is resident (mincore); ENOMEM on a hole.
    pub fn mincore(&self, start: VirtAddr, end: VirtAddr) -> Result<Vec<u8>, Errno> {
        if !self.vmas.covers(start, end) {
            return Err(ENOMEM);
        }
        Ok((0..pages(start, end))
            .map(|i| self.tables.get(start.add(i * PAGE_SIZE)).is_some() as u8)
            .collect())
    }

    /// brk: move the end of the heap; returns the (possibly unchanged) break.
    pub fn set_brk(&mut self, want: VirtAddr) -> VirtAddr {
        if want < self.brk_start {
            return self.brk;
        }
        let old_end = self.brk.align_up(PAGE_SIZE);
        let new_end = want.align_up(PAGE_SIZE);
        if new_end > old_end {
            let heap = Vma {
                start: old_end,
                end: new_end,
                prot: VmProt {
                    read: true,
                    write: true,
                    exec: false,
                },
                huge: HugeHint::Default,
                kind: VmaKind::Heap,
            };
            if new_end.as_u64() > MMAP_BASE || self.vmas.insert(heap).is_err() {
                return self.brk;
            }
        } else if new_end < old_end {
            self.munmap(new_end, old_end);
        }
        self.brk = want;
        self.brk
    }

    /// The child's copy at fork: the same VMAs, the same frames mapped read-only in
    /// both (writable VMAs are write-protected in the parent with one batched call per VMA).
    pub fn fork(&mut self) -> Result<Mm, Errno> {
        let mut child = Mm::new()?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        let vmas: Vec<Vma> = self.vmas.iter().copied().collect();
        for vma in vmas {
            child.vmas.insert(vma).expect("parent VMAs do not overlap");
            let attrs = pte_attrs(VmProt {
                write: false,
                ..vma.prot
            });
            let mut va = vma.start;
            while va < vma.end {
                // A run of present pages on consecutive frames: one batched map.
                let Some(first) = self.tables.get(va).map(|l| l.pa_of(va)) else {
                    va = va.add(PAGE_SIZE);
                    continue;
                };
                let mut n = 1;
                while va.add(n * PAGE_SIZE) < vma.end
                    && self
                        .tables
                        .get(va.add(n * PAGE_SIZE))
                        .map(|l| l.pa_of(va.add(n * PAGE_SIZE)))
                        == Some(first.add(n * PAGE_SIZE))
                {
                    n += 1;
                }
                child.tables.map(va, first, n, attrs).map_err(|_| ENOMEM)?;
                for k in 0..n {
                    let pa = first.add(k * PAGE_SIZE);
                    frames().get_ref(pa);
                    frames().meta(pa).mapcount.fetch_add(1, Ordering::AcqRel);
                }
                va = va.add(n * PAGE_SIZE);
            }
            if vma.prot.write {
                self.tables
                    .wrprotect(vma.start, pages(vma.start, vma.end))
                    .map_err(|_| ENOMEM)?;
            }
        }
        Ok(child)
    }
}

impl Drop for Mm {
    fn drop(&mut self) {
        let vmas: Vec<(VirtAddr, VirtAddr)> = self.vmas.iter().map(|v| (v.start, v.end)).collect();
        for (start, end) in vmas {
            self.munmap(start, end);
        }
    }
}
