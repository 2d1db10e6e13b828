//! The virtual memory areas (VMAs) of one user address space: which ranges are mapped,
//! with what protection, huge-page advice and purpose. A page fault looks its address
//! up here before it touches the page tables; mmap, munmap, mprotect, madvise and brk
//! edit the set.
//!
//! Invariants, kept by every operation:
//! - VMAs are page-aligned, non-empty and never overlap (a `BTreeMap` keyed by start);
//! - two VMAs that touch and have the same protection, advice, flags and kind are one
//!   VMA (Linux's `vma_merge`), so an mprotect or madvise that is undone leaves the set
//!   as it was.
//!
//! Range operations follow Linux: munmap may span holes; mprotect and madvise
//! (MADV_[NO]HUGEPAGE) fail with ENOMEM and change nothing if any page of the range is
//! unmapped. A range that cuts a VMA splits it at the cut.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::addr::{VirtAddr, PAGE_SIZE};
use super::hugetlb::resv::{HugeFile, ResvMap};
use super::hugetlb::HugeSize;
use super::shmem::Shmem;
use crate::uapi::{EEXIST, ENOMEM, PROT_EXEC, PROT_READ, PROT_WRITE};

/// The advice a VMA carries, defined with the policy that reads it.
pub use super::mthp::HugeHint;

/// Access permissions of a VMA (mmap's `PROT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmProt {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl VmProt {
    pub const NONE: Self = Self::new(false, false, false);
    pub const READ: Self = Self::new(true, false, false);
    pub const READ_WRITE: Self = Self::new(true, true, false);
    pub const READ_EXEC: Self = Self::new(true, false, true);

    pub const fn new(read: bool, write: bool, exec: bool) -> Self {
        Self { read, write, exec }
    }

    /// From Linux `PROT_*` bits; `None` (EINVAL) for any other bit, including arm64's
    /// PROT_BTI and PROT_MTE, which this kernel does not implement.
    pub fn from_linux(prot: u64) -> Option<Self> {
        (prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) == 0).then_some(Self {
            read: prot & PROT_READ != 0,
            write: prot & PROT_WRITE != 0,
            exec: prot & PROT_EXEC != 0,
        })
    }
}

/// The flags madvise and mlock set on a VMA (Linux's `vm_flags` bits of the same
/// names). None changes a page-table entry: fork reads the first two, the lock
/// decides population and whether reclaim may discard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaFlags {
    /// MADV_DONTFORK (VM_DONTCOPY): fork gives the child no mapping here.
    pub dontcopy: bool,
    /// MADV_WIPEONFORK (VM_WIPEONFORK): fork gives the child this VMA, empty.
    pub wipeonfork: bool,
    /// mlock (VM_LOCKED): populated at mlock, never discarded by reclaim.
    pub locked: bool,
    /// mlock2(MLOCK_ONFAULT) (VM_LOCKONFAULT): locked, but populated by faults only.
    pub lockonfault: bool,
    /// UFFDIO_REGISTER_MODE_MISSING (VM_UFFD_MISSING and its `vm_userfaultfd_ctx`): a
    /// fault on an unpopulated page is this userfaultfd's to resolve (`userfault`).
    pub userfault: Option<UffdId>,
}

/// Which userfaultfd context a registered VMA belongs to (`proc::userfault` keeps the
/// context by this number; two VMAs of different contexts never merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UffdId(pub u64);

/// What a VMA is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// Anonymous mmap.
    Anon,
    /// The main thread's stack.
    Stack,
    /// The brk heap.
    Heap,
    /// A PT_LOAD segment of the executable.
    Image,
    /// A mapping of a file of the RAM file system (`shmem`): a memfd, or the file
    /// behind a `MAP_SHARED|MAP_ANONYMOUS` mapping.
    File(FileMap),
    /// A hugetlb mapping (`hugetlb`): pages of one pool size.
    Hugetlb(HugeMap),
}

