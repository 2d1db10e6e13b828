//! `stress [SEED [OPS [v][p][t]]]`: a randomized attack on the address space, checked byte for
//! byte against a shadow of what every page must hold, and call for call against the
//! results Linux gives.
//!
//! All mappings live in one arena of [`ARENA_PAGES`] pages at a fixed address, placed
//! with MAP_FIXED_NOREPLACE (or MAP_FIXED over what is there), so the shadow is one
//! word per page indexed by address ([`Page`]): mapped or not, the protection, a
//! MADV_FREE mark, and the tag of the last write (writer pid and a per-process
//! counter). A page's content is a function of its tag and of the address, so it is
//! regenerated to check, never stored. Tag 0 is zero-filled.
//!
//! The operations, drawn from the seed: mmap of 4 KiB..8 MiB (some 64 KiB or 2 MiB
//! aligned, some PROT_READ or PROT_NONE, some MAP_POPULATE, some MAP_FIXED over
//! whatever is there), munmap, mprotect (including read-only and back to
//! read-write, the copy-on-write trap after fork), MADV_DONTNEED, MADV_FREE,
//! MADV_PAGEOUT (a lazily freed page may then read zeros), writes to lazily freed
//! pages, MADV_HUGEPAGE / NOHUGEPAGE, mincore, the per-size mTHP switches, the deferred-split
//! shrinker, writes and reads
//! of page ranges straddling 64 KiB and 2 MiB boundaries, vmsplice of up to 16 pages
//! then a write, a fork, munmap or MADV_DONTNEED/FREE/PAGEOUT over them (the pipe must
//! give back what this process's pages held: pins), and fork. A shared region
//! (MAP_SHARED|MAP_ANONYMOUS, mapped before the first fork, so every process and
//! thread maps the same pages; [`SHM`]) is written, checked and MADV_REMOVE'd by all
//! of them at once, each page under a seqlock whose tag lives in shared memory too. A child takes
//! half of the remaining operations with its own stream of the seed, checks every
//! page it inherited, and neither side's later writes may show in the other (each
//! checks its own shadow, and a parent checks everything again after a child exits).
//!
//! Expected results are Linux 6.12's: munmap is 0 even over holes; mprotect over a
//! hole applies up to the hole and returns ENOMEM; madvise over a hole applies to the
//! mapped parts and returns ENOMEM; mincore over a hole is ENOMEM; a written page is
//! resident; after MADV_FREE a page holds its old data or zeros until written.
//!
//! A mismatch prints the seed, the operation, the address, the expected and actual
//! bytes and the recent operations over that address, and exits 1; the first process
//! prints `stress: seed S: N ops in T ms, R ops/s, F forks here` and `stress: seed S
//! passed` (or `stress: seed S FAILED at op N`). With
//! `v` every operation is printed as it is done (for a process killed by a fault);
//! with `t` three threads run it at once in one address space, each over its own
//! arena ([`THREADS`]);
//! with `p` the first process keeps memory short by holding a lazily freed ballast
//! every other [`BALLAST_PERIOD`] operations (memory pressure: reclaim must discard
//! it).
#![no_std]
#![no_main]

use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use rt::fs;
use rt::mm::{self, MADV_COLLAPSE, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE};
use rt::mm::{MADV_PAGEOUT, PAGE};
use rt::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED,
};
use rt::mm::{PROT_NONE, PROT_READ, PROT_WRITE};
use rt::println;
use rt::proc::{self, WaitStatus, WNOHANG};
use rt::thp;
use rt::thread;
use rt::time;
use rt::Errno;

rt::entry!(main);

/// The arena: 256 MiB of address space at 128 GiB (2 MiB aligned, far from the image,
/// the heap and the stack on both kernels).
const ARENA: usize = 0x20_0000_0000;
const ARENA_PAGES: usize = 65536;
/// At most this many pages mapped per process (64 MiB).
const MAX_MAPPED: usize = 16384;
/// Longest mmap: 8 MiB.
const MAX_MAP_PAGES: usize = 2048;
/// Longest write or read: 512 KiB.
const MAX_IO_PAGES: usize = 128;
/// Pages per 64 KiB and per 2 MiB.
const CONT_PAGES: usize = 16;
const PMD_PAGES: usize = 512;
/// Fork depth (the first process is depth 0) and live children per process.
const MAX_DEPTH: u32 = 2;
const MAX_CHILDREN: usize = 2;
const DEFAULT_SEED: u64 = 1;
const DEFAULT_OPS: u64 = 2000;

/// One page of the shadow, packed in a u64: bit 0 readable, bit 1 writable, bit 2
/// mapped, bit 3 lazily freed (MADV_FREE, not written since), bits 8..63 the tag of
/// the content (0: zeros).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Page(u64);

impl Page {
    const UNMAPPED: Page = Page(0);
    const MAPPED: u64 = 4;
    const LAZY: u64 = 8;

    fn new(prot: usize) -> Page {
        Page(Self::MAPPED | (prot as u64 & 3))
    }
    fn mapped(self) -> bool {
        self.0 & Self::MAPPED != 0
    }
    fn prot(self) -> usize {
        (self.0 & 3) as usize
    }
    fn readable(self) -> bool {
        self.mapped() && self.prot() & PROT_READ != 0
    }
    fn writable(self) -> bool {
        self.mapped() && self.prot() & PROT_WRITE != 0
    }
    fn lazy(self) -> bool {
        self.0 & Self::LAZY != 0
    }
    fn tag(self) -> u64 {
        self.0 >> 8
    }
    fn with_prot(self, prot: usize) -> Page {
        Page((self.0 & !3) | (prot as u64 & 3))
    }
    fn with_tag(self, tag: u64) -> Page {
        Page((self.0 & 0xff & !Self::LAZY) | (tag << 8))
    }
    fn freed(self) -> Page {
        if self.tag() == 0 {
            self
        } else {
            Page(self.0 | Self::LAZY)
        }
    }
}

impl fmt::Display for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.mapped() {
            return f.write_str("unmapped");
        }
        let p = self.prot();
        let prot = ["none", "r", "w", "rw"][p];
        write!(
            f,
            "{prot} tag {:#x} (writer pid {}, write {}){}",
            self.tag(),
            self.tag() >> 24,
            self.tag() & 0xff_ffff,
            if self.lazy() { " lazyfree" } else { "" }
        )
    }
}

/// The 8 bytes at `addr` (8-aligned) of a page whose tag is `tag`.
fn word(seed: u64, tag: u64, addr: usize) -> u64 {
    if tag == 0 {
        return 0;
    }
    let mut z = seed ^ tag.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ (addr as u64 >> 3);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31) | 1
}

