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

/// A hugetlb file's pages, by index: the object behind `MAP_SHARED|MAP_ANONYMOUS|
/// MAP_HUGETLB` (which fork shares) and behind a `memfd_create(MFD_HUGETLB)` file
/// (Linux's hugetlbfs inode for both). Each page is a file folio holding one reference
/// for the file (`CACHED`); the last reference to the file gone, it puts them and
/// gives back what it still has reserved. Every page and every reservation is one of
/// the pool's, so what this holds is bounded by the pool, never by a length a user
/// passed.
pub struct HugeFile {
    /// Its inode number (reports, tests), from a range apart from `shmem`'s.
    pub ino: u64,
    size: HugeSize,
    inner: SpinLock<FilePages>,
    /// Drops the file's reference on a page (`map`'s, which knows folios: this file
    /// sits below them, as the VMA that holds it does).
    put: fn(PhysAddr),
}

/// The next hugetlb file's inode number.
static NEXT_INO: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1 << 48);

struct FilePages {
    pages: BTreeMap<usize, PhysAddr>,
    /// Indices reserved in the pool whose pages are not made yet (Linux's region
    /// map of a hugetlbfs inode).
    reserved: BTreeSet<usize>,
    /// The file's length in bytes, a multiple of the page size.
    len: u64,
}

impl HugeFile {
    /// An empty file of pages of `size`; `put` drops its reference on a page when it
    /// goes.
    pub fn new(size: HugeSize, put: fn(PhysAddr)) -> Self {
        Self {
            ino: NEXT_INO.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
            size,
            inner: SpinLock::new(FilePages {
                pages: BTreeMap::new(),
                reserved: BTreeSet::new(),
                len: 0,
            }),
            put,
        }
    }

    /// The size of its pages.
    pub fn page_size(&self) -> HugeSize {
        self.size
    }

    /// Its length in bytes.
    pub fn length(&self) -> u64 {
        self.inner.lock().len
    }

    /// Set its length to `len` bytes (a multiple of the page size), returning the
    /// pages cut off, which the caller unmaps everywhere and then gives to
    /// [`HugeFile::put_pages`]; the cut part's reservations go back to the pool.
    pub fn set_len(&self, len: u64) -> Vec<PhysAddr> {
        let keep = len.div_ceil(self.size.bytes() as u64) as usize;
        let mut f = self.inner.lock();
        f.len = len;
        let cut: Vec<PhysAddr> = f.pages.split_off(&keep).into_values().collect();
        let unreserved = f.reserved.split_off(&keep).len();
        drop(f);
        pool(self.size).unreserve(unreserved);
        cut
    }

    /// Take the pages of indices `[first, end)` out of the file (a punched hole),
    /// returning them for the caller to unmap everywhere and then give to
    /// [`HugeFile::put_pages`]; their reservations go back to the pool.
    pub fn take_range(&self, first: usize, end: usize) -> Vec<PhysAddr> {
        let mut f = self.inner.lock();
        let mut tail = f.pages.split_off(&first);
        let mut after = tail.split_off(&end);
        f.pages.append(&mut after);
        let mut rtail = f.reserved.split_off(&first);
        let mut rafter = rtail.split_off(&end);
        f.reserved.append(&mut rafter);
        drop(f);
        pool(self.size).unreserve(rtail.len());
        tail.into_values().collect()
    }

    /// Drop the file's reference on pages `set_len` cut off (now unmapped).
    pub fn put_pages(&self, pages: Vec<PhysAddr>) {
        for pa in pages {
            (self.put)(pa);
        }
    }

    /// Reserve in the pool the pages of indices `[first, first + n)` that are neither
    /// made nor reserved yet (Linux's `hugetlb_reserve_pages` on a shared mapping):
    /// ENOMEM when the pool is short, nothing reserved then.
    pub fn reserve(&self, first: usize, n: usize) -> Result<(), crate::uapi::Errno> {
        let end = first.saturating_add(n);
        let mut f = self.inner.lock();
        let have = f.pages.range(first..end).count() + f.reserved.range(first..end).count();
        let want = (end - first) - have;
        pool(self.size).reserve(want)?;
        // `want` pages fit in the pool, so the indices walked are bounded by it too.
        let mut i = first;
        let mut added = 0;
        while added < want {
            if !f.pages.contains_key(&i) && f.reserved.insert(i) {
                added += 1;
            }
            i += 1;
        }
        Ok(())
    }

    /// The page at `index` if it is made.
    pub fn get(&self, index: usize) -> Option<PhysAddr> {
        self.inner.lock().pages.get(&index).copied()
    }

    /// The page at `index`, made now if it is not there yet: a page from the pool
    /// (from the reserve if the index is reserved) that `make` turns into the file's
    /// (zeroed, holding the file's reference); `None` when the pool has none to give.
    pub fn page(&self, index: usize, make: impl FnOnce(PhysAddr)) -> Option<PhysAddr> {
        let mut f = self.inner.lock();
        if let Some(&pa) = f.pages.get(&index) {
            return Some(pa);
        }
        let reserved = f.reserved.contains(&index);
        let head = pool(self.size).take(reserved)?;
        f.reserved.remove(&index);
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
        pool(self.size).unreserve(f.reserved.len());
    }
}
