//! Shared memory: the files of the RAM file system (a memfd, the object behind a
//! `MAP_SHARED|MAP_ANONYMOUS` mapping) and their page cache: one map per file from a
//! page index to the folio that holds it, the folios allocated zeroed on first use at
//! the sizes `shmem_enabled` allows (Linux's `shmem_get_folio`), freed when the file is
//! truncated or goes away and no mapping holds them any more.
//!
//! A page-cache folio (`flags::FILE`) is not anonymous: no page of it is ever
//! anon-exclusive, since every process that maps the file shares it by design. A
//! shared mapping maps it writable (no copy-on-write, `fault`), a private one
//! read-only until a write copies the page into anonymous memory (`cow`: a file folio
//! is never reused, the cache's reference says someone else holds it). It is never
//! split, merged, collapsed or marked lazyfree, and a partial unmap does not queue it
//! for deferred split: its pages belong to the file, not to the mappings.
//!
//! Protocol (lock table row L3): a file's `cache` lock protects its size and its
//! folio map. Every folio in the map holds one reference and has `flags::CACHED`
//! set (both change under the folio's lock, taken inside the cache lock: L3 -> L5).
//! Whoever finds a folio in the map takes a reference before the cache lock goes, so
//! truncation may take the folio out (dropping the cache's reference) while a fault
//! maps it: the fault's reference keeps it alive, and the folio is freed when its
//! last mapping goes. Allocation and zeroing happen outside the lock; the insert
//! rechecks that the range is still free.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::folio::{self, Folio};
use super::machine::MmMachine;
use super::mthp::{self, HugeHint};
use super::{PhysAddr, PAGE_SIZE};
use crate::sync::IrqSpinLock;
use crate::uapi::{Errno, EEXIST, EFAULT, EFBIG, EINVAL, ENOMEM, EPERM};

const PAGE: u64 = PAGE_SIZE as u64;

/// Largest file size (Linux's MAX_LFS_FILESIZE on 64-bit).
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// Pages held by every file's page cache (/proc/meminfo `Shmem`).
pub static PAGES: AtomicI64 = AtomicI64::new(0);
/// Of those, the pages of 2 MiB folios (`ShmemHugePages`).
pub static PMD_PAGES: AtomicI64 = AtomicI64::new(0);
/// The next inode number.
static NEXT_INO: AtomicU64 = AtomicU64::new(1);

/// Folios in every file's index. The index is a B-tree on the kernel heap (8 MiB, about
/// 30 bytes a folio): past `MAX_FOLIOS` the page cache allocates no more (ENOMEM for
/// a write, an out-of-memory fault), so that no program can exhaust the heap (a panic)
/// by filling files with 4 KiB pages. Linux's xarray takes its nodes from the slab,
/// which can grow; this heap cannot.
static FOLIOS: AtomicU64 = AtomicU64::new(0);
/// The cap on `FOLIOS`: 64 Ki folios, 256 MiB of 4 KiB pages and 4 GiB of 64 KiB
/// folios, about 2 MiB of heap (host tests lower it).
pub static MAX_FOLIOS: AtomicU64 = AtomicU64::new(1 << 16);

/// File seals (fcntl F_ADD_SEALS; Linux's `F_SEAL_*`).
pub const F_SEAL_SEAL: u32 = 0x1;
pub const F_SEAL_SHRINK: u32 = 0x2;
pub const F_SEAL_GROW: u32 = 0x4;
pub const F_SEAL_WRITE: u32 = 0x8;
pub const F_SEAL_FUTURE_WRITE: u32 = 0x10;
pub const F_SEAL_EXEC: u32 = 0x20;
const F_ALL_SEALS: u32 =
    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;
/// The seals that forbid writing through write(2) and new writable shared mappings.
pub const WRITE_SEALS: u32 = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

/// A file of the RAM file system.
pub struct Shmem {
    /// Its inode number (fstat's `st_ino`).
    pub ino: u64,
    /// What /proc/PID/maps names it by: `/dev/zero` for shared anonymous memory,
    /// `/memfd:NAME` for a memfd.
    pub name: String,
    cache: IrqSpinLock<Cache>,
    /// Its seals: `F_SEAL_SEAL` from the start (no more may be added), as every
    /// shmem file, unless memfd_create was asked for sealing (`allow_sealing`).
    seals: AtomicU32,
}