/// xoshiro-style generator: splitmix64, enough for choosing operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// Uniform in [lo, hi].
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// 1..=max, each power of two as likely as the next (many short, some long).
    fn log_len(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let top = 1usize << self.below(bits as usize);
        self.range(top, (2 * top - 1).min(max))
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mmap,
    MmapFixed,
    Munmap,
    Mprotect,
    Madvise,
    Mincore,
    Write,
    Read,
    Policy,
    Shrink,
    Fork,
    Splice,
    Shm,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mmap => "mmap",
            Kind::MmapFixed => "mmap(MAP_FIXED)",
            Kind::Munmap => "munmap",
            Kind::Mprotect => "mprotect",
            Kind::Madvise => "madvise",
            Kind::Mincore => "mincore",
            Kind::Write => "write",
            Kind::Read => "read",
            Kind::Policy => "policy",
            Kind::Shrink => "shrink",
            Kind::Fork => "fork",
            Kind::Splice => "vmsplice",
            Kind::Shm => "shared",
        }
    }
}

/// One entry of the history: what was done to [first, first + pages).
#[derive(Clone, Copy)]
struct Entry {
    op: u64,
    pid: u32,
    kind: Kind,
    /// The arena's first address (each thread of the threaded mode has its own).
    base: usize,
    first: usize,
    pages: usize,
    arg: usize,
    ret: isize,
}

const HISTORY: usize = 1024;

/// What the mTHP switches take (the top-level one all but `inherit`).
const POLICY_VALUES: [&str; 4] = ["always", "never", "inherit", "madvise"];

fn advice_name(a: usize) -> &'static str {
    match a {
        MADV_DONTNEED => "DONTNEED",
        MADV_FREE => "FREE",
        MADV_PAGEOUT => "PAGEOUT",
        MADV_HUGEPAGE => "HUGEPAGE",
        MADV_NOHUGEPAGE => "NOHUGEPAGE",
        25 => "COLLAPSE",
        _ => "?",
    }
}

fn prot_name(p: usize) -> &'static str {
    [
        "PROT_NONE",
        "PROT_READ",
        "PROT_WRITE",
        "PROT_READ|PROT_WRITE",
    ][p & 3]
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.base + self.first * PAGE;
        write!(f, "op {} pid {}: {}", self.op, self.pid, self.kind.name())?;
        match self.kind {
            Kind::Fork if self.ret == 0 => {
                return write!(f, ": this is the child of pid {}", self.arg)
            }
            Kind::Fork => return write!(f, ": child pid {}", self.arg),
            Kind::Policy | Kind::Shrink => {}
            _ => write!(f, " {:#x}..{:#x}", a, a + self.pages * PAGE)?,
        }
        match self.kind {
            Kind::Mmap | Kind::MmapFixed => write!(
                f,
                " {}{}",
                prot_name(self.arg),
                if self.arg & MAP_POPULATE != 0 {
                    " MAP_POPULATE"
                } else {
                    ""
                }
            )?,
            Kind::Mprotect => write!(f, " {}", prot_name(self.arg))?,
            Kind::Madvise => write!(f, " MADV_{}", advice_name(self.arg))?,
            Kind::Write => write!(f, " write {}", self.arg)?,
            Kind::Policy if self.arg >> 4 == 0 => {
                write!(f, " enabled {}", POLICY_VALUES[self.arg & 3])?
            }
            Kind::Policy => write!(
                f,
                " hugepages-{}kB {}",
                self.arg >> 4,
                POLICY_VALUES[self.arg & 3]
            )?,
            _ => {}
        }
        match sys_result(self.ret) {
            Ok(v) => write!(f, " = {v:#x}"),
            Err(e) => write!(f, " = {e}"),
        }
    }
}

fn sys_result(ret: isize) -> Result<usize, Errno> {
    rt::sys::result(ret)
}

fn raw(r: Result<usize, Errno>) -> isize {
    match r {
        Ok(v) => v as isize,
        Err(e) => -(e.0 as isize),
    }
}

/// The state of one process: its shadow, its history, its random stream.
struct Stress {
    seed: u64,
    /// The arena's first address: [`ARENA`], or the thread's own in the threaded mode.
    arena: usize,
    rng: Rng,
    /// Operations done by this process, and left for it to do.
    op: u64,
    left: u64,
    pid: u32,
    depth: u32,
    writes: u64,
    forks: u64,
    mapped: usize,
    shadow: &'static mut [Page],
    history: [Option<Entry>; HISTORY],
    next_entry: usize,
    children: [usize; MAX_CHILDREN],
    /// Whether the mTHP switches are writable (false after the first refusal).
    policy_ok: bool,
    /// The shrinker of the deferred-split queue (contkernel:
    /// transparent_hugepage/shrink_deferred; Linux: vm/drop_caches = 2, which runs
    /// every shrinker), None from the first refusal on.
    shrinker: Option<(&'static core::ffi::CStr, &'static [u8])>,
    /// Print every operation as it is done (third argument `v`).
    verbose: bool,
    /// Memory pressure (third argument `p`): the first process holds a ballast of all
    /// but [`BALLAST_MARGIN_KB`] of free memory every other [`BALLAST_PERIOD`]
    /// operations (outside the arena, populated with MADV_POPULATE_WRITE, whose ENOMEM
    /// is allowed, then MADV_FREE'd), so the arena's faults find memory only if
    /// reclaim discards lazily freed folios: a reclaim that cannot reach them ends
    /// in an OOM kill, which fails the seed.
    pressure: bool,
    ballast: Option<(usize, usize)>,
}

/// Operations between taking and dropping the ballast.
const BALLAST_PERIOD: u64 = 64;
/// Free memory the ballast leaves (kB), for the arena's faults and the kernel.
const BALLAST_MARGIN_KB: u64 = 32 * 1024;

/// What went wrong: printed by `fail`, then the process exits 1.
enum Failure {
    Data {
        addr: usize,
        expected: u64,
        actual: u64,
        page: Page,
    },
    Call {
        what: Entry,
        expected: isize,
    },
    Child {
        pid: usize,
        status: WaitStatus,
    },
    Fork(Errno),
    Resident {
        addr: usize,
        page: Page,
    },
}

