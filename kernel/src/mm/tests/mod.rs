//! Host tests of the address space (`Mm`) on the simulated machine (`mm::host`).
//!
//! * this file: the world a test runs in — address spaces, each with the shadow of
//!   what its memory must hold, and the operations on them as a user program and the
//!   CPU would do them: a load or store goes through the software model of the walk
//!   (`pgtable::model::translate`), a fault goes to `Mm::handle_fault` and the access is
//!   retried, a store lands in simulated RAM at the translated address. After every
//!   step: every shadow byte reads back through the walk, an address written in one
//!   address space reads as zero in another that never wrote it, the walk allows no
//!   access that the VMA forbids, and the folio audit (`mm::audit`) agrees with the
//!   tables; the page-table checker has run inside every `pgtable` operation. At the
//!   end every address space is dropped and every frame must be back.
//! * `props.rs`: property tests, random sequences of these operations;
//! * `regress.rs`: one sequence per class of bug the properties find;
//! * `collapse.rs`: collapse (`mm::collapse`): in place, by copy, the limits;
//! * `counts.rs`: folio-level counts (entire map count, exclusivity override);
//! * `hugetlb.rs`: the hugetlb pools and their mappings;
//! * `lazyfree.rs`: MADV_FREE of part of a large folio (split, mark, discard);
//! * `mremap.rs`: mremap's shrink, growth and moves of every folio size;
//! * `access.rs`: a debugger's forced reads and writes (/proc/self/mem);
//! * `vmflags.rs`: fork's VMA flags (MADV_DONTFORK, MADV_WIPEONFORK) and mlock's;
//! * `zero.rs`: the shared zero page;
//! * `userfault.rs`: userfaultfd registration, missing faults, UFFDIO_COPY and ZEROPAGE;
//! * `pin.rs`: pins (`mm::pin`) and what they mean for fork, copy-on-write, split,
//!   collapse and lazyfree;
//! * `threads.rs`: `std::thread`s as CPUs: the hardware's AF/dirty updates against
//!   converts and lazyfree, and the folio protocol between address spaces (split
//!   against unmap against reuse).

mod access;
mod collapse;
mod counts;
mod hugetlb;
mod lazyfree;
mod mremap;
mod pin;
mod props;
mod regress;
mod report;
mod shmem;
mod threads;
mod userfault;
mod vmflags;
mod zero;

use core::sync::atomic::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::string::{String, ToString};
use std::vec::Vec;

use super::aspace::Mm;
use super::cow::COW_COPIES_FOLIO;
use super::fault::{Access, Transfer};
use super::frame::frames;
use super::host::{self, HostMachine};
use super::hugetlb::map::HugeSource;
use super::install::FaultError;
use super::mlock::Lock;
use super::mthp::{self, SizeSetting, TopSetting};
use super::pgtable::model::{self, AccessKind, El, Fault};
use super::pgtable::{ContMode, Features};
use super::vma::VmProt;
use super::{audit, folio, VirtAddr, PAGE_SIZE};
use crate::uapi::{
    MADV_COLLAPSE, MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
    MADV_KEEPONFORK, MADV_NOHUGEPAGE, MADV_PAGEOUT, MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_FIXED,
    MAP_HUGETLB, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MREMAP_DONTUNMAP, MREMAP_FIXED,
    MREMAP_MAYMOVE,
};

/// The hugetlb page sizes `Op::MmapHugetlb` maps: 64 KiB and 2 MiB (three 32 MiB
/// pages are all the simulated RAM holds).
const HUGE_SIZES: [super::hugetlb::HugeSize; 2] =
    [super::hugetlb::SIZES[0], super::hugetlb::SIZES[1]];

/// The window mmap places mappings in: 16 MiB from 1 GiB (2 MiB aligned), so that
/// mappings overlap and MAP_FIXED replaces parts of others.
const WINDOW: u64 = 0x4000_0000;
const WINDOW_PAGES: usize = 4096;
/// At most this many address spaces live at once (fork beyond it is skipped).
const MAX_MMS: usize = 4;