struct Cache {
    /// The file's size in bytes.
    size: u64,
    /// The index of each folio's first page in the file -> the folio's head.
    folios: BTreeMap<u64, PhysAddr>,
}

impl Cache {
    /// The folio holding page `index`, and the index of its first page.
    fn find(&self, index: u64) -> Option<(u64, PhysAddr)> {
        let (&first, &head) = self.folios.range(..=index).next_back()?;
        (index < first + Folio::of(head).nr_pages() as u64).then_some((first, head))
    }

    /// Whether no folio holds a page of `[first, first + n)`.
    fn is_free(&self, first: u64, n: u64) -> bool {
        self.find(first).is_none() && self.folios.range(first..first + n).next().is_none()
    }
}

/// A folio of the cache found or allocated for a caller, with a reference of its own.
pub struct Held {
    pub folio: Folio,
    /// The file page index of the folio's first page.
    pub first: u64,
}

impl Shmem {
    /// An empty file of `size` bytes, named by `name(its inode number)`.
    pub fn new(name: impl FnOnce(u64) -> String, size: u64) -> Arc<Shmem> {
        let ino = NEXT_INO.fetch_add(1, Ordering::Relaxed);
        Arc::new(Shmem {
            ino,
            name: name(ino),
            seals: AtomicU32::new(F_SEAL_SEAL),
            cache: IrqSpinLock::new(Cache {
                size,
                folios: BTreeMap::new(),
            }),
        })
    }

    pub fn size(&self) -> u64 {
        self.cache.lock().size
    }

    /// memfd_create(MFD_ALLOW_SEALING): seals may be added.
    pub fn allow_sealing(&self) {
        self.seals.fetch_and(!F_SEAL_SEAL, Ordering::Relaxed);
    }

    pub fn seals(&self) -> u32 {
        self.seals.load(Ordering::Acquire)
    }

    /// F_ADD_SEALS, after the caller's checks of the descriptor and, for F_SEAL_WRITE,
    /// of the file's shared mappings (there must be none): EINVAL for an unknown seal,
    /// EPERM once F_SEAL_SEAL is set. F_SEAL_EXEC on a file with execute permission
    /// (every memfd here is 0777) implies the other seals but F_SEAL_SEAL, as Linux.
    pub fn add_seals(&self, seals: u32) -> Result<(), Errno> {
        if seals & !F_ALL_SEALS != 0 {
            return Err(EINVAL);
        }
        // Under the cache lock: a write, ftruncate or fallocate sees the seals before
        // or after, never half.
        let _c = self.cache.lock();
        if self.seals() & F_SEAL_SEAL != 0 {
            return Err(EPERM);
        }
        let implied = if seals & F_SEAL_EXEC != 0 {
            F_SEAL_SHRINK | F_SEAL_GROW | WRITE_SEALS
        } else {
            0
        };
        self.seals.fetch_or(seals | implied, Ordering::Release);
        Ok(())
    }

    /// Pages of the file held in memory.
    pub fn resident_pages(&self) -> u64 {
        let c = self.cache.lock();
        c.folios
            .values()
            .map(|&h| Folio::of(h).nr_pages() as u64)
            .sum()
    }

    /// The folio holding page `index` if the file has one, with a reference for the
    /// caller.
    pub fn lookup(&self, index: u64) -> Option<Held> {
        let c = self.cache.lock();
        let (first, head) = c.find(index)?;
        let f = Folio::lock(head);
        f.get();
        Some(Held { folio: *f, first })
    }

    /// The folio holding page `index`, allocated zeroed if the file has none there,
    /// with a reference for the caller: the largest of the `orders` (a mask, as
    /// `mthp`'s) whose aligned range holds no folio yet, else a page (Linux's
    /// `shmem_alloc_and_add_folio` falling back order by order). `None` when no
    /// memory is left for a page.
    pub fn get<E: MmMachine>(&self, env: &E, index: u64, orders: u16) -> Option<Held> {
        loop {
            let candidates = {
                let c = self.cache.lock();
                if let Some((first, head)) = c.find(index) {
                    let f = Folio::lock(head);
                    f.get();
                    return Some(Held { folio: *f, first });
                }
                mthp::MTHP_ORDERS
                    .rev()
                    .filter(|&o| orders & 1 << o != 0)
                    .filter(|&o| {
                        let n = 1u64 << o;
                        c.is_free(index & !(n - 1), n)
                    })
                    .fold(1u16, |mask, o| mask | 1 << o)
            };
            if FOLIOS.load(Ordering::Relaxed) >= MAX_FOLIOS.load(Ordering::Relaxed) {
                return None;
            }
            let (f, order) = alloc_largest(env, candidates)?;
            match self.add(f, index, order) {
                Some(held) => return Some(held),
                // Another CPU filled part of the range meanwhile: start over.
                None => continue,
            }
        }
    }