impl Stress {
    fn new(seed: u64, ops: u64, arena: usize) -> Stress {
        let bytes = ARENA_PAGES * core::mem::size_of::<Page>();
        let addr = mm::map_anon(bytes, PROT_READ | PROT_WRITE, 0).expect("mmap of the shadow");
        // SAFETY: a fresh zero-filled private mapping of ARENA_PAGES words that
        // nothing else references and that is never unmapped; Page(0) is UNMAPPED.
        let shadow = unsafe { core::slice::from_raw_parts_mut(addr as *mut Page, ARENA_PAGES) };
        Stress {
            seed,
            arena,
            rng: Rng(seed ^ 0x5eed_0000_0000_0000),
            op: 0,
            left: ops,
            pid: proc::getpid().unwrap_or(0) as u32,
            depth: 0,
            writes: 0,
            forks: 0,
            mapped: 0,
            shadow,
            history: [None; HISTORY],
            next_entry: 0,
            children: [0; MAX_CHILDREN],
            policy_ok: true,
            shrinker: Some(if thp::on_contkernel() {
                (c"/sys/kernel/mm/transparent_hugepage/shrink_deferred", b"1")
            } else {
                (c"/proc/sys/vm/drop_caches", b"2")
            }),
            verbose: false,
            pressure: false,
            ballast: None,
        }
    }

    /// Takes or drops the ballast (see `pressure`); its results are not checked.
    fn toggle_ballast(&mut self) {
        if let Some((addr, len)) = self.ballast.take() {
            // SAFETY: the ballast is this program's own mapping, referenced by nothing.
            let _ = unsafe { mm::munmap(addr, len) };
            return;
        }
        let free_kb = thp::meminfo_kb("MemFree").unwrap_or(0);
        let len =
            (free_kb.saturating_sub(BALLAST_MARGIN_KB) as usize * 1024) & !(PMD_PAGES * PAGE - 1);
        if len == 0 {
            return;
        }
        if let Ok(addr) = mm::map_anon(len, PROT_READ | PROT_WRITE, 0) {
            // SAFETY: as above.
            unsafe {
                let _ = mm::madvise(addr, len, mm::MADV_POPULATE_WRITE);
                let _ = mm::madvise(addr, len, MADV_FREE);
            }
            self.ballast = Some((addr, len));
        }
    }

    fn addr(&self, first: usize) -> usize {
        self.arena + first * PAGE
    }

    fn log(&mut self, kind: Kind, first: usize, pages: usize, arg: usize, ret: isize) -> Entry {
        let e = Entry {
            op: self.op,
            pid: self.pid,
            kind,
            base: self.arena,
            first,
            pages,
            arg,
            ret,
        };
        if self.verbose {
            println!("stress: {e}");
        }
        self.history[self.next_entry % HISTORY] = Some(e);
        self.next_entry += 1;
        e
    }

    /// Checks a call's result against Linux's.
    fn expect(&self, e: Entry, expected: Result<usize, Errno>) -> Result<(), Failure> {
        if e.ret == raw(expected) {
            Ok(())
        } else {
            Err(Failure::Call {
                what: e,
                expected: raw(expected),
            })
        }
    }

    fn set(&mut self, i: usize, p: Page) {
        let was = self.shadow[i].mapped();
        if was != p.mapped() {
            if p.mapped() {
                self.mapped += 1;
            } else {
                self.mapped -= 1;
            }
        }
        self.shadow[i] = p;
    }

    /// A page range [first, first + pages) inside the arena: around a mapped page
    /// most of the time, straddling a 64 KiB or 2 MiB boundary often, anywhere
    /// sometimes.
    fn pick(&mut self, max: usize) -> (usize, usize) {
        let pages = self.rng.log_len(max);
        let mut anchor = self.rng.below(ARENA_PAGES);
        if !self.rng.chance(15) {
            for _ in 0..64 {
                let i = self.rng.below(ARENA_PAGES);
                if self.shadow[i].mapped() {
                    anchor = i;
                    break;
                }
            }
        }
        let first = match self.rng.below(3) {
            0 => anchor.saturating_sub(self.rng.below(pages)),
            1 => {
                let unit = if self.rng.chance(50) {
                    CONT_PAGES
                } else {
                    PMD_PAGES
                };
                let boundary = anchor.div_ceil(unit) * unit;
                boundary.saturating_sub(self.rng.range(1, pages.max(2) - 1).min(boundary))
            }
            _ => anchor,
        };
        let first = first.min(ARENA_PAGES - 1);
        (first, pages.min(ARENA_PAGES - first))
    }

    /// An unmapped range of `pages` starting at a multiple of `align` pages: random
    /// places, or right after a mapped page (so the kernel may merge the VMAs).
    fn free_range(&mut self, pages: usize, align: usize) -> Option<usize> {
        for attempt in 0..48 {
            let mut first = self.rng.below(ARENA_PAGES - pages) / align * align;
            if attempt % 2 == 0 && align == 1 {
                let i = self.rng.below(ARENA_PAGES - 1);
                if self.shadow[i].mapped() {
                    first = i + 1;
                }
            }
            if first + pages <= ARENA_PAGES
                && self.shadow[first..first + pages]
                    .iter()
                    .all(|p| !p.mapped())
            {
                return Some(first);
            }
        }
        None
    }

    fn random_prot(&mut self) -> usize {
        match self.rng.below(10) {
            0 => PROT_NONE,
            1 => PROT_READ,
            _ => PROT_READ | PROT_WRITE,
        }
    }

    /// A new mapping in a hole (MAP_FIXED_NOREPLACE): zero-filled.
    fn op_mmap(&mut self) -> Result<(), Failure> {
        let pages = self.rng.log_len(MAX_MAP_PAGES);
        if self.mapped + pages > MAX_MAPPED {
            return self.op_munmap();
        }
        let align = match self.rng.below(4) {
            0 => CONT_PAGES,
            1 => PMD_PAGES,
            _ => 1,
        };
        let Some(first) = self.free_range(pages, align) else {
            return self.op_munmap();
        };
        // MAP_FIXED_NOREPLACE: the range is a hole, and the call fails rather than
        // replace anything.
        self.map_pages(Kind::Mmap, first, pages, MAP_FIXED_NOREPLACE)
    }

    /// mmap of `pages` from `first` with a random protection, sometimes populated, at
    /// that address (`fixed`: MAP_FIXED or MAP_FIXED_NOREPLACE); the shadow then says
    /// zeros.
    fn map_pages(
        &mut self,
        kind: Kind,
        first: usize,
        pages: usize,
        fixed: usize,
    ) -> Result<(), Failure> {
        let prot = self.random_prot();
        let populate = if self.rng.chance(20) { MAP_POPULATE } else { 0 };
        let addr = self.addr(first);
        // SAFETY: inside the arena, which no Rust reference points into.
        let r = unsafe {
            mm::mmap(
                addr,
                pages * PAGE,
                prot,
                MAP_PRIVATE | MAP_ANONYMOUS | fixed | populate,
                -1,
                0,
            )
        };
        let e = self.log(kind, first, pages, prot | populate, raw(r));
        self.expect(e, Ok(addr))?;
        for i in first..first + pages {
            self.set(i, Page::new(prot));
        }
        Ok(())
    }