impl VmaKind {
    /// The kind of this VMA's pages moved by `delta` bytes (mremap): a file mapping's
    /// origin moves with them, so each page still maps the same file page.
    pub fn moved(self, delta: u64) -> VmaKind {
        match self {
            VmaKind::File(m) => VmaKind::File(FileMap {
                origin: m.origin.wrapping_add(delta),
                ..m
            }),
            other => other,
        }
    }

    /// The kind a fork's child gets: the same, but a private hugetlb mapping's
    /// reservation stays the parent's (Linux's `HPAGE_RESV_OWNER`).
    pub fn forked(&self) -> VmaKind {
        match self {
            VmaKind::Hugetlb(h) => VmaKind::Hugetlb(HugeMap {
                resv: None,
                ..h.clone()
            }),
            other => other.clone(),
        }
    }
}

/// Which pages a hugetlb VMA maps (`hugetlb::map`).
#[derive(Clone)]
pub struct HugeMap {
    pub size: HugeSize,
    /// The file whose pages it maps, by index from `origin`: every shared mapping's
    /// (all its mappers map them), a private mapping's of a hugetlb memfd (read until
    /// written, then copied).
    pub file: Option<Arc<HugeFile>>,
    /// MAP_SHARED: writes go to the file's pages.
    pub shared: bool,
    /// The address of the mapping's first page (where its file's page 0 is).
    pub origin: u64,
    /// Private, in the mapping process: its reservation.
    pub resv: Option<Arc<ResvMap>>,
}

impl HugeMap {
    /// Whether `other` is a piece of the same mapping.
    pub fn same_mapping(&self, other: &HugeMap) -> bool {
        let same_arc = |a: Option<&Arc<HugeFile>>, b: Option<&Arc<HugeFile>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        let same_resv = match (&self.resv, &other.resv) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        self.size == other.size
            && self.shared == other.shared
            && self.origin == other.origin
            && same_arc(self.file.as_ref(), other.file.as_ref())
            && same_resv
    }
}

impl PartialEq for HugeMap {
    fn eq(&self, other: &Self) -> bool {
        self.same_mapping(other)
    }
}

impl Eq for HugeMap {}

impl core::fmt::Debug for HugeMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "hugetlb {} kB at {:#x} ({})",
            self.size.kb(),
            self.origin,
            if self.shared { "shared" } else { "private" }
        )
    }
}

/// Which file a VMA maps, and how.
#[derive(Clone)]
pub struct FileMap {
    pub file: Arc<Shmem>,
    /// The address where the file's first byte would be: page `i` of the file is at
    /// `origin + i` pages. Absolute, so a split leaves it as it is (Linux keeps
    /// `vm_pgoff` per VMA and adjusts it); wrapping arithmetic, it may lie below 0.
    pub origin: u64,
    /// MAP_SHARED: writes go to the file; else private, copied on write.
    pub shared: bool,
}

impl FileMap {
    /// The file page index that `va` maps.
    pub fn index(&self, va: VirtAddr) -> u64 {
        va.as_u64().wrapping_sub(self.origin) / PAGE_SIZE as u64
    }

    /// The address of file page `index`.
    pub fn va_of(&self, index: u64) -> VirtAddr {
        VirtAddr(self.origin.wrapping_add(index * PAGE_SIZE as u64))
    }
}

impl PartialEq for FileMap {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
            && self.origin == other.origin
            && self.shared == other.shared
    }
}

impl Eq for FileMap {}

impl core::fmt::Debug for FileMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "file {} at {:#x} ({})",
            self.file.ino,
            self.origin,
            if self.shared { "shared" } else { "private" }
        )
    }
}

/// One mapped range `[start, end)`. Cloning one clones its file reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: VirtAddr,
    pub end: VirtAddr,
    pub prot: VmProt,
    pub huge: HugeHint,
    pub flags: VmaFlags,
    pub kind: VmaKind,
}

impl Vma {
    pub fn contains(&self, va: VirtAddr) -> bool {
        self.start <= va && va < self.end
    }

    /// The file this VMA maps, if any.
    pub fn file(&self) -> Option<&FileMap> {
        match &self.kind {
            VmaKind::File(m) => Some(m),
            _ => None,
        }
    }