    /// Put the new folio `f` of `order` in the cache around page `index`, if that
    /// range is still free (else it is freed: `None`); the caller's reference.
    fn add(&self, f: Folio, index: u64, order: usize) -> Option<Held> {
        let n = 1u64 << order;
        let first = index & !(n - 1);
        let mut c = self.cache.lock();
        if !c.is_free(first, n) {
            drop(c);
            drop(Folio::lock(f.head()).put(1));
            return None;
        }
        c.folios.insert(first, f.head());
        FOLIOS.fetch_add(1, Ordering::Relaxed);
        let locked = Folio::lock(f.head());
        locked.set_cached(true);
        // The allocation's reference becomes the cache's; one more for the caller.
        locked.get();
        PAGES.fetch_add(n as i64, Ordering::Relaxed);
        if order == mthp::PMD_ORDER {
            PMD_PAGES.fetch_add(n as i64, Ordering::Relaxed);
        }
        Some(Held { folio: f, first })
    }

    /// A new page at `index`, filled by `fill` (its frame) before anyone can see it,
    /// for UFFDIO_COPY and UFFDIO_ZEROPAGE into a shared mapping (Linux's
    /// `shmem_mfill_atomic_pte`): EFAULT past the end of the file, EEXIST if the file
    /// has a page there, ENOMEM if none can be had; the caller's reference.
    pub fn add_filled<E: MmMachine>(
        &self,
        env: &E,
        index: u64,
        fill: impl FnOnce(PhysAddr),
    ) -> Result<Held, Errno> {
        if index >= self.size().div_ceil(PAGE_SIZE as u64) {
            return Err(EFAULT);
        }
        if self.cache.lock().find(index).is_some() {
            return Err(EEXIST);
        }
        if FOLIOS.load(Ordering::Relaxed) >= MAX_FOLIOS.load(Ordering::Relaxed) {
            return Err(ENOMEM);
        }
        let (f, order) = alloc_largest(env, 1).ok_or(ENOMEM)?;
        fill(f.head());
        self.add(f, index, order).ok_or(EEXIST)
    }

    /// ftruncate: set the size. Folios wholly past the new end leave the cache (their
    /// mappings keep them until unmapped); the part of the folio the end cuts beyond
    /// it is zeroed, so growing the file again reads zeros there, as Linux.
    pub fn set_size<E: MmMachine>(&self, env: &E, size: u64) -> Result<(), Errno> {
        if size > MAX_SIZE {
            return Err(EFBIG);
        }
        let mut c = self.cache.lock();
        let seals = self.seals();
        let refused = if size < c.size {
            F_SEAL_SHRINK
        } else {
            F_SEAL_GROW
        };
        if size != c.size && seals & refused != 0 {
            return Err(EPERM);
        }
        let old = core::mem::replace(&mut c.size, size);
        if size >= old {
            return Ok(());
        }
        let keep = size.div_ceil(PAGE);
        // The folio holding the new last byte keeps its pages; what lies past the end
        // in it reads as zeros from now on.
        if let Some((first, head)) = keep.checked_sub(1).and_then(|last| c.find(last)) {
            let end = (first + Folio::of(head).nr_pages() as u64) * PAGE;
            zero_bytes(env, head, size - first * PAGE, end - size);
        }
        let gone: alloc::vec::Vec<u64> = c.folios.range(keep..).map(|(&i, _)| i).collect();
        for i in gone {
            let head = c.folios.remove(&i).expect("listed above");
            uncache(head);
        }
        Ok(())
    }

