//! hugetlb pools: pages of a fixed size set aside for `MAP_HUGETLB` mappings, one pool
//! per size arm64 Linux offers with a 4 KiB granule that this machine can hold:
//!
//! | size | order | how a page is mapped |
//! |---|---|---|
//! | 64 KiB | 4 | 16 level-3 entries with the Contiguous bit (`pgtable::contpte`) |
//! | 2 MiB | 9 | one level-2 block (`pgtable::pmd`) |
//! | 32 MiB | 13 | 16 level-2 blocks with the Contiguous bit |
//!
//! Linux's fourth size, 1 GiB (a level-1 block), is left out: the machine has 1 GiB of
//! RAM, so no naturally aligned 1 GiB run of free frames can exist beside the kernel.
//!
//! The counters are Linux's (`struct hstate`), with its rules: `nr` pages in the pool,
//! of which `surplus` were taken beyond the persistent size to honour a reservation
//! under `nr_overcommit_hugepages` and go back to the allocator when freed; `free`
//! pages not mapped; `resv` of the free ones promised to mappings (a reservation is
//! taken at mmap, so a short pool is ENOMEM there rather than SIGBUS at a fault).
//! Writing `nr_hugepages` sets the persistent size (`set_max_huge_pages`): surplus
//! pages become persistent first, then pages come from the frame allocator (a
//! naturally aligned block of the page's order: the allocator keeps blocks up to
//! 32 MiB, `frame::MAX_POOL_ORDER`) until it has none, which is no error; shrinking
//! gives free unreserved pages back and turns what is still in use into surplus.
//!
//! Files: `/sys/kernel/mm/hugepages/hugepages-<N>kB/{nr_hugepages, free_hugepages,
//! resv_hugepages, surplus_hugepages, nr_overcommit_hugepages}`, the default size's
//! `/proc/sys/vm/nr_hugepages` and `nr_overcommit_hugepages`, and the `HugePages_*`,
//! `Hugepagesize` and `Hugetlb` lines of /proc/meminfo (`fs::hugetlb`). The boot line's
//! `hugepagesz=`, `hugepages=` and `default_hugepagesz=` are read as Linux reads them
//! ([`configure`]); what Linux warns about is warned about and ignored.
//!
//! Each pool's lock is row L7 of the lock table (`mm`): taken under an `Mm` lock,
//! it takes the frame allocator (L9). The free list is a vector on the kernel heap, as
//! long as the pool's free pages (at most 16 Ki entries for 64 KiB pages in 1 GiB);
//! growing it is fallible, so a full heap stops the pool growing, softly.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

pub mod map;
pub mod resv;

use super::addr::PAGE_SHIFT;
use super::frame::frames;
use super::PhysAddr;
use crate::cmdline::CmdLine;
use crate::sync::SpinLock;
use crate::uapi::{Errno, EINVAL, ENOMEM};

/// A hugetlb page size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugeSize {
    /// Frames per page, as a power of two.
    pub order: usize,
}

impl HugeSize {
    pub const fn bytes(self) -> usize {
        1 << (self.order + PAGE_SHIFT)
    }

    pub const fn kb(self) -> usize {
        self.bytes() >> 10
    }

    /// Index into [`SIZES`].
    fn index(self) -> usize {
        SIZES
            .iter()
            .position(|s| *s == self)
            .expect("a size of SIZES")
    }
}

/// Every size with a pool, smallest first.
pub const SIZES: [HugeSize; 3] = [
    HugeSize { order: 4 },
    HugeSize { order: 9 },
    HugeSize { order: 13 },
];

/// Linux's default hugetlb size on arm64 with a 4 KiB granule (a PMD): index into
/// [`SIZES`].
const PMD_INDEX: usize = 1;

/// The size `MAP_HUGETLB` without a size, `SHM_HUGETLB` and the /proc files mean.
static DEFAULT: AtomicUsize = AtomicUsize::new(PMD_INDEX);

