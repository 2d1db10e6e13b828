//! What a hugetlb mapping holds beyond its VMAs (`map`): a private mapping's
//! reservation ([`ResvMap`]) and a shared mapping's pages ([`HugeFile`]). Both are
//! shared by the pieces a split makes of one mapping, and give back to the pool what
//! they still hold when the last piece goes.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::{pool, HugeSize};
use crate::mm::{PhysAddr, VirtAddr};
use crate::sync::SpinLock;

/// A private mapping's reservation, shared by the pieces a split makes of it: the
/// pages its owner may still fault in from the reserve (Linux's `resv_map` of a
/// private mapping). `consumed` holds the addresses of pages faulted in with a
/// reservation (at most the pages reserved, which the pool bounds).
pub struct ResvMap {
    size: HugeSize,
    inner: SpinLock<Resv>,
}

struct Resv {
    consumed: BTreeSet<VirtAddr>,
    /// Reserved in the pool, neither consumed nor given back.
    remaining: usize,
}

impl ResvMap {
    pub fn new(size: HugeSize, reserved: usize) -> Self {
        Self {
            size,
            inner: SpinLock::new(Resv {
                consumed: BTreeSet::new(),
                remaining: reserved,
            }),
        }
    }

    /// Whether the page at `base` is the first fault there and a reservation covers it
    /// (it is then consumed).
    pub fn consume(&self, base: VirtAddr) -> bool {
        let mut r = self.inner.lock();
        if r.remaining == 0 || r.consumed.contains(&base) {
            return false;
        }
        r.consumed.insert(base);
        r.remaining -= 1;
        true
    }

    /// `[start, end)` is unmapped: its pages never faulted in give their reservations
    /// back.
    pub fn release(&self, start: VirtAddr, end: VirtAddr) {
        let mut r = self.inner.lock();
        let pages = end.offset_from(start) / self.size.bytes();
        let used = r.consumed.range(start..end).count();
        let unused = (pages - used).min(r.remaining);
        r.remaining -= unused;
        let gone: Vec<VirtAddr> = r.consumed.range(start..end).copied().collect();
        for va in gone {
            r.consumed.remove(&va);
        }
        drop(r);
        pool(self.size).unreserve(unused);
    }
}

impl Drop for ResvMap {
    fn drop(&mut self) {
        let left = self.inner.get_mut().remaining;
        pool(self.size).unreserve(left);
    }
}

/// The pages of a shared mapping, by index: the object fork shares (Linux's hugetlbfs
/// inode behind `MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB`). Each page is a file folio
/// holding one reference for the file (`CACHED`); the last mapping gone, the file
/// puts them and gives back what it still has reserved.
pub struct HugeFile {
    size: HugeSize,
    inner: SpinLock<FilePages>,
    /// Drops the file's reference on a page (`map`'s, which knows folios: this file
    /// sits below them, as the VMA that holds it does).
    put: fn(PhysAddr),
}

struct FilePages {
    pages: BTreeMap<usize, PhysAddr>,
    /// Reserved in the pool for pages not made yet.
    reserved: usize,
}

impl HugeFile {
    /// A file of pages of `size`, none made yet, `reserved` of them reserved; `put`
    /// drops its reference on a page when it goes.
    pub fn new(size: HugeSize, reserved: usize, put: fn(PhysAddr)) -> Self {
        Self {
            size,
            inner: SpinLock::new(FilePages {
                pages: BTreeMap::new(),
                reserved,
            }),
            put,
        }
    }

    /// The page at `index`, made now if it is not there yet: a page from the pool
    /// (from the reserve while there is one) that `make` turns into the file's
    /// (zeroed, holding the file's reference); `None` when the pool has none to give.
    pub fn page(&self, index: usize, make: impl FnOnce(PhysAddr)) -> Option<PhysAddr> {
        let mut f = self.inner.lock();
        if let Some(&pa) = f.pages.get(&index) {
            return Some(pa);
        }
        let reserved = f.reserved > 0;
        let head = pool(self.size).take(reserved)?;
        f.reserved -= usize::from(reserved);
        make(head);
        f.pages.insert(index, head);
        Some(head)
    }
}

impl Drop for HugeFile {
    fn drop(&mut self) {
        let f = self.inner.get_mut();
        for (_, pa) in core::mem::take(&mut f.pages) {
            (self.put)(pa);
        }
        pool(self.size).unreserve(f.reserved);
    }
}