/// How the machine and the kernel's switches are set for one sequence.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub mode: ContMode,
    pub features: Features,
    /// `cow=folio`.
    pub cow_folio: bool,
    /// The mTHP setting of orders 2..=9 (`hugepages-<N>kB/enabled`).
    pub sizes: [SizeSetting; 8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P {
    Rw,
    R,
    None,
}

impl P {
    fn prot(self) -> VmProt {
        match self {
            P::Rw => VmProt::READ_WRITE,
            P::R => VmProt::READ,
            P::None => VmProt::NONE,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    DontNeed,
    Free,
    PageOut,
    HugePage,
    NoHugePage,
    /// MADV_COLLAPSE.
    Collapse,
    /// MADV_DONTFORK: a later fork's child has no mapping there.
    DontFork,
    /// MADV_WIPEONFORK: a later fork's child has the range empty.
    WipeOnFork,
    /// MADV_DOFORK and MADV_KEEPONFORK at once (two calls): forked as usual again.
    Fork,
    /// Not advice but alike: mlock (populated), mlock2(MLOCK_ONFAULT), munlock.
    Lock,
    LockOnFault,
    Unlock,
}

/// Where a range or an access starts in an address space: `page` pages into its
/// `vma`-th VMA (both modulo what exists; one value past the last VMA means anywhere
/// in the window, holes included), aligned down to `align` pages.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub vma: usize,
    pub page: usize,
    pub align: usize,
}

/// One step. `mm` picks a live address space (modulo how many live).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// mmap(MAP_FIXED) of `pages` pages at window page `page` aligned down to `align`.
    Mmap {
        mm: usize,
        page: usize,
        align: usize,
        pages: usize,
        prot: P,
        populate: bool,
    },
    /// mmap(MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED): a new file (`mm::shmem`) of `pages`
    /// pages, read-write, which later forks share.
    MmapShared {
        mm: usize,
        page: usize,
        align: usize,
        pages: usize,
    },
    /// mmap(MAP_PRIVATE|MAP_FIXED) of the file of the `file`-th shared mapping of any
    /// address space, from its start: the file's pages until a write copies one.
    MmapPrivateFile {
        mm: usize,
        page: usize,
        align: usize,
        pages: usize,
        file: usize,
    },
    /// mmap(MAP_HUGETLB|MAP_FIXED) of `pages` (1 to 4) pages of 2 MiB (`big`) or
    /// 64 KiB at window page `page` aligned down to the page size, private or shared.
    MmapHugetlb {
        mm: usize,
        page: usize,
        pages: usize,
        big: bool,
        shared: bool,
    },
    /// A store of one byte (`byte` into the page) at EL0.
    Write {
        mm: usize,
        at: At,
        byte: usize,
    },
    /// A load of one byte at EL0, compared with the shadow.
    Read {
        mm: usize,
        at: At,
        byte: usize,
    },
    /// A debugger's store of one byte (/proc/self/mem, `Mm::access_forced`): done in
    /// any VMA whatever its protection, never seen by another address space.
    ForceWrite {
        mm: usize,
        at: At,
        byte: usize,
    },
    /// A debugger's load of one byte, compared with the shadow.
    ForceRead {
        mm: usize,
        at: At,
        byte: usize,
    },
    Fork {
        mm: usize,
    },
    Mprotect {
        mm: usize,
        at: At,
        pages: usize,
        prot: P,
    },
    Munmap {
        mm: usize,
        at: At,
        pages: usize,
    },
    Madvise {
        mm: usize,
        at: At,
        pages: usize,
        advice: Advice,
    },
    /// mremap of `old_pages` pages at `at` to `new_pages` pages with `flags` (the low
    /// three bits: MAYMOVE, FIXED, DONTUNMAP; DONTUNMAP, or [`SAME_LEN`], keeps the
    /// size), to window page `dst_page` aligned down to `dst_align` where a
    /// destination is given.
    Mremap {
        mm: usize,
        at: At,
        old_pages: usize,
        new_pages: usize,
        flags: u64,
        dst_page: usize,
        dst_align: usize,
    },
    /// `echo SETTING > hugepages-<2^order * 4>kB/enabled`.
    Policy {
        order: usize,
        setting: SizeSetting,
    },
    /// `echo 1 > shrink_deferred`.
    Shrink,
    /// One pass of the collapse thread over every window of the address space.
    Scan {
        mm: usize,
    },
    /// The address space goes away (exit), unless it is the last one.
    Exit {
        mm: usize,
    },
    /// A long-term pin of `pages` pages at `at` (`mm::pin`), for writing or reading:
    /// until the address space unmaps the address, it maps the pinned frame there
    /// (the pin sees what it writes), and no other address space maps that frame there
    /// (a private page is never shared while pinned).
    Pin {
        mm: usize,
        at: At,
        pages: usize,
        write: bool,
    },
    /// Drop pin `which` (modulo how many are held).
    Unpin {
        which: usize,
    },
}

/// A page held by a pin: `owner` (an address space's id) pinned `pa` at `va`; `live`
/// until the owner unmaps or replaces the mapping there (munmap, mmap over it, mremap,
/// MADV_DONTNEED, exit).
struct Held {
    owner: usize,
    va: VirtAddr,
    pa: super::PhysAddr,
    live: bool,
}

/// Pins held at once, at most.
const MAX_PINS: usize = 64;

/// An address space and what its memory must hold: bytes written and not since
/// discarded (anything else reads as zero).
/// `Op::Mremap`'s flag for a new length equal to the old one: with FIXED, a pure
/// move, which may span several VMAs.
pub const SAME_LEN: u64 = 8;

struct Proc {
    id: usize,
    mm: Mm<HostMachine>,
    shadow: BTreeMap<u64, u8>,
    /// Pages MADV_FREE'd and not written since: reclaim may have dropped them (they
    /// then read as zero); any other written page must keep its data.
    lazy: BTreeSet<u64>,
    /// Pages of private file mappings that hold a copy of their own (a write, or
    /// anything else that broke copy-on-write, copied the file's page): they read
    /// `shadow`; the others read the file.
    copied: BTreeSet<u64>,
}

struct World {
    env: HostMachine,
    procs: Vec<Proc>,
    /// Bytes written to shared mappings, by (file, byte offset in the file): every
    /// address space that maps the file there must read them (anything else zero).
    files: BTreeMap<(u64, u64), u8>,
    /// Pages pinned (`Op::Pin`) and not yet unpinned.
    pins: Vec<Held>,
    next_id: usize,
    /// What each step did, in the address space's terms: the report of a failure.
    log: Vec<String>,
}

/// Runs `ops` on a fresh machine set up as `cfg`; the error says which check failed
/// after which step, with the steps that led there.
pub fn run(cfg: Config, ops: &[Op]) -> Result<(), String> {
    let _machine = host::machine();
    COW_COPIES_FOLIO.store(cfg.cow_folio, Ordering::Relaxed);
    mthp::POLICY.set_top(TopSetting::Always);
    for (order, setting) in mthp::MTHP_ORDERS.zip(cfg.sizes) {
        mthp::POLICY.set_size(order, setting);
    }
    let env = HostMachine {
        features: cfg.features,
        mode: cfg.mode,
    };
    // The page cache follows the same sizes (`hugepages-<N>kB/shmem_enabled`).
    mthp::SHMEM_ENABLED
        .write("always")
        .expect("a shmem_enabled word");
    for (order, setting) in mthp::MTHP_ORDERS.zip(cfg.sizes) {
        let word = match setting {
            SizeSetting::Always => "always",
            SizeSetting::Inherit => "inherit",
            SizeSetting::Madvise => "advise",
            SizeSetting::Never => "never",
        };
        mthp::shmem_size_enabled(order)
            .write(word)
            .expect("a shmem_enabled word");
    }
    let mut world = World {
        env,
        procs: Vec::new(),
        files: BTreeMap::new(),
        pins: Vec::new(),
        next_id: 0,
        log: Vec::new(),
    };
    let result = world.run(ops);
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            // The address spaces may be inconsistent: leak them (the next test's
            // `machine()` takes the frames back) rather than unmap through them.
            for p in world.procs.drain(..) {
                core::mem::forget(p);
            }
            world.pins.clear();
            Err(format!("{e}\n  steps:\n    {}", world.log.join("\n    ")))
        }
    }
}

fn panic_message(p: std::boxed::Box<dyn core::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Runs `f`, turning a panic (the checker's, an assertion's) into an error.
fn guarded<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(format!("panic: {}", panic_message(p))))
}