/// The size `bytes` long, if it has a pool.
pub fn size_of_bytes(bytes: u64) -> Option<HugeSize> {
    SIZES.into_iter().find(|s| s.bytes() as u64 == bytes)
}

/// The default size (`default_hugepagesz=`, else 2 MiB).
pub fn default_size() -> HugeSize {
    SIZES[DEFAULT.load(Ordering::Relaxed)]
}

/// Whether pages of `size` are gigantic (above the buddy allocator's folio orders):
/// Linux neither overcommits them nor allocates them as surplus.
fn is_gigantic(size: HugeSize) -> bool {
    size.order > super::frame::MAX_ORDER
}

/// One size's pool, Linux's `struct hstate` counters.
pub struct Pool {
    size: HugeSize,
    /// Heads of the free pages.
    free: Vec<PhysAddr>,
    nr: usize,
    resv: usize,
    surplus: usize,
    overcommit: usize,
}

/// The figures of a pool, as its sysfs files show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub nr: usize,
    pub free: usize,
    pub resv: usize,
    pub surplus: usize,
    pub overcommit: usize,
}

impl Pool {
    const fn new(size: HugeSize) -> Self {
        Self {
            size,
            free: Vec::new(),
            nr: 0,
            resv: 0,
            surplus: 0,
            overcommit: 0,
        }
    }

    pub fn figures(&self) -> Figures {
        Figures {
            nr: self.nr,
            free: self.free.len(),
            resv: self.resv,
            surplus: self.surplus,
            overcommit: self.overcommit,
        }
    }

    fn persistent(&self) -> usize {
        self.nr - self.surplus
    }

    /// One more page from the frame allocator onto the free list; false when the
    /// allocator (or the heap, for the list) has none.
    fn grow(&mut self) -> bool {
        if self.free.try_reserve(1).is_err() {
            return false;
        }
        let Some(pa) = frames().alloc(self.size.order) else {
            return false;
        };
        self.free.push(pa);
        self.nr += 1;
        true
    }

    /// A free page back to the frame allocator.
    fn shrink(&mut self) {
        let pa = self.free.pop().expect("shrink of a pool with a free page");
        frames().free(pa, self.size.order);
        self.nr -= 1;
    }

    /// Linux's `set_max_huge_pages`: make the persistent size `count`, as far as memory
    /// allows growing and the pages in use or reserved allow shrinking.
    pub fn set_persistent(&mut self, count: usize) {
        while self.surplus > 0 && self.persistent() < count {
            self.surplus -= 1;
        }
        while self.persistent() < count && self.grow() {}
        let keep = count.max(self.resv + self.nr - self.free.len());
        while self.persistent() > keep && self.free.len() > self.resv {
            self.shrink();
        }
        // What is in use or reserved beyond `count` stays, as surplus.
        while self.persistent() > count {
            self.surplus += 1;
        }
    }

    /// `nr_overcommit_hugepages`: EINVAL for gigantic pages, as Linux.
    pub fn set_overcommit(&mut self, n: usize) -> Result<(), Errno> {
        if is_gigantic(self.size) {
            return Err(EINVAL);
        }
        self.overcommit = n;
        Ok(())
    }

    /// Reserve `n` free pages for a mapping (Linux's `hugetlb_acct_memory`): surplus
    /// pages are allocated for what the free ones lack, within the overcommit limit.
    /// ENOMEM, with nothing reserved, when that cannot be done.
    pub fn reserve(&mut self, n: usize) -> Result<(), Errno> {
        let unreserved = self.free.len() - self.resv;
        if n > unreserved {
            let need = n - unreserved;
            if is_gigantic(self.size) || self.surplus + need > self.overcommit {
                return Err(ENOMEM);
            }
            for _ in 0..need {
                if !self.grow() {
                    self.return_unused_surplus();
                    return Err(ENOMEM);
                }
                self.surplus += 1;
            }
        }
        self.resv += n;
        Ok(())
    }

    /// Give back `n` reserved pages no mapping will take (an unmap before the fault).
    pub fn unreserve(&mut self, n: usize) {
        assert!(
            n <= self.resv,
            "unreserve of {n} pages, {} reserved",
            self.resv
        );
        self.resv -= n;
        self.return_unused_surplus();
    }