    /// The hugetlb mapping this VMA is, if it is one.
    pub fn hugetlb(&self) -> Option<&HugeMap> {
        match &self.kind {
            VmaKind::Hugetlb(h) => Some(h),
            _ => None,
        }
    }

    /// Whether this VMA maps a file shared (MAP_SHARED, a shared hugetlb mapping too):
    /// its writable entries map the file's folios, which no copy-on-write separates.
    pub fn is_shared(&self) -> bool {
        self.file().is_some_and(|m| m.shared) || self.hugetlb().is_some_and(|h| h.shared)
    }

    /// Whether `next`, starting where `self` ends, can be merged into it.
    fn merges_with(&self, next: &Vma) -> bool {
        self.end == next.start
            && (self.prot, self.huge, self.flags) == (next.prot, next.huge, next.flags)
            && self.kind == next.kind
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaError {
    /// The new VMA would overlap an existing one.
    Overlap,
    /// Part of the range is not mapped.
    NotMapped,
}

impl VmaError {
    /// The Linux error: EEXIST (as MAP_FIXED_NOREPLACE), ENOMEM (as mprotect).
    pub fn errno(self) -> i32 {
        match self {
            Self::Overlap => EEXIST,
            Self::NotMapped => ENOMEM,
        }
    }
}

/// Most VMAs one address space may have (Linux's default `vm.max_map_count`): the
/// kernel memory a process can make the VMA set take is bounded by it.
pub const MAX_MAP_COUNT: usize = 65530;

/// The VMAs of one address space, ordered by start address.
#[derive(Debug, Default)]
pub struct VmaSet {
    map: BTreeMap<VirtAddr, Vma>,
}

fn assert_range(start: VirtAddr, end: VirtAddr) {
    assert!(
        start < end && start.is_aligned(PAGE_SIZE) && end.is_aligned(PAGE_SIZE),
        "VMA range {start:?}..{end:?} empty or not page-aligned"
    );
}

impl VmaSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The VMAs in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.map.values()
    }