    /// fallocate(FALLOC_FL_PUNCH_HOLE) and MADV_REMOVE: the bytes of `[off, off + len)`
    /// read as zeros from now on, the size unchanged. Folios wholly inside leave the
    /// cache (their mappings keep them until the caller unmaps the pages, as for
    /// truncation); in a folio the range cuts only the covered bytes are zeroed (it keeps
    /// its pages: no split of a file folio here, Linux's shmem splits and frees what it
    /// can). EPERM under a write seal. Returns the file pages `[first, end)` whose
    /// mappings the caller must unmap (`Mm::unmap_file_range`).
    pub fn punch<E: MmMachine>(&self, env: &E, off: u64, len: u64) -> Result<(u64, u64), Errno> {
        if self.seals() & WRITE_SEALS != 0 {
            return Err(EPERM);
        }
        let end = off.saturating_add(len);
        let c = self.cache.lock();
        let end = end.min(c.size.max(off));
        let (first_page, end_page) = (off / PAGE, end.div_ceil(PAGE));
        // One folio at a time from the one holding the first page (no list kept: the
        // range may span the whole cache).
        let mut cursor = c.find(first_page).map_or(first_page, |(first, _)| first);
        let mut c = c;
        while cursor < end_page {
            let Some((&first, &head)) = c.folios.range(cursor..end_page).next() else {
                break;
            };
            let n = Folio::of(head).nr_pages() as u64;
            cursor = first + n;
            let (from, to) = (first * PAGE, (first + n) * PAGE);
            if off <= from && to <= end {
                c.folios.remove(&first);
                uncache(head);
            } else {
                let (a, b) = (off.max(from), end.min(to));
                zero_bytes(env, head, a - from, b - a);
            }
        }
        drop(c);
        Ok((off.div_ceil(PAGE), end / PAGE))
    }

    /// fallocate: allocate the pages of `[off, off + len)` (zeroed where the file had
    /// none) and, unless `keep_size`, grow the file to cover them. EFBIG past the
    /// largest size; ENOMEM when memory runs out (what was allocated stays, the size
    /// does not change).
    pub fn allocate<E: MmMachine>(
        &self,
        env: &E,
        off: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<(), Errno> {
        let end = off
            .checked_add(len)
            .filter(|&e| e <= MAX_SIZE)
            .ok_or(EFBIG)?;
        if self.seals() & F_SEAL_GROW != 0 && end > self.size() {
            return Err(EPERM);
        }
        let mut index = off / PAGE;
        while index * PAGE < end {
            let orders = allowed_orders(HugeHint::Default, end.max(self.size()), index);
            let h = self.get(env, index, orders).ok_or(ENOMEM)?;
            index = h.first + h.folio.nr_pages() as u64;
            drop(Folio::lock(h.folio.head()).put(1));
        }
        if !keep_size {
            let mut c = self.cache.lock();
            c.size = c.size.max(end);
        }
        Ok(())
    }

    /// Copy from the file at byte `off` into `buf`, up to its size: holes read as
    /// zeros. Returns the bytes copied.
    pub fn read<E: MmMachine>(&self, env: &E, off: u64, buf: &mut [u8]) -> usize {
        let size = self.size();
        if off >= size {
            return 0;
        }
        let len = buf.len().min((size - off) as usize);
        let mut done = 0;
        while done < len {
            let at = off + done as u64;
            let in_page = (at % PAGE) as usize;
            let n = (PAGE_SIZE - in_page).min(len - done);
            let out = &mut buf[done..done + n];
            match self.lookup(at / PAGE) {
                Some(h) => {
                    env.read_page(page_of(&h, at / PAGE).add(in_page), out);
                    drop(Folio::lock(h.folio.head()).put(1));
                }
                None => out.fill(0),
            }
            done += n;
        }
        len
    }

    /// Copy `data` into the file at byte `off`, growing it to cover what was written:
    /// EFBIG past the largest size, ENOMEM when no page can be had (and nothing was
    /// written). Returns the bytes written.
    pub fn write<E: MmMachine>(&self, env: &E, off: u64, data: &[u8]) -> Result<usize, Errno> {
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_SIZE)
            .ok_or(EFBIG)?;
        let seals = self.seals();
        if seals & WRITE_SEALS != 0 || (seals & F_SEAL_GROW != 0 && end > self.size()) {
            return Err(EPERM);
        }
        let mut done = 0;
        while done < data.len() {
            let at = off + done as u64;
            let in_page = (at % PAGE) as usize;
            let n = (PAGE_SIZE - in_page).min(data.len() - done);
            let orders = allowed_orders(HugeHint::Default, end.max(self.size()), at / PAGE);
            let Some(h) = self.get(env, at / PAGE, orders) else {
                break;
            };
            env.write_page(page_of(&h, at / PAGE).add(in_page), &data[done..done + n]);
            drop(Folio::lock(h.folio.head()).put(1));
            done += n;
            let mut c = self.cache.lock();
            c.size = c.size.max(at + n as u64);
        }
        if done == 0 && !data.is_empty() {
            return Err(ENOMEM);
        }
        Ok(done)
    }
}