    /// Surplus pages that are free and unreserved go back to the frame allocator.
    fn return_unused_surplus(&mut self) {
        while self.surplus > 0 && self.free.len() > self.resv {
            self.shrink();
            self.surplus -= 1;
        }
    }

    /// A free page for a fault: a reserved one (`reserved`), else one that is neither
    /// reserved nor beyond the overcommit limit. Not zeroed.
    pub fn take(&mut self, reserved: bool) -> Option<PhysAddr> {
        if reserved {
            assert!(
                self.resv > 0,
                "a reserved hugetlb page taken, none reserved"
            );
            self.resv -= 1;
        } else if self.free.len() == self.resv {
            if is_gigantic(self.size) || self.surplus >= self.overcommit || !self.grow() {
                return None;
            }
            self.surplus += 1;
        }
        self.free.pop()
    }

    /// A page no mapping holds any more (Linux's `free_huge_folio`): back to the free
    /// list, or to the frame allocator if the pool has surplus pages.
    pub fn give_back(&mut self, pa: PhysAddr) {
        self.free.push(pa);
        if self.surplus > 0 {
            self.shrink();
            self.surplus -= 1;
        }
    }
}

static POOLS: [SpinLock<Pool>; 3] = [
    SpinLock::new(Pool::new(SIZES[0])),
    SpinLock::new(Pool::new(SIZES[1])),
    SpinLock::new(Pool::new(SIZES[2])),
];

/// The pool of `size` (row L7 of the lock table).
pub fn pool(size: HugeSize) -> spin::MutexGuard<'static, Pool> {
    POOLS[size.index()].lock()
}

/// Frames on the pools' free lists: handed out by the frame allocator but free for
/// user memory, which the shutdown check counts as returned.
pub fn free_frames() -> usize {
    SIZES.iter().map(|&s| pool(s).free.len() << s.order).sum()
}

/// Host tests: empty every pool (the frames come back with the machine).
#[cfg(test)]
pub fn forget_pools() {
    for s in SIZES {
        *pool(s) = Pool::new(s);
    }
    DEFAULT.store(PMD_INDEX, Ordering::Relaxed);
}

/// What the boot line asked for, in Linux's terms: a count per size, and which size is
/// the default.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BootRequest {
    pub counts: [Option<usize>; 3],
    pub default: Option<usize>,
}