impl World {
    fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        let mm = guarded(|| Mm::new_in(&self.env).map_err(|e| format!("Mm::new: {e}")))?;
        self.spawn(mm);
        for (step, op) in ops.iter().enumerate() {
            let value = (step % 251 + 1) as u8;
            guarded(|| self.step(op, value))?;
            self.note_copies();
            self.forget_discarded();
            guarded(|| self.check()).map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
        }
        let gone = guarded(|| {
            while let Some(p) = self.procs.pop() {
                self.log.push(format!("mm{}: exit", p.id));
                drop(p);
            }
            // The pins outlive their address spaces; their frames come back now.
            for h in self.pins.drain(..) {
                super::pin::unpin(h.pa);
            }
            Ok(())
        });
        gone.map_err(|e| format!("dropping the address spaces: {e}"))?;
        for size in HUGE_SIZES {
            let mut pool = super::hugetlb::pool(size);
            let f = pool.figures();
            if f.free != f.nr || f.resv != 0 {
                return Err(format!(
                    "every address space gone, but the {} kB pool has {f:?}",
                    size.kb()
                ));
            }
            pool.set_persistent(0);
        }
        if super::zero::huge_mapped() != 0 {
            return Err(format!(
                "every address space gone, but {} pages of the huge zero page counted mapped",
                super::zero::huge_mapped()
            ));
        }
        // Reclaim frees the huge zero page once nothing maps it.
        super::zero::shrink();
        let f = frames();
        if f.free_frames() != f.managed_frames() || folio::deferred_count() != 0 {
            return Err(format!(
                "every address space gone, but {} frames are not back ({} folios queued)",
                f.managed_frames() - f.free_frames(),
                folio::deferred_count()
            ));
        }
        Ok(())
    }

    fn spawn(&mut self, mm: Mm<HostMachine>) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.procs.push(Proc {
            id,
            mm,
            shadow: BTreeMap::new(),
            lazy: BTreeSet::new(),
            copied: BTreeSet::new(),
        });
        id
    }

    /// Where `at` points in address space `i`.
    fn resolve(&self, i: usize, at: At) -> VirtAddr {
        let vmas: Vec<_> = self.procs[i].mm.vmas.iter().collect();
        let k = at.vma % (vmas.len() + 1);
        let page = match vmas.get(k) {
            Some(v) => {
                let len = (v.end.as_u64() - v.start.as_u64()) as usize / PAGE_SIZE;
                v.start.as_u64() as usize / PAGE_SIZE + at.page % len
            }
            None => WINDOW as usize / PAGE_SIZE + at.page % WINDOW_PAGES,
        };
        VirtAddr((page & !(at.align.max(1) - 1)) as u64 * PAGE_SIZE as u64)
    }

    fn step(&mut self, op: &Op, value: u8) -> Result<(), String> {
        let live = self.procs.len();
        // Operations that may take the pinned mapping away end what a pin promises.
        let unmaps = match *op {
            Op::Mmap { mm, .. }
            | Op::MmapShared { mm, .. }
            | Op::MmapPrivateFile { mm, .. }
            | Op::MmapHugetlb { mm, .. }
            | Op::Munmap { mm, .. } => Some(mm),
            Op::Mremap { mm, .. } => Some(mm),
            Op::Madvise {
                mm,
                advice: Advice::DontNeed,
                ..
            } => Some(mm),
            Op::Exit { mm } if live > 1 => Some(mm),
            _ => None,
        };
        if let Some(mm) = unmaps {
            let id = self.procs[mm % live].id;
            for h in self.pins.iter_mut().filter(|h| h.owner == id) {
                h.live = false;
            }
        }
        match *op {
            Op::Pin {
                mm,
                at,
                pages,
                write,
            } => {
                let i = mm % live;
                let va = self.resolve(i, at);
                let n = pages.clamp(1, 4).min(MAX_PINS - self.pins.len());
                let mut got = [super::PhysAddr::new(0); 4];
                let p = &mut self.procs[i];
                let r = p.mm.pin_pages(va, &mut got[..n], write);
                self.log.push(format!(
                    "mm{}: pin {n} pages at {:#x}{} = {r:?}",
                    p.id,
                    va.as_u64(),
                    if write { " for writing" } else { "" }
                ));
                for (k, &pa) in got.iter().enumerate().take(r.unwrap_or(0)) {
                    self.pins.push(Held {
                        owner: p.id,
                        va: va.add(k * PAGE_SIZE),
                        pa,
                        live: true,
                    });
                }
            }
            Op::Unpin { which } => {
                if !self.pins.is_empty() {
                    let h = self.pins.remove(which % self.pins.len());
                    self.log.push(format!(
                        "unpin {} (mm{} at {:#x})",
                        h.pa,
                        h.owner,
                        h.va.as_u64()
                    ));
                    super::pin::unpin(h.pa);
                }
            }
            Op::Mmap {
                mm,
                page,
                align,
                pages,
                prot,
                populate,
            } => {
                let i = mm % live;
                let start = WINDOW + ((page % WINDOW_PAGES) & !(align.max(1) - 1)) as u64 * 4096;
                let len = (pages.max(1) * PAGE_SIZE) as u64;
                let flags = MAP_FIXED | if populate { MAP_POPULATE } else { 0 };
                let p = &mut self.procs[i];
                let r = p.mm.mmap(start, len, prot.prot(), flags);
                self.log.push(format!(
                    "mm{}: mmap({start:#x}, {len:#x}, {prot:?}{}) = {r:x?}",
                    p.id,
                    if populate { ", POPULATE" } else { "" }
                ));
                if r.is_ok() {
                    discard(&mut p.shadow, start, start + len);
                }
            }
            Op::MmapShared {
                mm,
                page,
                align,
                pages,
            } => {
                let len = (pages.max(1) * PAGE_SIZE) as u64;
                let file = super::shmem::Shmem::new(|_| "/dev/zero".to_string(), len);
                self.map_file(mm % live, page, align, pages, file, true);
            }
            Op::MmapPrivateFile {
                mm,
                page,
                align,
                pages,
                file,
            } => {
                let i = mm % live;
                let files: Vec<_> = self
                    .procs
                    .iter()
                    .flat_map(|p| p.mm.vmas.iter())
                    .filter_map(|v| v.file().filter(|m| m.shared).map(|m| m.file.clone()))
                    .collect();
                if files.is_empty() {
                    return Ok(());
                }
                let file = files[file % files.len()].clone();
                self.map_file(i, page, align, pages, file, false);
            }
            Op::MmapHugetlb {
                mm,
                page,
                pages,
                big,
                shared,
            } => {
                let i = mm % live;
                let size = if big { HUGE_SIZES[1] } else { HUGE_SIZES[0] };
                // The pools are made at the first hugetlb mapping of a sequence (they
                // take memory the others would have) and emptied at its end.
                for (size, pages) in HUGE_SIZES.into_iter().zip([16, 4]) {
                    let mut pool = super::hugetlb::pool(size);
                    if pool.figures().nr == 0 {
                        pool.set_persistent(pages);
                    }
                }
                let bytes = size.bytes() as u64;
                let start = (WINDOW + (page % WINDOW_PAGES) as u64 * 4096) / bytes * bytes;
                let len = pages.clamp(1, 4) as u64 * bytes;
                let kind = if shared { MAP_SHARED } else { MAP_PRIVATE };
                let flags = MAP_FIXED | MAP_ANONYMOUS | MAP_HUGETLB | kind;
                let p = &mut self.procs[i];
                let src = HugeSource::Anon(size);
                let r =
                    p.mm.mmap_hugetlb(start, len, VmProt::READ_WRITE, flags, shared, src);
                self.log.push(format!(
                    "mm{}: mmap({start:#x}, {len:#x}, HUGETLB {} kB, {}) = {r:x?}",
                    p.id,
                    size.kb(),
                    if shared { "SHARED" } else { "PRIVATE" }
                ));
                if r.is_ok() {
                    p.discard(start, start + len);
                }
            }
            Op::Write { mm, at, byte } => {
                let i = mm % live;
                let va = self.resolve(i, at).add(byte % PAGE_SIZE);
                let done = self.access(i, va, AccessKind::Write)?;
                if let (Some(pa), Some(key)) = (done, self.shared_key(i, va)) {
                    host::write_byte(pa, value);
                    self.files.insert(key, value);
                    self.log.push(format!(
                        "mm{}: write {value:#x} at {:#x}: PA {pa}, file {} offset {:#x}",
                        self.procs[i].id,
                        va.as_u64(),
                        key.0,
                        key.1
                    ));
                    return Ok(());
                }
                if done.is_some() {
                    self.copy_out(i, page_of(va.as_u64()));
                }
                let p = &mut self.procs[i];
                self.log.push(format!(
                    "mm{}: write {value:#x} at {:#x}: {}",
                    p.id,
                    va.as_u64(),
                    done.map_or(
                        "fault not resolved (SIGSEGV/OOM)".to_string(),
                        |pa| format!("PA {pa}")
                    )
                ));
                if let Some(pa) = done {
                    host::write_byte(pa, value);
                    p.shadow.insert(va.as_u64(), value);
                    p.lazy.remove(&page_of(va.as_u64()));
                }
            }
            Op::Read { mm, at, byte } => {
                let i = mm % live;
                let va = self.resolve(i, at).add(byte % PAGE_SIZE);
                let done = self.access(i, va, AccessKind::Read)?;
                let shared = self.shared_key(i, va).or_else(|| self.file_key(i, va));
                let p = &self.procs[i];
                let want = self.want(p, va);
                let got = done.map(host::read_byte);
                self.log
                    .push(format!("mm{}: read at {:#x} = {got:x?}", p.id, va.as_u64()));
                // A zero where a non-zero byte was written, on a lazyfree page: reclaim
                // dropped it. (A zero where nothing was written says nothing.)
                let dropped = shared.is_none()
                    && got == Some(0)
                    && want != 0
                    && p.lazy.contains(&page_of(va.as_u64()));
                if dropped {
                    self.forget_page(i, page_of(va.as_u64()));
                } else if got.is_some_and(|g| g != want) {
                    return Err(format!(
                        "mm{}: read {got:x?} at {:#x}, want {want:#x}",
                        p.id,
                        va.as_u64()
                    ));
                }
            }
            Op::ForceWrite { mm, at, byte } => {
                let i = mm % live;
                let va = self.resolve(i, at).add(byte % PAGE_SIZE);
                let shared = self.shared_key(i, va);
                let p = &mut self.procs[i];
                let in_vma = reachable(&p.mm, va);
                let n = p.mm.access_forced(va, Transfer::Write(&[value]));
                self.log.push(format!(
                    "mm{}: forced write {value:#x} at {:#x}: {n} byte",
                    p.id,
                    va.as_u64()
                ));
                // A hugetlb page may find its pool empty (SIGBUS for a store).
                let hugetlb = p.mm.vmas.find(va).is_some_and(|v| v.hugetlb().is_some());
                if n != usize::from(in_vma) && !(n == 0 && hugetlb) {
                    return Err(format!(
                        "mm{}: forced write of {n} bytes, VMA: {in_vma}",
                        p.id
                    ));
                }
                match (n, shared) {
                    (1, Some(key)) => {
                        self.files.insert(key, value);
                    }
                    (1, None) => {
                        self.copy_out(i, page_of(va.as_u64()));
                        let p = &mut self.procs[i];
                        p.shadow.insert(va.as_u64(), value);
                        p.lazy.remove(&page_of(va.as_u64()));
                    }
                    _ => {}
                }
            }
            Op::ForceRead { mm, at, byte } => {
                let i = mm % live;
                let va = self.resolve(i, at).add(byte % PAGE_SIZE);
                let shared = self.shared_key(i, va);
                let p = &mut self.procs[i];
                let in_vma = reachable(&p.mm, va);
                let mut got = [0u8];
                let n = p.mm.access_forced(va, Transfer::Read(&mut got));
                let shared = shared.or_else(|| private_file_key_of(&p.mm, va));
                let p = &self.procs[i];
                let want = self.want(p, va);
                self.log.push(format!(
                    "mm{}: forced read at {:#x}: {n} byte {:#x}",
                    p.id,
                    va.as_u64(),
                    got[0]
                ));
                let hugetlb = p.mm.vmas.find(va).is_some_and(|v| v.hugetlb().is_some());
                if n != usize::from(in_vma) && !(n == 0 && hugetlb) {
                    return Err(format!(
                        "mm{}: forced read of {n} bytes, VMA: {in_vma}",
                        p.id
                    ));
                }
                let dropped = shared.is_none()
                    && n == 1
                    && got[0] == 0
                    && want != 0
                    && p.lazy.contains(&page_of(va.as_u64()));
                if dropped {
                    self.forget_page(i, page_of(va.as_u64()));
                } else if n == 1 && got[0] != want {
                    return Err(format!(
                        "mm{}: forced read {:#x} at {:#x}, want {want:#x}",
                        p.id,
                        got[0],
                        va.as_u64()
                    ));
                }
            }
            Op::Fork { mm } => {
                let i = mm % live;
                if live >= MAX_MMS {
                    return Ok(());
                }
                let r = self.procs[i].mm.fork();
                let parent = self.procs[i].id;
                match r {
                    Ok(child) => {
                        // What the child has of the parent's memory: nothing of a
                        // MADV_DONTFORK or MADV_WIPEONFORK VMA.
                        let p = &self.procs[i];
                        let copied = |va: &u64| {
                            p.mm.vmas
                                .find(VirtAddr(*va))
                                .is_some_and(|v| !v.flags.dontcopy && !v.flags.wipeonfork)
                        };
                        let shadow = p
                            .shadow
                            .iter()
                            .filter(|(va, _)| copied(va))
                            .map(|(&va, &b)| (va, b))
                            .collect();
                        let lazy = p.lazy.iter().copied().filter(|va| copied(va)).collect();
                        let copies = p.copied.iter().copied().filter(|va| copied(va)).collect();
                        let id = self.spawn(child);
                        let c = self.procs.last_mut().expect("just spawned");
                        c.shadow = shadow;
                        c.lazy = lazy;
                        c.copied = copies;
                        self.log.push(format!("mm{parent}: fork = mm{id}"));
                    }
                    Err(e) => self.log.push(format!("mm{parent}: fork = Err({e})")),
                }
            }
            Op::Mprotect {
                mm,
                at,
                pages,
                prot,
            } => {
                let i = mm % live;
                let start = self.resolve(i, at);
                let end = start.add(pages.max(1) * PAGE_SIZE);
                let p = &mut self.procs[i];
                let r = p.mm.mprotect(start, end, prot.prot());
                self.log.push(format!(
                    "mm{}: mprotect({:#x}..{:#x}, {prot:?}) = {r:?}",
                    p.id,
                    start.as_u64(),
                    end.as_u64()
                ));
            }
            Op::Munmap { mm, at, pages } => {
                let i = mm % live;
                let start = self.resolve(i, at);
                let end = start.add(pages.max(1) * PAGE_SIZE);
                let p = &mut self.procs[i];
                let r = p.mm.munmap(start, end);
                self.log.push(format!(
                    "mm{}: munmap({:#x}..{:#x}) = {r:?}",
                    p.id,
                    start.as_u64(),
                    end.as_u64()
                ));
                if r.is_ok() {
                    discard(&mut p.shadow, start.as_u64(), end.as_u64());
                    forget_pages(&mut p.copied, start.as_u64(), end.as_u64());
                }
            }
            Op::Madvise {
                mm,
                at,
                pages,
                advice,
            } => {
                let i = mm % live;
                let start = self.resolve(i, at);
                let end = start.add(pages.max(1) * PAGE_SIZE);
                let p = &mut self.procs[i];
                let r = match advice {
                    Advice::Fork => {
                        p.mm.madvise(start, end, MADV_DOFORK)
                            .and_then(|()| p.mm.madvise(start, end, MADV_KEEPONFORK))
                    }
                    Advice::Lock => p.mm.mlock(start, end, Some(Lock::Populate)),
                    Advice::LockOnFault => p.mm.mlock(start, end, Some(Lock::OnFault)),
                    Advice::Unlock => p.mm.mlock(start, end, None),
                    _ => p.mm.madvise(
                        start,
                        end,
                        match advice {
                            Advice::DontNeed => MADV_DONTNEED,
                            Advice::Free => MADV_FREE,
                            Advice::PageOut => MADV_PAGEOUT,
                            Advice::HugePage => MADV_HUGEPAGE,
                            Advice::NoHugePage => MADV_NOHUGEPAGE,
                            Advice::Collapse => MADV_COLLAPSE,
                            Advice::DontFork => MADV_DONTFORK,
                            Advice::WipeOnFork => MADV_WIPEONFORK,
                            Advice::Fork | Advice::Lock | Advice::LockOnFault | Advice::Unlock => {
                                unreachable!("above")
                            }
                        },
                    ),
                };
                self.log.push(format!(
                    "mm{}: madvise({:#x}..{:#x}, {advice:?}) = {r:?}",
                    p.id,
                    start.as_u64(),
                    end.as_u64()
                ));
                if advice == Advice::Free {
                    // Even a failed call may have freed the pieces before a hole.
                    let pages: BTreeSet<u64> = p
                        .shadow
                        .range(start.as_u64()..end.as_u64())
                        .map(|(&va, _)| page_of(va))
                        .collect();
                    p.lazy.extend(pages);
                }
                if advice == Advice::DontNeed {
                    // Dropped pages read as zero; a failure (ENOMEM for a hole after
                    // the pieces before it, or for want of a table) may keep some.
                    let dropped: Vec<u64> = p
                        .shadow
                        .range(start.as_u64()..end.as_u64())
                        .map(|(&va, _)| va)
                        .filter(|&va| {
                            model::walk(p.mm.tables.env(), p.mm.tables.root(), VirtAddr(va))
                                .is_err()
                        })
                        .collect();
                    let kept = p.shadow.range(start.as_u64()..end.as_u64()).count() - dropped.len();
                    // A hugetlb VMA's end rounds down to its page (less than a page
                    // drops nothing).
                    let hugetlb =
                        p.mm.vmas
                            .iter()
                            .any(|v| v.hugetlb().is_some() && v.start < end && start < v.end);
                    if r.is_ok() && kept > 0 && !hugetlb {
                        return Err(format!(
                            "mm{}: MADV_DONTNEED returned Ok but kept {kept} written bytes mapped",
                            p.id
                        ));
                    }
                    for va in dropped {
                        p.shadow.remove(&va);
                    }
                    // A private file mapping's dropped copies: the file's pages again.
                    let gone: Vec<u64> = p
                        .copied
                        .range(start.as_u64()..end.as_u64())
                        .copied()
                        .filter(|&page| p.mm.tables.get(VirtAddr(page)).is_none())
                        .collect();
                    for page in gone {
                        p.copied.remove(&page);
                        discard(&mut p.shadow, page, page + PAGE_SIZE as u64);
                    }
                }
            }
            Op::Mremap {
                mm,
                at,
                old_pages,
                new_pages,
                flags,
                dst_page,
                dst_align,
            } => {
                let i = mm % live;
                let old = self.resolve(i, at).as_u64();
                let new_pages = if flags & (MREMAP_DONTUNMAP | SAME_LEN) != 0 {
                    old_pages
                } else {
                    new_pages
                };
                let flags = flags & (MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP);
                let old_len = (old_pages.max(1) * PAGE_SIZE) as u64;
                let new_len = (new_pages.max(1) * PAGE_SIZE) as u64;
                let dst =
                    WINDOW + ((dst_page % WINDOW_PAGES) & !(dst_align.max(1) - 1)) as u64 * 4096;
                let p = &mut self.procs[i];
                // A pure move takes each VMA piece of the source to the same offset
                // from `dst` (Linux 6.17+), the holes between them and their images
                // untouched: the pieces as they are before the call.
                let pieces: Option<Vec<(u64, u64)>> =
                    (flags & MREMAP_FIXED != 0 && old_len == new_len).then(|| {
                        p.mm.vmas
                            .iter()
                            .map(|v| (v.start.as_u64().max(old), v.end.as_u64().min(old + old_len)))
                            .filter(|(a, b)| a < b)
                            .collect()
                    });
                // The piece of a DONTUNMAP pure move that fails (if one does): none
                // moves if the ranges overlap; else the first hugetlb piece
                // (`remap_move` refuses it) or the first whose destination cuts a
                // hugetlb page (its unmap is EINVAL), as they stand before the call.
                let cuts_huge = |s: u64, e: u64| {
                    p.mm.vmas.iter().any(|v| {
                        v.hugetlb().is_some_and(|h| {
                            let size = h.size.bytes() as u64;
                            let inside = |x: u64| v.start.as_u64() < x && x < v.end.as_u64();
                            (inside(s) && !s.is_multiple_of(size))
                                || (inside(e) && !e.is_multiple_of(size))
                        })
                    })
                };
                let stop = match &pieces {
                    Some(_) if old < dst + old_len && dst < old + old_len => 0,
                    Some(pieces) => pieces
                        .iter()
                        .position(|&(a, b)| {
                            let huge =
                                p.mm.vmas
                                    .find(VirtAddr(a))
                                    .is_some_and(|v| v.hugetlb().is_some());
                            huge || cuts_huge(a - old + dst, b - old + dst)
                        })
                        // No piece refused: the call failed before any moved.
                        .unwrap_or(0),
                    None => 0,
                };
                // A hugetlb mapping's lengths round up to its page size (Linux's
                // `align_hugetlb`).
                let huge =
                    p.mm.vmas
                        .find(VirtAddr(old))
                        .and_then(|v| v.hugetlb().map(|h| h.size.bytes() as u64));
                let r = p.mm.mremap(old, old_len, new_len, flags, dst);
                let (old_len, new_len) = match huge {
                    Some(size) => (
                        old_len.next_multiple_of(size),
                        new_len.next_multiple_of(size),
                    ),
                    None => (old_len, new_len),
                };
                self.log.push(format!(
                    "mm{}: mremap({old:#x}, {old_len:#x}, {new_len:#x}, {flags}, {dst:#x}) = {r:x?}",
                    p.id
                ));
                match (r, pieces) {
                    (Ok(new), Some(pieces)) => p.moved_pieces(old, new.as_u64(), &pieces),
                    (Ok(new), None) => p.remapped(old, old_len, new_len, new.as_u64()),
                    (Err(_), Some(pieces)) => {
                        // The pieces before the failing one moved: their sources are
                        // gone (without DONTUNMAP; with it, a failure needs memory to
                        // run out, which these sequences do not reach). A failing
                        // piece's destination may be unmapped already.
                        let gone = |p: &Proc, &(a, b): &(u64, u64)| {
                            flags & MREMAP_DONTUNMAP == 0
                                && p.mm.vmas.is_free(VirtAddr(a), VirtAddr(b))
                        };
                        // With DONTUNMAP the sources stay: the pieces before the one
                        // that failed moved (`stop`, computed before the call).
                        let moved: Vec<_> = if flags & MREMAP_DONTUNMAP == 0 {
                            pieces.iter().copied().filter(|x| gone(p, x)).collect()
                        } else {
                            pieces.iter().copied().take(stop).collect()
                        };
                        p.moved_pieces(old, dst, &moved);
                        for (a, b) in pieces {
                            let (s, e) = (a - old + dst, b - old + dst);
                            if p.mm.vmas.is_free(VirtAddr(s), VirtAddr(e)) {
                                p.discard(s, e);
                            }
                        }
                    }
                    (Err(_), None) => {
                        // A failure may come after the unmap of the destination (FIXED)
                        // or of the tail: what is no longer mapped reads as zero.
                        let fixed = flags & MREMAP_FIXED != 0;
                        let tail = (old + new_len, old + old_len);
                        let dst_range = (dst, dst + new_len);
                        for (s, e) in [tail, dst_range] {
                            let candidate = s < e && (s != dst || fixed);
                            if candidate && p.mm.vmas.is_free(VirtAddr(s), VirtAddr(e)) {
                                p.discard(s, e);
                            }
                        }
                    }
                }
            }
            Op::Policy { order, setting } => {
                mthp::POLICY.set_size(order, setting);
                self.log.push(format!(
                    "policy: hugepages-{}kB = {setting:?}",
                    mthp::size_kb(order)
                ));
            }
            Op::Shrink => {
                let n = folio::shrink_deferred();
                self.log.push(format!("shrink_deferred = {n}"));
            }
            Op::Scan { mm } => {
                let p = &mut self.procs[mm % live];
                let done = collapse::scan_all(&mut p.mm);
                self.log
                    .push(format!("mm{}: collapse scan = {done:?}", p.id));
            }
            Op::Exit { mm } => {
                if live > 1 {
                    let p = self.procs.remove(mm % live);
                    self.log.push(format!("mm{}: exit", p.id));
                    drop(p);
                }
            }
        }
        Ok(())
    }

    /// An EL0 access to `va` in address space `i` as the CPU does it: translate, and on
    /// a fault let the kernel handle it and retry. The PA accessed, or `None` if the
    /// kernel gave up (SIGSEGV, out of memory).
    fn access(
        &mut self,
        i: usize,
        va: VirtAddr,
        kind: AccessKind,
    ) -> Result<Option<super::PhysAddr>, String> {
        let p = &mut self.procs[i];
        let vma = p.mm.vmas.find(va).cloned();
        let allowed = vma.as_ref().is_some_and(|v| match kind {
            AccessKind::Write => v.prot.write,
            _ => v.prot.read || v.prot.write || v.prot.exec,
        });
        for _ in 0..4 {
            let access = model::Access { el: El::El0, kind };
            match model::translate(p.mm.tables.env(), p.mm.tables.root(), va, access) {
                Ok(w) if allowed => return Ok(Some(w.pa)),
                Ok(w) => {
                    return Err(format!(
                    "mm{}: {kind:?} at {:#x} allowed by {:?} (level {}) but not by its VMA {vma:?}",
                    p.id,
                    va.as_u64(),
                    w.pte,
                    w.level
                ))
                }
                Err(f @ Fault::ContiguousMisprogrammed { .. }) => {
                    return Err(format!("mm{}: walk of {:#x}: {f:?}", p.id, va.as_u64()))
                }
                Err(_) => {
                    let access = match kind {
                        AccessKind::Write => Access::Write,
                        AccessKind::Read => Access::Read,
                        AccessKind::Exec => Access::Exec,
                    };
                    match p.mm.handle_fault(va, access) {
                        Ok(()) => continue,
                        Err(FaultError::Segv) if allowed => {
                            return Err(format!(
                                "mm{}: SIGSEGV for {kind:?} at {:#x} in {vma:?}",
                                p.id,
                                va.as_u64()
                            ))
                        }
                        Err(_) => return Ok(None),
                    }
                }
            }
        }
        Err(format!(
            "mm{}: {kind:?} at {:#x} still faults after the kernel fixed it 4 times",
            p.id,
            va.as_u64()
        ))
    }

    /// The checks after every step (see the module docs). Data: every byte written in
    /// an address space reads back there, and every address written in any address
    /// space reads, where another maps it, what that one wrote there or zero (a store
    /// that leaked through a shared page shows here at once).
    fn check(&self) -> Result<(), String> {
        let written: BTreeMap<u64, ()> = self
            .procs
            .iter()
            .flat_map(|p| p.shadow.keys().map(|&va| (va, ())))
            .collect();
        for p in &self.procs {
            self.check_shared(p)?;
            for &va in written.keys() {
                if shared_key_of(&p.mm, VirtAddr(va)).is_some() {
                    // Its bytes are the file's (`check_shared`).
                    continue;
                }
                let uncopied = private_file_key_of(&p.mm, VirtAddr(va)).is_some()
                    && !p.copied.contains(&page_of(va));
                let want = if uncopied {
                    Some(self.want(p, VirtAddr(va)))
                } else {
                    p.shadow.get(&va).copied()
                };
                match model::walk(p.mm.tables.env(), p.mm.tables.root(), VirtAddr(va)) {
                    Ok(w) if host::read_byte(w.pa) == want.unwrap_or(0) => {}
                    Ok(w) => {
                        return Err(format!(
                            "mm{}: {va:#x} holds {:#x} (PA {}), but {} was written there",
                            p.id,
                            host::read_byte(w.pa),
                            w.pa,
                            want.map_or("nothing".to_string(), |b| format!("{b:#x}"))
                        ))
                    }
                    // Nothing written, or a private file page not faulted in yet.
                    Err(_) if want.is_none() || uncopied => {}
                    Err(f) => {
                        return Err(format!(
                            "mm{}: {va:#x} was written ({want:x?}) but the walk says {f:?}",
                            p.id
                        ))
                    }
                }
            }
        }
        self.check_pins()?;
        audit::check(self.procs.iter().map(|p| &p.mm))
            .map(|_| ())
            .map_err(|e| format!("audit: {e}"))
    }

    /// What each live pin promises (`Op::Pin`): its owner maps the pinned frame at the
    /// pinned address, and no other address space maps it there unless it is a
    /// shared file's page.
    fn check_pins(&self) -> Result<(), String> {
        for h in self.pins.iter().filter(|h| h.live) {
            let owner = self.procs.iter().find(|p| p.id == h.owner);
            let Some(owner) = owner else { continue };
            let w = model::walk(owner.mm.tables.env(), owner.mm.tables.root(), h.va);
            if !w.as_ref().is_ok_and(|w| w.pa.align_down(PAGE_SIZE) == h.pa) {
                return Err(format!(
                    "mm{}: pinned {} at {:#x}, which now maps {:?}",
                    h.owner,
                    h.pa,
                    h.va.as_u64(),
                    w.map(|w| w.pa)
                ));
            }
            if shared_key_of(&owner.mm, h.va).is_some() {
                continue;
            }
            for p in self.procs.iter().filter(|p| p.id != h.owner) {
                let w = model::walk(p.mm.tables.env(), p.mm.tables.root(), h.va);
                if w.is_ok_and(|w| w.pa.align_down(PAGE_SIZE) == h.pa) {
                    return Err(format!(
                        "mm{} maps {} at {:#x}, which mm{} pinned",
                        p.id,
                        h.pa,
                        h.va.as_u64(),
                        h.owner
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether a debugger's access at `va` reaches memory: a VMA covers it and, for a
/// file mapping, the file reaches that far (past its end the access is SIGBUS, as
/// after an mremap that grew a shared anonymous mapping beyond its file, on Linux too).
fn reachable(mm: &Mm<HostMachine>, va: VirtAddr) -> bool {
    mm.vmas.find(va).is_some_and(|v| {
        v.file()
            .is_none_or(|m| m.index(va) < m.file.size().div_ceil(PAGE_SIZE as u64))
    })
}

/// The file and byte offset that `va` maps in `mm`, if a shared mapping covers it.
fn shared_key_of(mm: &Mm<HostMachine>, va: VirtAddr) -> Option<(u64, u64)> {
    let (ino, origin, shared) = file_of(mm.vmas.find(va)?)?;
    shared.then(|| (ino, va.as_u64().wrapping_sub(origin)))
}

/// The file a VMA maps (a RAM file's or a hugetlb file's): its inode number, the
/// address of its byte 0, whether shared.
fn file_of(v: &super::vma::Vma) -> Option<(u64, u64, bool)> {
    if let Some(m) = v.file() {
        return Some((m.file.ino, m.origin, m.shared));
    }
    let h = v.hugetlb()?;
    let f = h.file.as_ref()?;
    Some((f.ino, h.origin, h.shared))
}

fn page_of(va: u64) -> u64 {
    va & !(PAGE_SIZE as u64 - 1)
}

impl Proc {
    /// Forget what was written in `[start, end)`, and its lazyfree marks.
    fn discard(&mut self, start: u64, end: u64) {
        discard(&mut self.shadow, start, end);
        forget_pages(&mut self.lazy, start, end);
        forget_pages(&mut self.copied, start, end);
    }

    /// mremap of `[old, old + old_len)` to `new_len` bytes returned `new`: the data of
    /// the first `min(old_len, new_len)` bytes is at `new` now (and the source, if it
    /// moved, reads as zero, DONTUNMAP's empty VMA included); a tail cut off is gone.
    fn remapped(&mut self, old: u64, old_len: u64, new_len: u64, new: u64) {
        if new == old {
            if new_len < old_len {
                self.discard(old + new_len, old + old_len);
            }
            return;
        }
        self.discard(new, new + new_len);
        self.moved_pieces(old, new, &[(old, old + old_len.min(new_len))]);
        self.discard(old + new_len.min(old_len), old + old_len);
    }

    /// The pieces `[a, b)` of a range at `old` moved to the same offsets from `new`:
    /// each piece's data is at its image, which held nothing else, and the piece reads
    /// as zero (DONTUNMAP's empty VMA included).
    fn moved_pieces(&mut self, old: u64, new: u64, pieces: &[(u64, u64)]) {
        for &(a, b) in pieces {
            let image = |va: u64| va - old + new;
            let data: Vec<(u64, u8)> = self.shadow.range(a..b).map(|(&va, &b)| (va, b)).collect();
            let lazy: Vec<u64> = self.lazy.range(a..b).copied().collect();
            let copies: Vec<u64> = self.copied.range(a..b).copied().collect();
            self.discard(image(a), image(b));
            self.discard(a, b);
            for (va, byte) in data {
                self.shadow.insert(image(va), byte);
            }
            for page in lazy {
                self.lazy.insert(image(page));
            }
            for page in copies {
                self.copied.insert(image(page));
            }
        }
    }
}

impl World {
    /// Page `page` of address space `i` was a lazyfree page reclaim dropped: it reads
    /// as zero now, as if never written.
    /// mmap(MAP_FIXED) of `file` from its start, read-write, shared or private, in
    /// address space `i` at window page `page` aligned down to `align`: what it maps
    /// held nothing before.
    fn map_file(
        &mut self,
        i: usize,
        page: usize,
        align: usize,
        pages: usize,
        file: std::sync::Arc<super::shmem::Shmem>,
        shared: bool,
    ) {
        let start = WINDOW + ((page % WINDOW_PAGES) & !(align.max(1) - 1)) as u64 * 4096;
        let len = (pages.max(1) * PAGE_SIZE) as u64;
        let ino = file.ino;
        let p = &mut self.procs[i];
        let kind = if shared { MAP_SHARED } else { MAP_PRIVATE };
        let r =
            p.mm.mmap_file(start, len, VmProt::READ_WRITE, MAP_FIXED | kind, file, 0);
        self.log.push(format!(
            "mm{}: mmap({start:#x}, {len:#x}, {}) of file {ino} = {r:x?}",
            p.id,
            if shared { "SHARED" } else { "PRIVATE" }
        ));
        if r.is_ok() {
            p.discard(start, start + len);
        }
    }

    /// `shared_key_of` in address space `i`.
    fn shared_key(&self, i: usize, va: VirtAddr) -> Option<(u64, u64)> {
        shared_key_of(&self.procs[i].mm, va)
    }

    /// The file and offset that `va` reads in address space `i` through a private file
    /// mapping whose page is not copied yet.
    fn file_key(&self, i: usize, va: VirtAddr) -> Option<(u64, u64)> {
        let p = &self.procs[i];
        private_file_key_of(&p.mm, va).filter(|_| !p.copied.contains(&page_of(va.as_u64())))
    }

    /// What a load of `va` in `p` must read: the file's byte through a shared mapping
    /// or an uncopied page of a private one, else what `p` wrote there (or zero).
    fn want(&self, p: &Proc, va: VirtAddr) -> u8 {
        let uncopied =
            || private_file_key_of(&p.mm, va).filter(|_| !p.copied.contains(&page_of(va.as_u64())));
        match shared_key_of(&p.mm, va).or_else(uncopied) {
            Some(key) => self.files.get(&key).copied().unwrap_or(0),
            None => p.shadow.get(&va.as_u64()).copied().unwrap_or(0),
        }
    }

    /// Page `page` of address space `i` got a copy of its own (a write to a private
    /// file mapping): if it read the file until now, it holds the file's bytes of
    /// that page from here on.
    fn copy_out(&mut self, i: usize, page: u64) {
        let Some((ino, off)) = self.file_key(i, VirtAddr(page)) else {
            return;
        };
        let bytes: Vec<(u64, u8)> = self
            .files
            .range((ino, off)..(ino, off + PAGE_SIZE as u64))
            .map(|(&(_, o), &b)| (page + (o - off), b))
            .collect();
        let p = &mut self.procs[i];
        discard(&mut p.shadow, page, page + PAGE_SIZE as u64);
        p.shadow.extend(bytes);
        p.copied.insert(page);
        self.log.push(format!(
            "mm{}: {page:#x} copied from file {ino} offset {off:#x}",
            p.id
        ));
    }

    /// Copies made by anything but a store (MADV_POPULATE_WRITE, mlock, a pin, a
    /// debugger's write): each page of a private file mapping that maps an anonymous
    /// page now, and read the file until now, holds the file's bytes at that moment.
    fn note_copies(&mut self) {
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            let mut pages = Vec::new();
            for v in
                p.mm.vmas
                    .iter()
                    .filter(|v| v.file().is_some_and(|m| !m.shared))
            {
                p.mm.tables.for_each_leaf(v.start, v.end, |va, leaf| {
                    let pa = leaf.pa_of(va);
                    if !super::zero::is_zero(pa) && !folio::Folio::of(pa).is_file() {
                        pages.push(va.as_u64());
                    }
                });
            }
            for page in pages {
                if !self.procs[i].copied.contains(&page) {
                    self.copy_out(i, page);
                }
            }
        }
    }

    /// Every byte written to a file that `p` maps shared, or private where the page is
    /// not copied, and has faulted in reads as written there (a page not faulted in
    /// yet says nothing: it comes from the cache).
    fn check_shared(&self, p: &Proc) -> Result<(), String> {
        for v in p.mm.vmas.iter() {
            let Some((ino, origin, shared)) = file_of(v) else {
                continue;
            };
            let first = v.start.as_u64().wrapping_sub(origin);
            let end = first + (v.end.as_u64() - v.start.as_u64());
            for (&(_, off), &want) in self.files.range((ino, first)..(ino, end)) {
                let va = VirtAddr(origin.wrapping_add(off));
                if !shared && p.copied.contains(&page_of(va.as_u64())) {
                    continue;
                }
                if let Ok(w) = model::walk(p.mm.tables.env(), p.mm.tables.root(), va) {
                    let got = host::read_byte(w.pa);
                    if got != want {
                        return Err(format!(
                            "mm{}: {:#x} (file {} offset {off:#x}) holds {got:#x} (PA {}), but {want:#x} was written to the file there",
                            p.id,
                            va.as_u64(),
                            ino,
                            w.pa
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn forget_page(&mut self, i: usize, page: u64) {
        let p = &mut self.procs[i];
        discard(&mut p.shadow, page, page + PAGE_SIZE as u64);
        p.lazy.remove(&page);
    }

    /// Forget the lazyfree pages that reclaim dropped (now unmapped); a written page
    /// that is not lazyfree and is gone is then caught by `check`.
    fn forget_discarded(&mut self) {
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            let gone: Vec<u64> = p
                .lazy
                .iter()
                .copied()
                // Unmapped, not merely old (a walk faults on AF = 0 without FEAT_HAFDBS).
                .filter(|&page| p.mm.tables.get(VirtAddr(page)).is_none())
                .collect();
            for page in gone {
                self.forget_page(i, page);
            }
        }
    }
}

/// Forget the pages of `set` in `[start, end)`.
fn forget_pages(set: &mut BTreeSet<u64>, start: u64, end: u64) {
    let gone: Vec<u64> = set.range(start..end).copied().collect();
    for page in gone {
        set.remove(&page);
    }
}

/// The file and byte offset that `va` maps in `mm`, if a private file mapping covers
/// it (its pages are the file's until copied).
fn private_file_key_of(mm: &Mm<HostMachine>, va: VirtAddr) -> Option<(u64, u64)> {
    let v = mm.vmas.find(va)?;
    let m = v.file().filter(|m| !m.shared)?;
    Some((m.file.ino, va.as_u64().wrapping_sub(m.origin)))
}

/// Forget what was written in `[start, end)` (unmapped: it reads as zero now).
fn discard(shadow: &mut BTreeMap<u64, u8>, start: u64, end: u64) {
    let gone: Vec<u64> = shadow.range(start..end).map(|(&va, _)| va).collect();
    for va in gone {
        shadow.remove(&va);
    }
}