impl Drop for Shmem {
    /// The last descriptor and mapping are gone: the cache gives its folios back.
    fn drop(&mut self) {
        let c = &mut *self.cache.lock();
        for (_, head) in core::mem::take(&mut c.folios) {
            uncache(head);
        }
    }
}

/// The frame of file page `index` in the held folio.
pub fn page_of(h: &Held, index: u64) -> PhysAddr {
    h.folio.page((index - h.first) as usize)
}

/// Take the folio at `head` out of its cache (the cache lock is held, or the file is
/// going away): clear its mark and drop the cache's reference.
fn uncache(head: PhysAddr) {
    FOLIOS.fetch_sub(1, Ordering::Relaxed);
    let f = Folio::lock(head);
    let n = f.nr_pages() as i64;
    PAGES.fetch_sub(n, Ordering::Relaxed);
    if f.order() == mthp::PMD_ORDER {
        PMD_PAGES.fetch_sub(n, Ordering::Relaxed);
    }
    f.set_cached(false);
    drop(f.put(1));
}

/// Zero `len` bytes of the folio at `head` from byte `from` of it.
fn zero_bytes<E: MmMachine>(env: &E, head: PhysAddr, from: u64, len: u64) {
    const ZEROS: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
    let mut at = from;
    while at < from + len {
        let n = (PAGE - at % PAGE).min(from + len - at) as usize;
        env.write_page(head.add(at as usize), &ZEROS[..n]);
        at += n as u64;
    }
}

/// A zeroed file folio of the largest order in `orders` (bit 0 always set: a page)
/// that can be had, counting per size as Linux's `shmem_alloc` and `shmem_fallback`.
fn alloc_largest<E: MmMachine>(env: &E, orders: u16) -> Option<(Folio, usize)> {
    for order in (1..=mthp::PMD_ORDER)
        .rev()
        .filter(|&o| orders & 1 << o != 0)
    {
        let s = mthp::stats(order);
        if let Some(f) = folio::alloc_file(env, order) {
            s.shmem_alloc.fetch_add(1, Ordering::Relaxed);
            return Some((f, order));
        }
        s.shmem_fallback.fetch_add(1, Ordering::Relaxed);
    }
    folio::alloc_file(env, 0).map(|f| (f, 0))
}

/// The folio orders (a mask) the page cache may allocate for page `index` of a file
/// of `size` bytes mapped with `hint` (`HugeHint::Default` for read and write): each
/// size's `hugepages-<N>kB/shmem_enabled`, `inherit` taking the top-level
/// `shmem_enabled`, with Linux's meanings (`within_size`: only a folio that ends
/// inside the file; `advise`: only under MADV_HUGEPAGE; `deny` and `force` override
/// every size). Linux 6.12 applies the per-size files to anonymous shared memory only
/// and gives memfd and tmpfs files 2 MiB folios or pages (large folios for them came
/// in 6.14); here every file follows them.
pub fn allowed_orders(hint: HugeHint, size: u64, index: u64) -> u16 {
    use mthp::ShmemSetting as S;
    if hint == HugeHint::NoHuge {
        return 0;
    }
    let top = mthp::shmem_top();
    let mut mask = 0;
    for order in mthp::MTHP_ORDERS {
        let setting = match mthp::shmem_size(order) {
            S::Inherit => match top {
                S::Deny => S::Never,
                S::Force => S::Always,
                other => other,
            },
            other => other,
        };
        let ok = match (top, setting) {
            (S::Deny, _) => false,
            (S::Force, _) => true,
            (_, S::Always) => true,
            (_, S::WithinSize) => {
                let n = 1u64 << order;
                ((index & !(n - 1)) + n).saturating_mul(PAGE) <= size.next_multiple_of(PAGE)
            }
            (_, S::Advise) => hint == HugeHint::Huge,
            _ => false,
        };
        if ok {
            mask |= 1 << order;
        }
    }
    mask
}