    /// The VMA containing `va`.
    pub fn find(&self, va: VirtAddr) -> Option<&Vma> {
        self.map
            .range(..=va)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.contains(va))
    }

    /// The VMA containing `va`, else the first one above it.
    pub fn next_from(&self, va: VirtAddr) -> Option<&Vma> {
        self.find(va)
            .or_else(|| self.map.range(va..).next().map(|(_, v)| v))
    }

    /// Whether no VMA intersects `[start, end)`.
    pub fn is_free(&self, start: VirtAddr, end: VirtAddr) -> bool {
        assert_range(start, end);
        self.map
            .range(..end)
            .next_back()
            .is_none_or(|(_, v)| v.end <= start)
    }

    /// Whether every page of `[start, end)` belongs to some VMA.
    pub fn covers(&self, start: VirtAddr, end: VirtAddr) -> bool {
        assert_range(start, end);
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some(v) => at = v.end,
                None => return false,
            }
        }
        true
    }

    /// Adds `vma` (mmap), merged with the neighbours it touches if they are alike.
    pub fn insert(&mut self, vma: Vma) -> Result<(), VmaError> {
        if !self.is_free(vma.start, vma.end) {
            return Err(VmaError::Overlap);
        }
        let (start, end) = (vma.start, vma.end);
        self.map.insert(start, vma);
        self.merge_within(start, end);
        Ok(())
    }

    /// Unmaps `[start, end)` (munmap), splitting the VMAs cut at either end; returns how
    /// many pieces were removed. Holes in the range are allowed.
    pub fn remove(&mut self, start: VirtAddr, end: VirtAddr) -> usize {
        assert_range(start, end);
        self.split_at(start);
        self.split_at(end);
        let mut removed = 0;
        while let Some(s) = self.map.range(start..end).map(|(&s, _)| s).next() {
            self.map.remove(&s);
            removed += 1;
        }
        removed
    }

    /// Changes the protection of `[start, end)` (mprotect).
    pub fn protect(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        prot: VmProt,
    ) -> Result<(), VmaError> {
        self.update(start, end, |v| v.prot = prot)
    }

    /// Changes the huge-page advice of `[start, end)` (madvise).
    pub fn set_huge(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        hint: HugeHint,
    ) -> Result<(), VmaError> {
        self.update(start, end, |v| v.huge = hint)
    }

    /// Changes the flags of `[start, end)` (madvise, mlock).
    pub fn set_flags(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        change: impl Fn(&mut VmaFlags),
    ) -> Result<(), VmaError> {
        self.update(start, end, |v| change(&mut v.flags))
    }

    /// The highest `len`-byte gap that starts at a multiple of `align` and lies within
    /// `[above, below)`: Linux's top-down mmap placement (`vm_unmapped_area` with
    /// `VM_UNMAPPED_AREA_TOPDOWN`). An `align` of 2 MiB lets the range be backed by PMD
    /// folios, 64 KiB by contiguous blocks.
    pub fn find_free(
        &self,
        len: usize,
        align: usize,
        below: VirtAddr,
        above: VirtAddr,
    ) -> Option<VirtAddr> {
        assert!(len > 0 && len.is_multiple_of(PAGE_SIZE), "length {len:#x}");
        assert!(
            align >= PAGE_SIZE && align.is_power_of_two(),
            "align {align:#x}"
        );
        // Gaps from the top: each VMA below `below`, highest first, closes one.
        let mut gap_end = below.as_u64();
        for v in self.map.range(..below).rev().map(|(_, v)| v) {
            let gap_start = v.end.as_u64().max(above.as_u64());
            if let Some(va) = Self::fit(gap_start, gap_end, len, align) {
                return Some(va);
            }
            gap_end = gap_end.min(v.start.as_u64());
            if gap_end <= above.as_u64() {
                return None;
            }
        }
        Self::fit(above.as_u64(), gap_end, len, align)
    }

    /// The highest `align`-aligned start of `len` bytes inside `[gap_start, gap_end)`.
    fn fit(gap_start: u64, gap_end: u64, len: usize, align: usize) -> Option<VirtAddr> {
        let top = VirtAddr::new(gap_end.checked_sub(len as u64)?).align_down(align);
        (top.as_u64() >= gap_start).then_some(top)
    }

    /// mprotect/madvise: check the whole range is mapped, split at its ends, change every
    /// VMA inside, then merge what became alike.
    fn update(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        change: impl Fn(&mut Vma),
    ) -> Result<(), VmaError> {
        if !self.covers(start, end) {
            return Err(VmaError::NotMapped);
        }
        self.split_at(start);
        self.split_at(end);
        self.map.range_mut(start..end).for_each(|(_, v)| change(v));
        self.merge_within(start, end);
        Ok(())
    }

    /// Splits the VMA that strictly contains `va` into `[start, va)` and `[va, end)`.
    fn split_at(&mut self, va: VirtAddr) {
        let Some(v) = self.find(va).cloned().filter(|v| v.start != va) else {
            return;
        };
        self.map.get_mut(&v.start).expect("found above").end = va;
        self.map.insert(va, Vma { start: va, ..v });
    }

    /// Merges alike neighbours at every VMA boundary in `[start, end]`: the only places
    /// where an operation on `[start, end)` can have made two touching VMAs alike.
    fn merge_within(&mut self, start: VirtAddr, end: VirtAddr) {
        let starts: Vec<VirtAddr> = self.map.range(start..=end).map(|(&s, _)| s).collect();
        for s in starts {
            let Some((_, prev)) = self.map.range(..s).next_back() else {
                continue;
            };
            if prev.merges_with(&self.map[&s]) {
                let prev_start = prev.start;
                let next = self.map.remove(&s).expect("listed above");
                self.map.get_mut(&prev_start).expect("found above").end = next.end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::addr::PMD_SIZE;

    const P: u64 = PAGE_SIZE as u64;
    const RW: VmProt = VmProt::READ_WRITE;
    const R: VmProt = VmProt::READ;

    fn vma(start_page: u64, end_page: u64, prot: VmProt) -> Vma {
        Vma {
            start: VirtAddr::new(start_page * P),
            end: VirtAddr::new(end_page * P),
            prot,
            huge: HugeHint::Default,
            flags: VmaFlags::default(),
            kind: VmaKind::Anon,
        }
    }

    fn va(page: u64) -> VirtAddr {
        VirtAddr::new(page * P)
    }

    /// The set as (start page, end page, prot) triples.
    fn layout(set: &VmaSet) -> Vec<(u64, u64, VmProt)> {
        set.iter()
            .map(|v| (v.start.as_u64() / P, v.end.as_u64() / P, v.prot))
            .collect()
    }

    fn set_of(vmas: &[Vma]) -> VmaSet {
        let mut set = VmaSet::new();
        for v in vmas {
            set.insert(v.clone()).unwrap();
        }
        set
    }

    #[test]
    fn prot_from_linux_bits() {
        assert_eq!(VmProt::from_linux(0), Some(VmProt::NONE));
        assert_eq!(VmProt::from_linux(PROT_READ | PROT_WRITE), Some(RW));
        assert_eq!(VmProt::from_linux(7), Some(VmProt::new(true, true, true)));
        assert_eq!(VmProt::from_linux(0x8), None);
        assert_eq!(VmProt::from_linux(0x10), None); // PROT_BTI
        assert_eq!(VmProt::from_linux(1 << 40), None);
    }

    #[test]
    fn find_and_is_free() {
        let set = set_of(&[vma(10, 20, RW), vma(30, 31, R)]);
        assert_eq!(set.find(va(10)).unwrap().start, va(10));
        assert_eq!(set.find(VirtAddr::new(20 * P - 1)).unwrap().start, va(10));
        assert!(set.find(va(20)).is_none());
        assert!(set.find(va(9)).is_none());
        assert_eq!(set.find(va(30)).unwrap().prot, R);
        assert!(set.is_free(va(20), va(30)));
        assert!(set.is_free(va(0), va(10)));
        assert!(!set.is_free(va(19), va(21)));
        assert!(!set.is_free(va(0), va(100)));
        assert!(!set.is_free(va(30), va(31)));
    }

    #[test]
    fn insert_rejects_overlap_and_merges_alike_neighbours() {
        let mut set = set_of(&[vma(10, 20, RW)]);
        assert_eq!(set.insert(vma(15, 25, RW)), Err(VmaError::Overlap));
        assert_eq!(set.insert(vma(5, 11, RW)), Err(VmaError::Overlap));
        assert_eq!(set.insert(vma(30, 40, RW)), Ok(()));
        assert_eq!(set.len(), 2);
        // Filling the hole joins all three.
        set.insert(vma(20, 30, RW)).unwrap();
        assert_eq!(layout(&set), [(10, 40, RW)]);
        // Different protection, advice or kind: no merge.
        set.insert(vma(40, 41, R)).unwrap();
        set.insert(Vma {
            huge: HugeHint::Huge,
            ..vma(9, 10, RW)
        })
        .unwrap();
        set.insert(Vma {
            kind: VmaKind::Heap,
            ..vma(41, 42, R)
        })
        .unwrap();
        assert_eq!(set.len(), 4);
        // Not touching: no merge.
        set.insert(vma(50, 60, RW)).unwrap();
        assert_eq!(set.len(), 5);
    }

    #[test]
    fn munmap_middle_edges_and_whole() {
        let mut set = set_of(&[vma(10, 20, RW)]);
        assert_eq!(set.remove(va(14), va(16)), 1);
        assert_eq!(layout(&set), [(10, 14, RW), (16, 20, RW)]);
        assert_eq!(set.remove(va(10), va(11)), 1);
        assert_eq!(set.remove(va(19), va(20)), 1);
        assert_eq!(layout(&set), [(11, 14, RW), (16, 19, RW)]);
        // Mapping the hole back merges everything again.
        set.insert(vma(14, 16, RW)).unwrap();
        assert_eq!(layout(&set), [(11, 19, RW)]);
        assert_eq!(set.remove(va(11), va(19)), 1);
        assert!(set.is_empty());
    }

    #[test]
    fn munmap_across_several_vmas_and_holes() {
        let mut set = set_of(&[vma(10, 20, RW), vma(20, 30, R), vma(40, 50, RW)]);
        assert_eq!(set.remove(va(15), va(45)), 3);
        assert_eq!(layout(&set), [(10, 15, RW), (45, 50, RW)]);
        // A range with nothing in it removes nothing.
        assert_eq!(set.remove(va(20), va(40)), 0);
        assert!(set.remove(va(0), va(100)) == 2 && set.is_empty());
    }

    #[test]
    fn mprotect_middle_splits_in_three_and_undo_merges_back() {
        let mut set = set_of(&[vma(10, 20, RW)]);
        set.protect(va(12), va(15), R).unwrap();
        assert_eq!(layout(&set), [(10, 12, RW), (12, 15, R), (15, 20, RW)]);
        set.protect(va(12), va(15), RW).unwrap();
        assert_eq!(layout(&set), [(10, 20, RW)]);
    }

    #[test]
    fn mprotect_at_edges_merges_with_the_neighbour() {
        let mut set = set_of(&[vma(10, 20, RW), vma(20, 30, R)]);
        // The last pages of the RW VMA become R: they join the R VMA.
        set.protect(va(18), va(20), R).unwrap();
        assert_eq!(layout(&set), [(10, 18, RW), (18, 30, R)]);
        // The first page of the R VMA becomes RW: it joins the RW VMA.
        set.protect(va(18), va(19), RW).unwrap();
        assert_eq!(layout(&set), [(10, 19, RW), (19, 30, R)]);
        // Everything the same: one VMA.
        set.protect(va(10), va(30), R).unwrap();
        assert_eq!(layout(&set), [(10, 30, R)]);
    }

    #[test]
    fn mprotect_across_several_vmas() {
        let x = VmProt::READ_EXEC;
        let mut set = set_of(&[vma(10, 20, RW), vma(20, 30, R), vma(30, 40, x)]);
        set.protect(va(15), va(35), VmProt::NONE).unwrap();
        assert_eq!(
            layout(&set),
            [(10, 15, RW), (15, 35, VmProt::NONE), (35, 40, x)]
        );
    }

    #[test]
    fn mprotect_over_a_hole_fails_and_changes_nothing() {
        let mut set = set_of(&[vma(10, 20, RW), vma(21, 30, RW)]);
        let before = layout(&set);
        assert_eq!(set.protect(va(15), va(25), R), Err(VmaError::NotMapped));
        assert_eq!(set.protect(va(5), va(12), R), Err(VmaError::NotMapped));
        assert_eq!(set.protect(va(28), va(31), R), Err(VmaError::NotMapped));
        assert_eq!(
            set.set_huge(va(19), va(22), HugeHint::Huge),
            Err(VmaError::NotMapped)
        );
        assert_eq!(layout(&set), before);
        assert_eq!(VmaError::NotMapped.errno(), ENOMEM);
    }

    #[test]
    fn madvise_hugepage_splits_and_merges_like_mprotect() {
        let mut set = set_of(&[vma(0, 1024, RW)]);
        set.set_huge(va(512), va(1024), HugeHint::Huge).unwrap();
        let hints: Vec<_> = set.iter().map(|v| (v.start, v.huge)).collect();
        assert_eq!(
            hints,
            [(va(0), HugeHint::Default), (va(512), HugeHint::Huge)]
        );
        set.set_huge(va(0), va(512), HugeHint::Huge).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.find(va(0)).unwrap().huge, HugeHint::Huge);
    }

    #[test]
    fn madvise_dontfork_splits_and_dofork_merges_back() {
        let mut set = set_of(&[vma(0, 64, RW)]);
        set.set_flags(va(16), va(32), |f| f.dontcopy = true)
            .unwrap();
        let flags: Vec<_> = set.iter().map(|v| (v.start, v.flags.dontcopy)).collect();
        assert_eq!(flags, [(va(0), false), (va(16), true), (va(32), false)]);
        set.set_flags(va(16), va(32), |f| f.dontcopy = false)
            .unwrap();
        assert_eq!(layout(&set), [(0, 64, RW)]);
        assert_eq!(
            set.set_flags(va(60), va(70), |f| f.locked = true),
            Err(VmaError::NotMapped)
        );
        assert_eq!(layout(&set), [(0, 64, RW)]);
    }

    #[test]
    fn find_free_is_top_down_first_fit() {
        let set = set_of(&[vma(90, 100, RW), vma(50, 60, RW)]);
        // The highest gap below 100 pages that fits 10 pages: [80, 90).
        assert_eq!(
            set.find_free(10 * P as usize, PAGE_SIZE, va(100), va(0)),
            Some(va(80))
        );
        // 31 pages do not fit in [60, 90): the next gap down, [19, 50).
        assert_eq!(
            set.find_free(31 * P as usize, PAGE_SIZE, va(100), va(0)),
            Some(va(19))
        );
        // Nothing fits above 10 pages.
        assert_eq!(
            set.find_free(41 * P as usize, PAGE_SIZE, va(100), va(10)),
            None
        );
        // `below` inside a VMA: the gap under that VMA.
        assert_eq!(
            set.find_free(P as usize, PAGE_SIZE, va(95), va(0)),
            Some(va(89))
        );
        // Exactly filling a gap.
        assert_eq!(
            set.find_free(30 * P as usize, PAGE_SIZE, va(90), va(60)),
            Some(va(60))
        );
        let empty = VmaSet::new();
        assert_eq!(
            empty.find_free(PAGE_SIZE, PAGE_SIZE, va(1), va(0)),
            Some(va(0))
        );
        assert_eq!(
            empty.find_free(2 * PAGE_SIZE, PAGE_SIZE, va(1), va(0)),
            None
        );
    }

    #[test]
    fn find_free_with_pmd_alignment() {
        let pmd = PMD_SIZE as u64;
        let top = VirtAddr::new(0x40_0000_0000);
        // A VMA just under the top: the aligned slot is the 2 MiB below it.
        let set = set_of(&[Vma {
            start: VirtAddr::new(top.as_u64() - P),
            end: top,
            ..vma(0, 1, RW)
        }]);
        let got = set
            .find_free(PMD_SIZE, PMD_SIZE, top, VirtAddr::new(0))
            .unwrap();
        assert_eq!(got, VirtAddr::new(top.as_u64() - 2 * pmd));
        assert!(got.is_aligned(PMD_SIZE));
        // In quarters of 2 MiB from `base`: VMAs at [8q, 13q) and [19q, 32q) leave a
        // 3 MiB gap [13q, 19q) that holds no aligned 2 MiB, so the slot is under them.
        let base = 0x1000_0000;
        let q = |n: u64| VirtAddr::new(base + n * pmd / 4);
        let set = set_of(&[
            Vma {
                start: q(8),
                end: q(13),
                ..vma(0, 1, R)
            },
            Vma {
                start: q(19),
                end: q(32),
                ..vma(0, 1, RW)
            },
        ]);
        assert_eq!(set.find_free(PMD_SIZE, PMD_SIZE, q(32), q(0)), Some(q(4)));
        assert_eq!(
            set.find_free(2 * PMD_SIZE, PMD_SIZE, q(32), q(0)),
            Some(q(0))
        );
        assert_eq!(set.find_free(2 * PMD_SIZE, PMD_SIZE, q(32), q(1)), None);
        // 64 KiB alignment (a contiguous block) does fit in the 3 MiB gap, at its top.
        let cont = 16 * PAGE_SIZE;
        assert_eq!(
            set.find_free(PAGE_SIZE, cont, q(32), q(0)),
            Some(VirtAddr::new(q(19).as_u64() - cont as u64))
        );
    }

    #[test]
    #[should_panic(expected = "not page-aligned")]
    fn unaligned_range_is_a_bug() {
        set_of(&[]).remove(VirtAddr::new(0x1000), VirtAddr::new(0x1800));
    }
}