/// Read `hugepagesz=`, `hugepages=` and `default_hugepagesz=` in order, as Linux's
/// `hugepagesz_setup`, `hugepages_setup` and `default_hugepagesz_setup` do: a
/// `hugepages=` counts pages of the `hugepagesz=` before it (the default size if none
/// came before); an unsupported size, a count that follows one, a size or count given
/// twice are warned about (`warn`, in Linux's words) and ignored.
pub fn parse_boot(
    cmd: &CmdLine<'_>,
    mut warn: impl FnMut(core::fmt::Arguments<'_>),
) -> BootRequest {
    let mut p = BootParse {
        req: BootRequest::default(),
        target: None,
        valid: true,
        last: None,
        default_count: None,
        seen: [false; 3],
    };
    for (key, value) in cmd.words() {
        let v = value.unwrap_or("");
        match key {
            "hugepagesz" => p.size(v, &mut warn),
            "hugepages" => p.count(v, &mut warn),
            "default_hugepagesz" => p.default_size(v, &mut warn),
            _ => {}
        }
    }
    if let Some(n) = p.default_count {
        let i = p.req.default.unwrap_or(PMD_INDEX);
        p.req.counts[i].get_or_insert(n);
    }
    p.req
}

/// `parse_boot`'s state between words.
struct BootParse {
    req: BootRequest,
    /// Where a `hugepages=` goes: `None` the default size; `Some(i)` SIZES[i].
    target: Option<usize>,
    /// Whether the last `hugepagesz=` named a size a count may follow.
    valid: bool,
    /// The target of the last `hugepages=`.
    last: Option<Option<usize>>,
    default_count: Option<usize>,
    /// Sizes named so far.
    seen: [bool; 3],
}

impl BootParse {
    fn size(&mut self, v: &str, warn: &mut impl FnMut(core::fmt::Arguments<'_>)) {
        match size_of_bytes(crate::cmdline::memparse(v)) {
            None => {
                warn(format_args!("HugeTLB: unsupported hugepagesz={v}"));
                self.valid = false;
            }
            Some(s) if self.seen[s.index()] => {
                warn(format_args!(
                    "HugeTLB: hugepagesz={v} specified twice, ignoring"
                ));
                self.valid = false;
            }
            Some(s) => {
                self.seen[s.index()] = true;
                self.target = Some(s.index());
                self.valid = true;
            }
        }
    }

    fn count(&mut self, v: &str, warn: &mut impl FnMut(core::fmt::Arguments<'_>)) {
        if !self.valid {
            warn(format_args!(
                "HugeTLB: hugepages={v} does not follow a valid hugepagesz, ignoring"
            ));
            self.valid = true;
            return;
        }
        if self.last == Some(self.target) {
            warn(format_args!("HugeTLB: hugepages= specified twice without interleaving hugepagesz=, ignoring hugepages={v}"));
            return;
        }
        self.last = Some(self.target);
        // simple_strtoul: the leading digits, 0 if none.
        let digits = v.bytes().take_while(u8::is_ascii_digit).count();
        let n = v[..digits].parse::<usize>().unwrap_or(usize::MAX);
        match self.target {
            None => self.default_count = Some(n),
            Some(i) => self.req.counts[i] = Some(n),
        }
    }

    fn default_size(&mut self, v: &str, warn: &mut impl FnMut(core::fmt::Arguments<'_>)) {
        match size_of_bytes(crate::cmdline::memparse(v)) {
            None => warn(format_args!("HugeTLB: unsupported default_hugepagesz={v}")),
            Some(_) if self.req.default.is_some() => warn(format_args!(
                "HugeTLB: default_hugepagesz previously specified, ignoring {v}"
            )),
            Some(s) => {
                self.req.default = Some(s.index());
                self.seen[s.index()] = true;
                self.target = Some(s.index());
                self.valid = true;
            }
        }
    }
}

/// Boot: set the default size and fill the pools the boot line asks for, warning
/// where the allocator runs short (Linux's "allocating N of page size S failed").
pub fn configure(cmd: &CmdLine<'_>) {
    let req = parse_boot(cmd, |w| log::warn!("{w}"));
    if let Some(i) = req.default {
        DEFAULT.store(i, Ordering::Relaxed);
    }
    for (size, count) in SIZES.iter().zip(req.counts) {
        let Some(count) = count else { continue };
        let mut p = pool(*size);
        p.set_persistent(count);
        if p.nr < count {
            log::warn!(
                "HugeTLB: allocating {count} of page size {} kB failed.  Only allocated {} hugepages.",
                size.kb(),
                p.nr
            );
        } else {
            log::info!(
                "HugeTLB: registered {} kB page size, pre-allocated {count} pages",
                size.kb()
            );
        }
    }
}

/// The value of a count file: Linux's `kstrtoul` (decimal, one trailing newline).
pub fn parse_count(s: &str) -> Result<usize, Errno> {
    s.strip_suffix('\n')
        .unwrap_or(s)
        .parse::<usize>()
        .map_err(|_| EINVAL)
}

/// A pool's total in kB across every size (meminfo's `Hugetlb`).
pub fn total_kb() -> usize {
    SIZES.iter().map(|&s| pool(s).nr * s.kb()).sum()
}

/// A hugetlb page whose last reference went (`folio`'s free, its metadata reset):
/// back to the pool of its size.
pub fn give_back(head: PhysAddr, order: usize) {
    let size = SIZES
        .into_iter()
        .find(|s| s.order == order)
        .expect("a hugetlb page of a pool's order");
    pool(size).give_back(head);
}