    /// MAP_FIXED over a random range: whatever was there is replaced by zeros.
    fn op_mmap_fixed(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_MAP_PAGES);
        let new = self.shadow[first..first + pages]
            .iter()
            .filter(|p| !p.mapped())
            .count();
        if self.mapped + new > MAX_MAPPED {
            return self.op_munmap();
        }
        self.map_pages(Kind::MmapFixed, first, pages, MAP_FIXED)
    }

    /// munmap is 0 over any page-aligned range, holes included.
    fn op_munmap(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_MAP_PAGES);
        // SAFETY: inside the arena, which no Rust reference points into.
        let r = unsafe { mm::munmap(self.addr(first), pages * PAGE) };
        let e = self.log(Kind::Munmap, first, pages, 0, raw(r));
        self.expect(e, Ok(0))?;
        for i in first..first + pages {
            self.set(i, Page::UNMAPPED);
        }
        Ok(())
    }

    /// mprotect applies from the start up to the first hole; a hole anywhere in the
    /// range (or at its start) is ENOMEM.
    fn op_mprotect(&mut self, first: usize, pages: usize, prot: usize) -> Result<(), Failure> {
        // SAFETY: inside the arena, which no Rust reference points into.
        let r = unsafe { mm::mprotect(self.addr(first), pages * PAGE, prot) };
        let e = self.log(Kind::Mprotect, first, pages, prot, raw(r));
        let range = first..first + pages;
        let hole = range.clone().find(|&i| !self.shadow[i].mapped());
        self.expect(
            e,
            if hole.is_some() {
                Err(Errno::ENOMEM)
            } else {
                Ok(0)
            },
        )?;
        for i in first..hole.unwrap_or(first + pages) {
            let p = self.shadow[i].with_prot(prot);
            self.set(i, p);
        }
        Ok(())
    }

    /// madvise applies to every mapped part and is ENOMEM if there is a hole.
    fn op_madvise(&mut self, advice: usize) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_MAP_PAGES);
        self.madvise_at(first, pages, advice)
    }

    fn madvise_at(&mut self, first: usize, pages: usize, advice: usize) -> Result<(), Failure> {
        // SAFETY: inside the arena, which no Rust reference points into.
        let r = unsafe { mm::madvise(self.addr(first), pages * PAGE, advice) };
        let e = self.log(Kind::Madvise, first, pages, advice, raw(r));
        let range = first..first + pages;
        let hole = range.clone().any(|i| !self.shadow[i].mapped());
        self.expect(e, if hole { Err(Errno::ENOMEM) } else { Ok(0) })?;
        for i in range {
            let p = self.shadow[i];
            if p.mapped() {
                match advice {
                    MADV_DONTNEED => self.set(i, p.with_tag(0)),
                    MADV_FREE => self.set(i, p.freed()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// MADV_COLLAPSE (25): the contents stay as they are whatever it does; it may
    /// succeed or fail as Linux's does (EINVAL, ENOMEM, EAGAIN, EBUSY), and a hole is
    /// ENOMEM unless a piece failed first.
    fn op_collapse(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_MAP_PAGES);
        // SAFETY: inside the arena, which no Rust reference points into.
        let r = unsafe { mm::madvise(self.addr(first), pages * PAGE, MADV_COLLAPSE) };
        let e = self.log(Kind::Madvise, first, pages, MADV_COLLAPSE, raw(r));
        match r {
            Ok(0) | Err(Errno::EINVAL | Errno::ENOMEM | Errno::EAGAIN | Errno::EBUSY) => Ok(()),
            _ => self.expect(e, Ok(0)),
        }
    }

    /// mincore is ENOMEM over a hole; a page written since its last DONTNEED or FREE
    /// is resident (there is no swap).
    fn op_mincore(&mut self) -> Result<(), Failure> {
        const MAX: usize = 1024;
        let (first, pages) = self.pick(MAX);
        let mut vec = [0u8; MAX];
        let r = mm::mincore(self.addr(first), pages * PAGE, &mut vec[..pages]);
        let e = self.log(Kind::Mincore, first, pages, 0, raw(r));
        let range = first..first + pages;
        let hole = range.clone().any(|i| !self.shadow[i].mapped());
        self.expect(e, if hole { Err(Errno::ENOMEM) } else { Ok(0) })?;
        if !hole {
            for (k, i) in range.enumerate() {
                let p = self.shadow[i];
                if p.tag() != 0 && !p.lazy() && vec[k] & 1 == 0 {
                    return Err(Failure::Resident {
                        addr: self.addr(i),
                        page: p,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes a new tag over every writable page of a range.
    fn op_write(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_IO_PAGES);
        self.write_range(first, pages)
    }

    /// A new tag over every writable page of `pages` from `first`, in the shadow too.
    fn write_range(&mut self, first: usize, pages: usize) -> Result<(), Failure> {
        self.writes += 1;
        let tag = (self.pid as u64) << 24 | (self.writes & 0xff_ffff);
        self.log(Kind::Write, first, pages, self.writes as usize, 0);
        for i in first..first + pages {
            let p = self.shadow[i];
            if p.writable() {
                self.fill(i, tag);
                self.set(i, p.with_tag(tag));
            }
        }
        Ok(())
    }

    fn fill(&self, i: usize, tag: u64) {
        let base = self.addr(i);
        for a in (base..base + PAGE).step_by(8) {
            // SAFETY: a writable page of the arena (the shadow says so); no Rust
            // reference points into the arena.
            unsafe { core::ptr::write_volatile(a as *mut u64, word(self.seed, tag, a)) };
        }
    }

    /// Checks every readable page of [first, first + pages).
    fn check(&mut self, first: usize, pages: usize) -> Result<(), Failure> {
        for i in first..first + pages {
            let p = self.shadow[i];
            if p.readable() {
                self.check_page(i, p)?;
            }
        }
        Ok(())
    }

    fn check_page(&mut self, i: usize, p: Page) -> Result<(), Failure> {
        let base = self.addr(i);
        // SAFETY: a readable page of the arena; no Rust reference points into it.
        let load = |a: usize| unsafe { core::ptr::read_volatile(a as *const u64) };
        let bad = (base..base + PAGE)
            .step_by(8)
            .find(|&a| load(a) != word(self.seed, p.tag(), a));
        let Some(addr) = bad else { return Ok(()) };
        // A lazily freed page may have been reclaimed: zeros, all of it.
        if p.lazy() && (base..base + PAGE).step_by(8).all(|a| load(a) == 0) {
            self.shadow[i] = p.with_tag(0);
            return Ok(());
        }
        Err(Failure::Data {
            addr,
            expected: word(self.seed, p.tag(), addr),
            actual: load(addr),
            page: p,
        })
    }

    /// Writes the lazily freed pages of a range (their folios must then be kept).
    fn op_redirty(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_IO_PAGES);
        for i in first..first + pages {
            if self.shadow[i].lazy() && self.shadow[i].writable() {
                self.write_range(i, 1)?;
            }
        }
        Ok(())
    }

    /// vmsplice (pins): up to 16 readable pages into a fresh pipe, then one of: this
    /// process writes them, a child writes them (fork), this process writes them
    /// while a child maps them, munmap, MADV_DONTNEED, MADV_FREE then MADV_PAGEOUT. The pipe then gives what this process's pages held
    /// while it mapped them: its own later writes, never the child's (Linux's pins,
    /// and this kernel's, unshare a page before a read-only pin and fork copies a
    /// pinned one).
    fn op_splice(&mut self) -> Result<(), Failure> {
        const MAX: usize = 16;
        let (first, pages) = self.pick(MAX);
        let k = (first..first + pages)
            .take_while(|&i| self.shadow[i].readable())
            .count();
        if k == 0 {
            return self.op_read();
        }
        let Ok((rd, w)) = rt::pipe::pipe2(0) else {
            return self.op_read();
        };
        let iov = [self.addr(first), k * PAGE];
        // SAFETY: the iovec names readable pages of the arena.
        let r = unsafe { rt::syscall!(rt::sys::nr::VMSPLICE, w, iov.as_ptr(), 1, 0) };
        let what = self.rng.below(6);
        let e = self.log(Kind::Splice, first, k, what, raw(r));
        let spliced = self.expect(e, Ok(k * PAGE));
        let mut tags = [0u64; MAX];
        for (j, t) in tags.iter_mut().enumerate().take(k) {
            *t = self.shadow[first + j].tag();
        }
        let before = tags;
        let r = spliced.and_then(|()| self.after_splice(first, k, what, &mut tags));
        // Linux's vmsplice takes plain references, not pins (`iov_iter_get_pages2`): a
        // page shared when spliced (since a fork) is copied at this process's next
        // write, and the pipe keeps the bytes of before. This kernel pins, unsharing
        // first, so the pipe always has this process's latest bytes.
        let stale_ok = (!thp::on_contkernel()).then_some(&before[..]);
        let r = r.and_then(|()| self.drain_splice(rd, first, k, &tags, stale_ok));
        let _ = fs::close(rd);
        let _ = fs::close(w);
        r
    }

    /// The change after a vmsplice of `k` pages from `first` (`op_splice`); `tags`
    /// become what the pipe must give.
    fn after_splice(
        &mut self,
        first: usize,
        k: usize,
        what: usize,
        tags: &mut [u64],
    ) -> Result<(), Failure> {
        match what {
            0 => {
                self.write_range(first, k)?;
                for (j, t) in tags.iter_mut().enumerate().take(k) {
                    *t = self.shadow[first + j].tag();
                }
                Ok(())
            }
            1 => {
                let tag = u64::MAX >> 8;
                let st = proc::fork_wait(|| {
                    for i in first..first + k {
                        if self.shadow[i].writable() {
                            self.fill(i, tag);
                        }
                    }
                    0
                });
                self.log(Kind::Fork, first, k, 0, raw(st.map(|s| s.0 as usize)));
                match st {
                    Ok(s) if s.exited() && s.exit_status() == 0 => Ok(()),
                    Ok(s) => Err(Failure::Child { pid: 0, status: s }),
                    Err(e) => Err(Failure::Fork(e)),
                }
            }
            2 => {
                // SAFETY: inside the arena, which no Rust reference points into.
                let r = unsafe { mm::munmap(self.addr(first), k * PAGE) };
                let e = self.log(Kind::Munmap, first, k, 0, raw(r));
                self.expect(e, Ok(0))?;
                for i in first..first + k {
                    self.set(i, Page::UNMAPPED);
                }
                Ok(())
            }
            3 => self.madvise_at(first, k, MADV_DONTNEED),
            4 => {
                // This process writes while a child still maps the pages: its writes
                // must reach the pipe (a fork that shared the pinned pages would have
                // the write copy them away from the pin).
                let Ok((go_r, go_w)) = rt::pipe::pipe2(0) else {
                    return Ok(());
                };
                let child = proc::spawn(|| {
                    let mut b = [0u8];
                    let _ = fs::read(go_r, &mut b);
                    0
                });
                self.log(Kind::Fork, first, k, 1, raw(child));
                let r = self.write_range(first, k);
                let _ = fs::write(go_w, b"g");
                let _ = fs::close(go_r);
                let _ = fs::close(go_w);
                if let Ok(pid) = child {
                    let _ = proc::wait(pid);
                }
                for (j, t) in tags.iter_mut().enumerate().take(k) {
                    *t = self.shadow[first + j].tag();
                }
                r
            }
            _ => {
                self.madvise_at(first, k, MADV_FREE)?;
                self.madvise_at(first, k, MADV_PAGEOUT)
            }
        }
    }

    /// Read the `k` spliced pages back from `rd`, page by page, and compare them with
    /// `tags` at their addresses (or, where `or` is given, with those).
    fn drain_splice(
        &mut self,
        rd: usize,
        first: usize,
        k: usize,
        tags: &[u64],
        or: Option<&[u64]>,
    ) -> Result<(), Failure> {
        let mut buf = [0u64; PAGE / 8];
        for (j, &tag) in tags.iter().enumerate().take(k) {
            // SAFETY: `buf` is this function's, PAGE bytes.
            let bytes =
                unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, PAGE) };
            let mut done = 0;
            while done < PAGE {
                match fs::read(rd, &mut bytes[done..]) {
                    Ok(n) if n > 0 => done += n,
                    r => {
                        let e = self.log(Kind::Splice, first + j, 1, 0, raw(r));
                        return self.expect(e, Ok(PAGE));
                    }
                }
            }
            let base = self.addr(first + j);
            let holds =
                |tag: u64| (0..PAGE / 8).all(|w| buf[w] == word(self.seed, tag, base + w * 8));
            if or.is_some_and(|old| holds(old[j])) {
                continue;
            }
            if let Some(w) = (0..PAGE / 8).find(|&w| buf[w] != word(self.seed, tag, base + w * 8)) {
                return Err(Failure::Data {
                    addr: base + w * 8,
                    expected: word(self.seed, tag, base + w * 8),
                    actual: buf[w],
                    page: self.shadow[first + j],
                });
            }
        }
        Ok(())
    }

    /// Writes a new tag over up to 16 pages of the shared region, each under its
    /// seqlock (`Shm`): a page another process or thread is writing is skipped.
    fn op_shm_write(&mut self) -> Result<(), Failure> {
        let first = self.rng.below(SHM_PAGES);
        let pages = self.rng.range(1, 16).min(SHM_PAGES - first);
        self.writes += 1;
        let tag = (self.pid as u64) << 24 | (self.writes & 0xff_ffff);
        self.log(Kind::Shm, first, pages, 1, 0);
        for i in first..first + pages {
            let t = shm_tag(i);
            let old = t.load(Acquire);
            if old == BUSY || t.compare_exchange(old, BUSY, Acquire, Relaxed).is_err() {
                continue;
            }
            let base = SHM + i * PAGE;
            for a in (base..base + PAGE).step_by(8) {
                // SAFETY: a page of the shared region, mapped read-write in every
                // process of the run; no Rust reference points into it.
                unsafe { core::ptr::write_volatile(a as *mut u64, word(shm_seed(), tag, a)) };
            }
            t.store(tag, Release);
        }
        Ok(())
    }

    /// Checks up to 64 pages of the shared region against their tags (`shm_check`).
    fn op_shm_check(&mut self) -> Result<(), Failure> {
        let first = self.rng.below(SHM_PAGES);
        let pages = self.rng.range(1, 64).min(SHM_PAGES - first);
        self.log(Kind::Shm, first, pages, 0, 0);
        self.shm_check(first, pages)
    }

    /// Page by page: the tag, the page, the tag again; a page whose tag stayed the same
    /// (and not BUSY) must hold that tag's words, whoever wrote it, in whichever
    /// process: every process maps the same shared pages.
    fn shm_check(&self, first: usize, pages: usize) -> Result<(), Failure> {
        for i in first..first + pages {
            let t = shm_tag(i);
            let tag = t.load(Acquire);
            if tag == BUSY {
                continue;
            }
            let base = SHM + i * PAGE;
            // SAFETY: as in `op_shm_write`.
            let load = |a: usize| unsafe { core::ptr::read_volatile(a as *const u64) };
            let bad = (base..base + PAGE)
                .step_by(8)
                .find(|&a| load(a) != word(shm_seed(), tag, a));
            core::sync::atomic::fence(Acquire);
            if let Some(addr) = bad.filter(|_| t.load(Relaxed) == tag) {
                return Err(Failure::Data {
                    addr,
                    expected: word(shm_seed(), tag, addr),
                    actual: load(addr),
                    page: Page::new(PROT_READ | PROT_WRITE).with_tag(tag),
                });
            }
        }
        Ok(())
    }

    /// MADV_REMOVE of one page of the shared region (held under its seqlock): the file
    /// behind it frees the page, every process then reads zeros there.
    fn op_shm_remove(&mut self) -> Result<(), Failure> {
        let i = self.rng.below(SHM_PAGES);
        let t = shm_tag(i);
        let old = t.load(Acquire);
        if old == BUSY || t.compare_exchange(old, BUSY, Acquire, Relaxed).is_err() {
            return Ok(());
        }
        // SAFETY: one page of the shared region, which no Rust reference points into.
        let r = unsafe { mm::madvise(SHM + i * PAGE, PAGE, mm::MADV_REMOVE) };
        let e = self.log(Kind::Shm, i, 1, mm::MADV_REMOVE, raw(r));
        t.store(if r.is_ok() { 0 } else { old }, Release);
        self.expect(e, Ok(0))
    }

    fn op_read(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_IO_PAGES);
        self.log(Kind::Read, first, pages, 0, 0);
        self.check(first, pages)
    }

    /// The copy-on-write trap: a range made read-only and read-write again, then
    /// written (after a fork the pages are shared: the write must copy).
    fn op_protect_cycle(&mut self) -> Result<(), Failure> {
        let (first, pages) = self.pick(MAX_IO_PAGES);
        self.op_mprotect(first, pages, PROT_READ)?;
        self.check(first, pages)?;
        self.op_mprotect(first, pages, PROT_READ | PROT_WRITE)?;
        self.write_range(first, pages)
    }

    /// Writes one of always / never / inherit / madvise to a size's switch (or
    /// always / madvise / never to the top-level one); skipped from the first
    /// refusal on (not root, read-only sysfs, no such file).
    fn op_policy(&mut self) -> Result<(), Failure> {
        if !self.policy_ok {
            return Ok(());
        }
        let k = self.rng.below(thp::SIZES_KB.len() + 1);
        let (mut path, kb, v) = if k == thp::SIZES_KB.len() {
            (thp::top_path(), 0, [0, 1, 3][self.rng.below(3)])
        } else {
            let kb = thp::SIZES_KB[k];
            (thp::size_path(kb, "enabled"), kb, self.rng.below(4))
        };
        let value = POLICY_VALUES[v];
        let r = fs::write_file(path.as_cstr(), value.as_bytes());
        self.log(Kind::Policy, 0, 0, kb << 4 | v, raw(r));
        match r {
            Ok(n) if n == value.len() => {}
            Ok(_) | Err(_) => {
                println!("stress: {path}: {value}: {r:?}: not changing the mTHP policy");
                self.policy_ok = false;
            }
        }
        Ok(())
    }

    /// Runs the deferred-split shrinker now: folios cut by munmap, MADV_DONTNEED or
    /// copy-on-write are split while other processes fault, copy and unmap.
    fn op_shrink(&mut self) -> Result<(), Failure> {
        let Some((path, value)) = self.shrinker else {
            return Ok(());
        };
        let r = fs::write_file(path, value);
        self.log(Kind::Shrink, 0, 0, 0, raw(r));
        if r.is_err() {
            println!("stress: {path:?}: {r:?}: not running the shrinker");
            self.shrinker = None;
        }
        Ok(())
    }

    /// Forks a child that takes half of the operations left, with its own stream.
    fn op_fork(&mut self) -> Result<(), Failure> {
        self.reap(WNOHANG)?;
        let Some(slot) = self.children.iter().position(|&c| c == 0) else {
            return self.op_read();
        };
        if self.depth >= MAX_DEPTH || self.left < 4 {
            return self.op_read();
        }
        let child_ops = self.left / 2;
        let child_seed = self.rng.next();
        match proc::fork() {
            Err(e) => {
                self.log(Kind::Fork, 0, 0, 0, raw(Err(e)));
                Err(Failure::Fork(e))
            }
            Ok(0) => {
                let parent = self.pid as usize;
                self.pid = proc::getpid().unwrap_or(0) as u32;
                self.depth += 1;
                self.rng = Rng(child_seed);
                self.left = child_ops;
                self.children = [0; MAX_CHILDREN];
                if let Some((addr, len)) = self.ballast.take() {
                    // The parent's to hold and drop: this copy would keep it alive.
                    // SAFETY: as in `toggle_ballast`.
                    let _ = unsafe { mm::munmap(addr, len) };
                }
                self.log(Kind::Fork, 0, 0, parent, 0);
                // The inheritance: everything the parent had.
                self.check(0, ARENA_PAGES)
            }
            Ok(pid) => {
                self.left -= child_ops;
                self.forks += 1;
                self.children[slot] = pid;
                self.log(Kind::Fork, 0, 0, pid, pid as isize);
                Ok(())
            }
        }
    }

    /// Reaps children (`options` 0: all of them); each must have exited 0. After a
    /// child is gone, every page is checked again (its writes must not show here).
    fn reap(&mut self, options: usize) -> Result<(), Failure> {
        for slot in 0..MAX_CHILDREN {
            let pid = self.children[slot];
            if pid == 0 {
                continue;
            }
            match proc::wait4(pid as isize, options) {
                Ok((0, _)) => continue,
                Ok((_, status)) => {
                    self.children[slot] = 0;
                    if !(status.exited() && status.exit_status() == 0) {
                        return Err(Failure::Child { pid, status });
                    }
                    self.check(0, ARENA_PAGES)?;
                }
                Err(e) => {
                    self.children[slot] = 0;
                    println!("stress: wait4({pid}): {e}");
                    return Err(Failure::Child {
                        pid,
                        status: WaitStatus(0xffff),
                    });
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), Failure> {
        match self.rng.below(100) {
            0..=9 => self.op_mmap(),
            10..=12 => self.op_mmap_fixed(),
            13..=19 => self.op_munmap(),
            20..=27 => {
                let (first, pages) = self.pick(MAX_MAP_PAGES);
                let prot = self.random_prot();
                self.op_mprotect(first, pages, prot)
            }
            28..=31 => self.op_protect_cycle(),
            32..=37 => self.op_madvise(MADV_DONTNEED),
            38..=43 => self.op_madvise(MADV_FREE),
            44..=47 => self.op_madvise(MADV_HUGEPAGE),
            48..=49 => self.op_madvise(MADV_NOHUGEPAGE),
            50..=51 => self.op_mincore(),
            52 => self.op_madvise(MADV_PAGEOUT),
            53..=55 => self.op_policy(),
            56..=58 => self.op_fork(),
            59..=77 => self.op_write(),
            78..=79 => self.op_redirty(),
            80..=81 => self.op_shrink(),
            82..=83 => self.op_collapse(),
            84..=85 => self.op_splice(),
            86..=88 => self.op_shm_write(),
            89..=90 => self.op_shm_check(),
            91 => self.op_shm_remove(),
            _ => self.op_read(),
        }
    }

    /// Runs the operations left, then checks everything, waits for the children and
    /// checks everything again.
    fn run(&mut self) -> Result<(), Failure> {
        while self.left > 0 {
            self.left -= 1;
            self.op += 1;
            self.step()?;
            if self.op.is_multiple_of(256) {
                self.check(0, ARENA_PAGES)?;
            }
            if self.pressure && self.depth == 0 && self.op.is_multiple_of(BALLAST_PERIOD) {
                self.toggle_ballast();
            }
        }
        if let Some((addr, len)) = self.ballast.take() {
            // SAFETY: as in `toggle_ballast`.
            let _ = unsafe { mm::munmap(addr, len) };
        }
        self.check(0, ARENA_PAGES)?;
        self.reap(0)?;
        self.check(0, ARENA_PAGES)?;
        self.shm_check(0, SHM_PAGES)
    }

    /// Which write of which process (pids near this one, writes up to a few thousand
    /// past this process's count) put `value` at `addr`, if any: names the side a
    /// leak came from.
    fn whose(&self, addr: usize, value: u64) -> Option<(u64, u64)> {
        let pids = (self.pid as u64).saturating_sub(32)..self.pid as u64 + 32;
        pids.flat_map(|pid| (1..self.writes + 4096).map(move |w| (pid, w)))
            .find(|&(pid, w)| word(self.seed, pid << 24 | w, addr) == value)
    }

    /// Prints what went wrong with the history of the address.
    fn report(&self, f: &Failure) {
        let head = |what: fmt::Arguments<'_>| {
            println!(
                "stress: MISMATCH seed {} op {} pid {} depth {}: {what}",
                self.seed, self.op, self.pid, self.depth
            )
        };
        let mut addr = None;
        match f {
            Failure::Data {
                addr: a,
                expected,
                actual,
                page,
            } => {
                head(format_args!(
                    "at {a:#x}: expected {:02x?} actual {:02x?} (page {page})",
                    expected.to_le_bytes(),
                    actual.to_le_bytes()
                ));
                addr = Some(*a);
                if let Some((pid, w)) = self.whose(*a, *actual) {
                    println!(
                        "stress:   the actual bytes are write {w} of pid {pid} at this address"
                    );
                }
            }
            Failure::Call { what, expected } => {
                let want = match sys_result(*expected) {
                    Ok(v) => Text::from_fmt(format_args!("{v:#x}")),
                    Err(e) => Text::from_fmt(format_args!("{e}")),
                };
                head(format_args!("{what}, expected {want} (Linux)"));
                addr = Some(self.addr(what.first));
            }
            Failure::Child { pid, status } => {
                head(format_args!("child pid {pid} {status}"));
            }
            Failure::Fork(e) => head(format_args!("fork: {e} (Linux: succeeds)")),
            Failure::Resident { addr: a, page } => {
                head(format_args!(
                    "mincore: written page {a:#x} not resident ({page})"
                ));
                addr = Some(*a);
            }
        }
        let n = self.next_entry.min(HISTORY);
        let recent = (0..n).map(|k| (self.next_entry - n + k) % HISTORY);
        let in_arena = |a: &usize| (self.arena..self.arena + ARENA_PAGES * PAGE).contains(a);
        if let Some(a) = addr.filter(in_arena) {
            let i = (a - self.arena) / PAGE;
            println!(
                "stress:   page now {}; history of {:#x}:",
                self.shadow[i],
                a & !(PAGE - 1)
            );
            for e in recent.clone().filter_map(|k| self.history[k]) {
                if e.kind != Kind::Read
                    && (e.kind == Kind::Fork || (e.first <= i && i < e.first + e.pages))
                {
                    println!("stress:     {e}");
                }
            }
        }
        println!("stress:   last operations:");
        for e in recent
            .skip(n.saturating_sub(6))
            .filter_map(|k| self.history[k])
        {
            println!("stress:     {e}");
        }
    }
}

/// The shared region: `SHM_PAGES` pages of MAP_SHARED|MAP_ANONYMOUS memory at `SHM`,
/// mapped by the first process before anything forks (so every process and thread of
/// the run maps the same pages), with one tag per page in another shared mapping at
/// `SHM_TAGS`. A page is written under a seqlock: the writer swaps the tag for `BUSY`,
/// writes, stores the new tag; a reader checks a page only if its tag was the same
/// before and after it read it. MADV_REMOVE (tag 0: zeros) frees a page for all.
const SHM: usize = ARENA - 0x1_0000_0000;
const SHM_PAGES: usize = 1024;
const SHM_TAGS: usize = SHM + SHM_PAGES * PAGE + PMD_PAGES * PAGE;
const BUSY: u64 = u64::MAX;

/// The seed of the shared region's contents: the run's, whichever thread or process
/// (each has a seed of its own for its arena) writes or reads.
fn shm_seed() -> u64 {
    SEED.load(Relaxed)
}

/// The tag of shared page `i`.
fn shm_tag(i: usize) -> &'static AtomicU64 {
    // SAFETY: SHM_TAGS is a shared mapping of SHM_PAGES words made by `map_shm` before
    // any operation runs, never unmapped; AtomicU64 has the layout of u64.
    unsafe { &*((SHM_TAGS + i * 8) as *const AtomicU64) }
}

/// Maps the shared region and its tags (zeros: tag 0) at their fixed addresses.
fn map_shm() -> Result<(), Errno> {
    let flags = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    // SAFETY: fixed addresses nothing else uses (below the arena); MAP_FIXED_NOREPLACE
    // fails rather than replace a mapping.
    unsafe {
        mm::mmap(SHM, SHM_PAGES * PAGE, PROT_READ | PROT_WRITE, flags, -1, 0)?;
        mm::mmap(
            SHM_TAGS,
            SHM_PAGES * 8,
            PROT_READ | PROT_WRITE,
            flags,
            -1,
            0,
        )?;
    }
    Ok(())
}

type Text = rt::text::Text<64>;

fn arg_u64(args: &rt::Args, i: usize, default: u64) -> u64 {
    args.str(i)
        .and_then(|s| fs::parse_u64(s.as_bytes()))
        .unwrap_or(default)
}

/// The threaded mode (flag `t`): this thread and `THREADS - 1` more run the test at
/// once in one address space, each over its own arena (the next `ARENA_PAGES` pages
/// after the previous thread's), with its own seed stream and shadow; a fork copies
/// only the thread that calls it, whose child goes on alone. Every mmap, munmap,
/// mprotect, madvise and fault of one thread then runs beside the others' on the
/// same page tables.
const THREADS: usize = 3;

/// What the threads are given and what they report (the runtime has no heap).
static SEED: AtomicU64 = AtomicU64::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);
static VERBOSE: AtomicBool = AtomicBool::new(false);
static FAILED: [AtomicBool; THREADS] = [const { AtomicBool::new(false) }; THREADS];

/// Thread `k` of the threaded mode; see [`THREADS`].
extern "C" fn thread_main(k: usize) -> usize {
    let (seed, ops) = (SEED.load(Relaxed), OPS.load(Relaxed));
    let mut s = Stress::new(seed + k as u64, ops, ARENA + k * ARENA_PAGES * PAGE);
    s.verbose = VERBOSE.load(Relaxed);
    s.pid = proc::gettid().unwrap_or(0) as u32;
    let me = s.pid;
    let r = s.run();
    if let Err(f) = &r {
        s.report(f);
    }
    if s.pid != me {
        // A child forked by this thread: its exit is its process's.
        return r.is_err() as usize;
    }
    if r.is_err() {
        FAILED[k].store(true, Relaxed);
        println!("stress: seed {seed} thread {k} FAILED at op {}", s.op);
    }
    0
}

fn main(args: &rt::Args) -> i32 {
    let seed = arg_u64(args, 1, DEFAULT_SEED);
    let ops = arg_u64(args, 2, DEFAULT_OPS);
    thp::mount_pseudo_fs();
    // The collapse thread scans every 10 ms meanwhile (contkernel; ignored elsewhere).
    let _ = rt::fs::write_file(
        c"/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs",
        b"10\n",
    );
    let policy = thp::Policy::save().ok();
    let flags = args.str(3).unwrap_or("");
    let threads = if flags.contains('t') { THREADS } else { 1 };
    SEED.store(seed, Relaxed);
    if let Err(e) = map_shm() {
        println!("stress: seed {seed}: mapping the shared region: {e}");
        return 1;
    }
    let mut s = Stress::new(seed, ops, ARENA);
    s.verbose = flags.contains('v');
    s.pressure = flags.contains('p');
    let root = s.pid;
    let start = time::now_ns();
    SEED.store(seed, Relaxed);
    OPS.store(ops, Relaxed);
    VERBOSE.store(s.verbose, Relaxed);
    let mut spawned = [const { None }; THREADS];
    for (k, slot) in spawned.iter_mut().enumerate().take(threads).skip(1) {
        match thread::spawn(thread_main, k) {
            Ok(t) => *slot = Some(t),
            Err(e) => {
                println!("stress: seed {seed}: starting thread {k}: {e}");
                FAILED[k].store(true, Relaxed);
            }
        }
    }
    let r = s.run();
    if let Err(f) = &r {
        s.report(f);
    }
    if s.pid != root {
        // A child: its parent reports.
        return r.is_err() as i32;
    }
    for t in spawned.into_iter().flatten() {
        t.join();
    }
    let failed = r.is_err() || FAILED.iter().any(|f| f.load(Relaxed));
    if let Some(p) = policy {
        if let Err(e) = p.restore() {
            println!("stress: restoring the mTHP policy: {e}");
        }
    }
    let ms = ((time::now_ns() - start) / 1_000_000).max(1) as u64;
    let all = ops * threads as u64;
    if !failed {
        println!(
            "stress: seed {seed}: {all} ops in {ms} ms, {} ops/s, {} forks here, {threads} thread(s)",
            all * 1000 / ms,
            s.forks,
        );
        println!("stress: seed {seed} passed");
        0
    } else {
        println!("stress: seed {seed} FAILED at op {} after {ms} ms", s.op);
        1
    }
}
