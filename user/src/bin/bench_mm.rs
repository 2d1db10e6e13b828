//! bench_mm: one benchmark per memory-management operation over 64 MiB of anonymous
//! memory (and, `shm_*`, of shared anonymous memory, whose folio size is set through
//! `shmem_enabled`), the same static binary on contkernel and on Linux. For each folio size
//! asked for (the mTHP policy set through sysfs as on Linux: top-level `never`, that
//! size `always`, the others `never`; 4 KiB = every size `never`), each benchmark runs
//! `reps` times from a fresh mapping and prints one line
//!
//! `bench_mm: {"bench":NAME,"folio_kb":N,"reps":R,"freq":HZ,"phase":ID,"ticks":{"median","min","max"},"events":{...}}`
//!
//! ticks of the virtual counter (CNTVCT_EL0, read at EL0) around the operation alone,
//! and the kernel counters that changed in the last repetition. A benchmark whose
//! mechanism the kernel lacks prints `"ticks":null,"reason":"..."` (the errno).
//! Under QEMU's `-icount shift=0,sleep=off` one instruction is one nanosecond, so the
//! host turns ticks into instructions with the frequency (`ticks * 1e9 / freq`).
//!
//! Arguments (words, also after `--` on a Linux command line): `folios=0,16,64,2048`
//! (KiB, 0 = 4 KiB pages), `reps=N`, `only=NAME,...`, `mib=N`. As pid 1 (Linux's
//! rdinit, or contkernel's) it powers the machine off at the end.
//!
//! A figure must not depend on which benchmarks ran before it in the boot: the
//! collapse thread sleeps for the whole run, the stack is in pages of its own from the
//! start, and each repetition begins after a sleep (`suite`, `settle`).
//!
//! Run on one CPU: a child's work must not run beside the measured parent. The
//! `fault_t*` cells are the exception: threads of one process touching the region
//! at once, run with 4 CPUs (`scripts/bench.sh`).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use rt::bench::{self, Json, Snapshot, Spread};
use rt::fs;
use rt::mm::{self, Region, MREMAP_FIXED, MREMAP_MAYMOVE, PAGE, PROT_READ, PROT_WRITE};
use rt::println;
use rt::proc;
use rt::text::Text;
use rt::thp::{self, Policy};
use rt::thread;
use rt::time::{self, Timespec};

rt::entry!(main);

const RW: usize = PROT_READ | PROT_WRITE;
const MADV_PAGEOUT: usize = 21;
const MADV_COLLAPSE: usize = 25;
const WNOHANG: usize = proc::WNOHANG;

/// Why a benchmark has no figure.
/// (112 bytes, as `rt::test::Fail`: an `Err` small enough to return by value.)
type Why = Text<112>;

fn why(args: core::fmt::Arguments<'_>) -> Why {
    Text::from_fmt(args)
}

/// What every benchmark is given: the length, the folio size (KiB, 0 = 4 KiB pages).
struct Env {
    len: usize,
    folio_kb: usize,
}

impl Env {
    /// A fresh read-write mapping aligned to 2 MiB (so any folio size fits).
    fn region(&self) -> Result<Region, Why> {
        region_of(self.len)
    }

    /// A fresh mapping with every page written once (faulted in with the policy).
    fn filled(&self) -> Result<Region, Why> {
        filled_of(self.len)
    }

    /// The sizes whose statistics are read: the folio size and 2 MiB (collapse).
    fn sizes(&self) -> [usize; 2] {
        [self.folio_kb, 2048]
    }
}

/// A fresh read-write mapping of `len` bytes aligned to 2 MiB.
fn region_of(len: usize) -> Result<Region, Why> {
    Region::anon_aligned(len, thp::PMD_SIZE, RW).map_err(|e| why(format_args!("mmap: {e}")))
}

/// A fresh mapping of `len` bytes with every page written once.
fn filled_of(len: usize) -> Result<Region, Why> {
    let r = region_of(len)?;
    touch(&r);
    Ok(r)
}

fn touch(r: &Region) {
    (0..r.len).step_by(PAGE).for_each(|o| r.store(o, 1));
}

/// The measured window of one repetition: counters, then the counter value and the
/// TLB model's phase marker (`phase`: the id its lines and ours share); the benchmark
/// calls `stop` right after its operation.
struct Meter {
    sizes: [usize; 2],
    phase: u64,
    before: Option<Snapshot>,
    after: Option<Snapshot>,
    t0: u64,
    ticks: u64,
}

impl Meter {
    /// Not inlined, and the snapshots built in place, so the stack the window uses is
    /// the same every time (prefaulted by `main`).
    #[inline(never)]
    fn start(&mut self) {
        self.before = Some(Snapshot::read(&self.sizes));
        bench::phase_start(self.phase);
        self.t0 = bench::counter();
    }

    #[inline(never)]
    fn stop(&mut self) {
        self.ticks = bench::counter() - self.t0;
        bench::phase_stop();
        self.after = Some(Snapshot::read(&self.sizes));
    }
}

type Bench = fn(&Env, &mut Meter) -> Result<(), Why>;

/// The benchmarks, by their stable names (README, "Performance").
const BENCHES: &[(&str, Bench)] = &[
    ("fault", fault),
    ("fork", fork),
    ("fork_pinned", fork_pinned),
    ("reuse", reuse),
    ("copy", copy),
    ("munmap", munmap),
    ("mremap", mremap_aligned),
    ("mremap_4k", mremap_offset),
    ("mprotect", mprotect),
    ("mprotect_400k", |e, m| mprotect_loop(e, m, 400 << 10)),
    ("mprotect_4m", |e, m| mprotect_loop(e, m, 4 << 20)),
    ("dontneed", dontneed),
    ("free", free),
    ("pageout", pageout),
    ("collapse_copy", collapse_copy),
    ("collapse_inplace", collapse_inplace),
    ("read_seq", read_seq),
    ("read_rand", read_rand),
    ("read_zero", read_zero),
    ("shm_fault", shm_fault),
    ("shm_fork", shm_fork),
    ("shm_munmap", shm_munmap),
    ("shm_read_seq", shm_read_seq),
    ("chase", chase),
    ("fault_t1", |e, m| fault_threads(e, m, 1, Layout::Own)),
    ("fault_t2", |e, m| fault_threads(e, m, 2, Layout::Own)),
    ("fault_t4", |e, m| fault_threads(e, m, 4, Layout::Own)),
    ("fault_t4i", |e, m| {
        fault_threads(e, m, 4, Layout::Interleaved)
    }),
];

/// First touch: one write per page of a fresh mapping.
fn fault(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.region()?;
    m.start();
    touch(&r);
    m.stop();
    Ok(())
}

/// fork of a process with the region filled (the child sleeps, then exits).
fn fork(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let _r = env.filled()?;
    measured_fork(m)
}

/// fork of a process with the region filled and 16 of its folios each pinned by one
/// page in a pipe (vmsplice of the first byte of each): the child gets copies of
/// those folios (contkernel: each whole, into a folio of its size; Linux: each
/// exclusive 4 KiB page of them, a 2 MiB mapping split first).
fn fork_pinned(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    let step = (env.folio_kb << 10).max(PAGE);
    let iov: [[usize; 2]; 16] = core::array::from_fn(|i| [r.addr + (i * step) % r.len, 1]);
    let (rd, w) = rt::pipe::pipe2(0).map_err(|e| why(format_args!("pipe2: {e}")))?;
    // SAFETY: each iovec names one byte of the region, mapped and readable.
    let n: Result<usize, rt::sys::Errno> =
        unsafe { rt::syscall!(rt::sys::nr::VMSPLICE, w, iov.as_ptr(), iov.len(), 0) };
    let n = n.map_err(|e| why(format_args!("vmsplice: {e}")))?;
    if n != iov.len() {
        return Err(why(format_args!(
            "vmsplice took {n} of {} bytes",
            iov.len()
        )));
    }
    let res = measured_fork(m);
    let _ = fs::close(rd);
    let _ = fs::close(w);
    res
}

/// One fork measured (the child sleeps, then exits), and its wait.
fn measured_fork(m: &mut Meter) -> Result<(), Why> {
    m.start();
    let child = proc::spawn(|| {
        let _ = time::nanosleep(&Timespec::from_ms(20));
        0
    });
    m.stop();
    let child = child.map_err(|e| why(format_args!("fork: {e}")))?;
    proc::wait(child).map_err(|e| why(format_args!("wait4: {e}")))?;
    Ok(())
}

/// Rewrite after fork once the child has exited: every page is the parent's alone
/// again (contkernel reuses whole folios; Linux reuses 4 KiB pages only).
fn reuse(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    proc::fork_wait(|| 0).map_err(|e| why(format_args!("fork: {e}")))?;
    mm::prefault_stack();
    m.start();
    (0..r.len).step_by(PAGE).for_each(|o| r.store(o, 2));
    m.stop();
    Ok(())
}

/// Rewrite after fork while the child lives and maps everything: every write copies.
fn copy(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    let child = proc::spawn(|| {
        let _ = time::nanosleep(&Timespec::from_ms(1000));
        0
    })
    .map_err(|e| why(format_args!("fork: {e}")))?;
    // Let the child reach its sleep: its own first writes must not fall inside.
    let _ = time::nanosleep(&Timespec::from_ms(20));
    mm::prefault_stack();
    m.start();
    (0..r.len).step_by(PAGE).for_each(|o| r.store(o, 2));
    m.stop();
    let alive = matches!(proc::wait4(child as isize, WNOHANG), Ok((0, _)));
    proc::wait(child).map_err(|e| why(format_args!("wait4: {e}")))?;
    if !alive {
        return Err(why(format_args!("the child exited during the measurement")));
    }
    Ok(())
}

fn munmap(env: &Env, m: &mut Meter) -> Result<(), Why> {
    measured_munmap(env.filled()?, m)
}

/// The munmap of all of `r`, measured.
fn measured_munmap(r: Region, m: &mut Meter) -> Result<(), Why> {
    m.start();
    let res = r.unmap(0, r.len);
    m.stop();
    res.map_err(|e| why(format_args!("munmap: {e}")))?;
    core::mem::forget(r);
    Ok(())
}

/// mremap of the whole region (MREMAP_MAYMOVE | MREMAP_FIXED) to `off` bytes past a
/// 2 MiB boundary: 0 keeps every block's offset (2 MiB blocks move as one entry,
/// contiguous blocks as blocks), 4 KiB keeps none (plain entries).
fn mremap_to(env: &Env, m: &mut Meter, off: usize) -> Result<(), Why> {
    let r = env.filled()?;
    let spot = Region::anon_aligned(env.len + thp::PMD_SIZE, thp::PMD_SIZE, RW)
        .map_err(|e| why(format_args!("mmap: {e}")))?;
    let to = spot.addr + off;
    m.start();
    let res = r.remap(env.len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    m.stop();
    match res {
        Ok((moved, _)) => {
            // The placeholder's unmap on drop covers the moved pages too.
            core::mem::forget(moved);
            Ok(())
        }
        Err((_, e)) => Err(why(format_args!("mremap: {e}"))),
    }
}

/// mremap of the region to a 2 MiB-aligned destination.
fn mremap_aligned(env: &Env, m: &mut Meter) -> Result<(), Why> {
    mremap_to(env, m, 0)
}

/// mremap of the region to a destination 4 KiB past 2 MiB alignment.
fn mremap_offset(env: &Env, m: &mut Meter) -> Result<(), Why> {
    mremap_to(env, m, PAGE)
}

/// mprotect RW -> RO -> RW of the whole region (two calls).
fn mprotect(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    m.start();
    let res = r
        .protect(0, r.len, PROT_READ)
        .and_then(|_| r.protect(0, r.len, RW));
    m.stop();
    res.map_err(|e| why(format_args!("mprotect: {e}")))?;
    Ok(())
}

/// mprotect RW -> RO -> RW of a `size` region, again and again until the calls have
/// covered the length the others use (64 MiB: 163 rounds of 400 KiB, 16 of 4 MiB):
/// small and medium regions, where a call's fixed cost and partly covered folios
/// count. Linux 6.17's batching of `change_pte_range` made these up to 1.7x slower
/// than 6.12 (LKML reports on AMD Milan, Ampere Altra and under QEMU).
fn mprotect_loop(env: &Env, m: &mut Meter, size: usize) -> Result<(), Why> {
    let r = filled_of(size)?;
    m.start();
    let res = (0..env.len / size).try_for_each(|_| {
        r.protect(0, size, PROT_READ)
            .and_then(|_| r.protect(0, size, RW))
            .map(|_| ())
    });
    m.stop();
    res.map_err(|e| why(format_args!("mprotect: {e}")))?;
    Ok(())
}

fn advise(env: &Env, m: &mut Meter, advice: usize, name: &str) -> Result<(), Why> {
    let r = env.filled()?;
    m.start();
    let res = r.advise(0, r.len, advice);
    m.stop();
    res.map_err(|e| why(format_args!("madvise({name}): {e}")))?;
    Ok(())
}

fn dontneed(env: &Env, m: &mut Meter) -> Result<(), Why> {
    advise(env, m, mm::MADV_DONTNEED, "MADV_DONTNEED")
}

fn free(env: &Env, m: &mut Meter) -> Result<(), Why> {
    advise(env, m, mm::MADV_FREE, "MADV_FREE")
}

/// Reclaim of lazyfree memory: MADV_FREE, then MADV_PAGEOUT (measured), which drops
/// the clean lazyfree folios (no swap is needed for them).
fn pageout(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    r.advise(0, r.len, mm::MADV_FREE)
        .map_err(|e| why(format_args!("madvise(MADV_FREE): {e}")))?;
    m.start();
    let res = r.advise(0, r.len, MADV_PAGEOUT);
    m.stop();
    res.map_err(|e| why(format_args!("madvise(MADV_PAGEOUT): {e}")))?;
    Ok(())
}

/// MADV_COLLAPSE of memory faulted in 4 KiB pages, with the folio size's policy back
/// on (Linux collapses to 2 MiB whatever the policy): a collapse by copy.
fn collapse_copy(env: &Env, m: &mut Meter) -> Result<(), Why> {
    thp::only(0).map_err(|e| why(format_args!("policy: {e}")))?;
    let r = env.filled();
    thp::only(env.folio_kb).map_err(|e| why(format_args!("policy: {e}")))?;
    let r = r?;
    m.start();
    let res = r.advise(0, r.len, MADV_COLLAPSE);
    m.stop();
    res.map_err(|e| why(format_args!("madvise(MADV_COLLAPSE): {e}")))?;
    Ok(())
}

/// MADV_COLLAPSE of folios of the folio size whose mappings were split (one page of
/// each made read-only, then the whole region read-write again) but whose pages are
/// still in place: contkernel can refold them without a copy; Linux copies into a new
/// 2 MiB folio.
fn collapse_inplace(env: &Env, m: &mut Meter) -> Result<(), Why> {
    if env.folio_kb == 0 {
        return Err(why(format_args!("no large folios at 4 KiB: nothing split")));
    }
    let r = env.filled()?;
    let step = env.folio_kb << 10;
    for off in (0..r.len).step_by(step) {
        r.protect(off, PAGE, PROT_READ)
            .map_err(|e| why(format_args!("mprotect: {e}")))?;
    }
    r.protect(0, r.len, RW)
        .map_err(|e| why(format_args!("mprotect: {e}")))?;
    m.start();
    let res = r.advise(0, r.len, MADV_COLLAPSE);
    m.stop();
    res.map_err(|e| why(format_args!("madvise(MADV_COLLAPSE): {e}")))?;
    Ok(())
}

/// Sum of one byte per page, so the loads cannot be dropped.
fn read_pages(r: &Region, pages: impl Iterator<Item = usize>) -> u64 {
    pages.map(|p| r.load(p * PAGE) as u64).sum()
}

fn read_seq(env: &Env, m: &mut Meter) -> Result<(), Why> {
    read_in_order(&env.filled()?, m);
    Ok(())
}

/// First touch by loads: one read fault per page of a fresh mapping, each mapping the
/// shared zero page (or, where 2 MiB folios are allowed, the huge zero page: one
/// fault per 2 MiB); nothing is allocated but page tables.
fn read_zero(env: &Env, m: &mut Meter) -> Result<(), Why> {
    read_in_order(&env.region()?, m);
    Ok(())
}

/// A fresh shared anonymous mapping (MAP_SHARED|MAP_ANONYMOUS: a file of the page
/// cache) of the benchmark's length, aligned to 2 MiB, empty or `filled`, with the
/// page cache's folio size set to the benchmark's (`shmem_enabled`) while the guard
/// lives.
fn shared(env: &Env, filled: bool) -> Result<(Region, thp::ShmemOnly), Why> {
    let policy =
        thp::ShmemOnly::set(env.folio_kb).map_err(|e| why(format_args!("shmem_enabled: {e}")))?;
    let r = region_of(env.len)?;
    r.map_file_at(0, env.len, RW, mm::MAP_SHARED, -1, 0)
        .map_err(|e| why(format_args!("mmap(MAP_SHARED): {e}")))?;
    if filled {
        touch(&r);
    }
    Ok((r, policy))
}

/// First touch of shared memory: one write per page, each page from the page cache.
fn shm_fault(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let (r, _policy) = shared(env, false)?;
    m.start();
    touch(&r);
    m.stop();
    Ok(())
}

/// fork with the shared region filled: a shared mapping's entries are not copied
/// (the child would fault them in from the page cache).
fn shm_fork(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let (_r, _policy) = shared(env, true)?;
    measured_fork(m)
}

/// munmap of the filled shared region: the mappings go, the file with the last one.
fn shm_munmap(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let (r, _policy) = shared(env, true)?;
    measured_munmap(r, m)
}

/// One load per page of the filled shared region, in order.
fn shm_read_seq(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let (r, _policy) = shared(env, true)?;
    read_in_order(&r, m);
    Ok(())
}

/// One load per page of `r` in order, measured.
fn read_in_order(r: &Region, m: &mut Meter) {
    m.start();
    let sum = read_pages(r, 0..r.len / PAGE);
    m.stop();
    core::hint::black_box(sum);
}

/// Every page once in a fixed pseudo-random order: x -> 5x + 1 mod 2^k visits every
/// residue (a full-period LCG: the multiplier is 1 mod 4, the increment odd).
fn read_rand(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    let pages = (r.len / PAGE).next_power_of_two();
    let mut x = 0usize;
    let order = (0..pages).map(move |_| {
        x = (5 * x + 1) & (pages - 1);
        x
    });
    let limit = r.len / PAGE;
    m.start();
    let sum = read_pages(&r, order.filter(|&p| p < limit));
    m.stop();
    core::hint::black_box(sum);
    Ok(())
}

/// Laps of `chase`: the first fills the TLB, the others show what it keeps.
const CHASE_LAPS: usize = 4;

/// Where `chase`'s node of page `p` sits in its page: a cache line picked by a hash,
/// so the nodes do not all share one cache set.
fn node(p: usize) -> usize {
    p * PAGE + (p.wrapping_mul(0x9e37_79b9) >> 7) % (PAGE / 64) * 64
}

/// A pointer chase, a hash table's access pattern: one node per 4 KiB page, linked
/// into one random cycle (Sattolo's shuffle, fixed seed), followed for CHASE_LAPS
/// laps, each load's address coming from the one before. Over 64 MiB its pages are
/// 16384 4 KiB translations, more than any L2 TLB holds, but 1024 64 KiB ones, which a
/// 1280-entry L2 keeps: the benchmark where the Contiguous bit's reach shows.
fn chase(env: &Env, m: &mut Meter) -> Result<(), Why> {
    let r = env.filled()?;
    let n = r.len / PAGE;
    (0..n).for_each(|p| r.store_u64(node(p), p as u64));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..n).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = (seed >> 33) as usize % i;
        let (a, b) = (r.load_u64(node(i)), r.load_u64(node(j)));
        r.store_u64(node(i), b);
        r.store_u64(node(j), a);
    }
    m.start();
    let mut p = 0usize;
    for _ in 0..n * CHASE_LAPS {
        p = r.load_u64(node(p)) as usize;
    }
    m.stop();
    core::hint::black_box(p);
    Ok(())
}

/// How `fault_threads` shares the region out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Thread k touches the k-th of n equal parts.
    Own,
    /// Thread k touches every page p with p % n == k: the threads fault in the same
    /// folios and blocks at once.
    Interleaved,
}

/// What the threads of `fault_threads` are given (the runtime has no heap).
static FT_BASE: AtomicUsize = AtomicUsize::new(0);
static FT_PAGES: AtomicUsize = AtomicUsize::new(0);
static FT_THREADS: AtomicUsize = AtomicUsize::new(1);
static FT_INTERLEAVED: AtomicBool = AtomicBool::new(false);
static FT_GO: AtomicBool = AtomicBool::new(false);

/// Thread `k` of `fault_threads`: wait for the start, then one write per page of its
/// share.
extern "C" fn fault_worker(k: usize) -> usize {
    while !FT_GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let (base, pages, n) = (
        FT_BASE.load(Ordering::Relaxed),
        FT_PAGES.load(Ordering::Relaxed),
        FT_THREADS.load(Ordering::Relaxed),
    );
    let mine: &mut dyn Iterator<Item = usize> = if FT_INTERLEAVED.load(Ordering::Relaxed) {
        &mut (k..pages).step_by(n)
    } else {
        &mut (k * pages / n..(k + 1) * pages / n)
    };
    for p in mine {
        // SAFETY: inside the region `fault_threads` mapped and keeps until every
        // thread is joined.
        unsafe { core::ptr::write_volatile((base + p * PAGE) as *mut u8, 1) };
    }
    0
}

/// First touch of the region by `n` threads of this process (started and waiting
/// before the window; the window ends when the last has exited): run with `-smp 4`
/// (`scripts/bench.sh`). Under icount the vCPUs take turns, so the figure is the
/// instructions of all of them: the work of the faults plus what the threads spend
/// waiting for each other (the `Mm` lock here, Linux's per-VMA locks and page-table
/// locks there).
fn fault_threads(env: &Env, m: &mut Meter, n: usize, layout: Layout) -> Result<(), Why> {
    let r = env.region()?;
    FT_BASE.store(r.addr, Ordering::Relaxed);
    FT_PAGES.store(r.len / PAGE, Ordering::Relaxed);
    FT_THREADS.store(n, Ordering::Relaxed);
    FT_INTERLEAVED.store(layout == Layout::Interleaved, Ordering::Relaxed);
    FT_GO.store(false, Ordering::Release);
    let mut threads = [const { None }; 4];
    for (k, t) in threads.iter_mut().enumerate().take(n) {
        *t = Some(thread::spawn(fault_worker, k).map_err(|e| why(format_args!("clone: {e}")))?);
    }
    m.start();
    FT_GO.store(true, Ordering::Release);
    for t in threads.into_iter().flatten() {
        t.join();
    }
    m.stop();
    Ok(())
}

struct Config {
    folios: [usize; 8],
    nfolios: usize,
    reps: usize,
    mib: usize,
    only: Text<256>,
}

impl Config {
    fn parse(args: &rt::Args) -> Result<Config, Why> {
        let mut c = Config {
            folios: [0, 16, 64, 2048, 0, 0, 0, 0],
            nfolios: 4,
            reps: 3,
            mib: 64,
            only: Text::new(),
        };
        for word in (1..args.len()).filter_map(|i| args.str(i)) {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            let num = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| why(format_args!("bad number in `{word}`")))
            };
            match k {
                "folios" => {
                    c.nfolios = 0;
                    for f in v.split(',') {
                        let f = num(f)?;
                        if c.nfolios == c.folios.len() || !(f == 0 || thp::SIZES_KB.contains(&f)) {
                            return Err(why(format_args!("bad folio size in `{word}`")));
                        }
                        c.folios[c.nfolios] = f;
                        c.nfolios += 1;
                    }
                }
                "reps" => c.reps = num(v)?.clamp(1, 101),
                "mib" => c.mib = num(v)?.clamp(2, 512) & !1,
                "only" => c.only = Text::from_fmt(format_args!("{v}")),
                _ => return Err(why(format_args!("unknown argument `{word}`"))),
            }
        }
        Ok(c)
    }

    fn wants(&self, name: &str) -> bool {
        self.only.as_str().is_empty() || self.only.as_str().split(',').any(|n| n == name)
    }
}

/// Lets the kernel's deferred work run before a repetition (one sleep: free under
/// icount, whose clock jumps over idle time), so that none of it falls in the window
/// of whichever benchmark happens to come next: on Linux the collapse thread's round
/// that a write of its sleep or the start of a 2 MiB policy wakes, and what a
/// repetition's exited child leaves behind.
fn settle() {
    let _ = time::nanosleep(&Timespec::from_ms(100));
}

/// How long the machine is left alone after boot before the first window: Linux's
/// work of its first seconds ran inside the first benchmarks (Linux 7.3, 4 KiB
/// folios, mprotect's first three repetitions 1.53 M, 2.01 M and 1.27 M ticks, every
/// later one 0.50 M; a 400 KiB and a 4 MiB cell after them 3x their later figure).
const BOOT_QUIET_MS: u64 = 5000;

/// Rewrites the stack while a forked child lives, so that every stack page a window
/// touches after a fork is already a page of its own. contkernel maps the stack from
/// exec as one large folio: the first fork of a boot split it in its window (pages
/// copied out of the folio, a deferred split), which only the first repetition of the
/// first benchmark that forks paid (fork at 64 KiB, contpte=off: 11 k instructions).
fn stack_in_pages() -> Result<(), rt::Errno> {
    let child = proc::spawn(|| {
        let _ = time::nanosleep(&Timespec::from_ms(20));
        0
    })?;
    mm::prefault_stack();
    proc::wait(child).map(|_| ())
}

/// Runs one benchmark `reps` times and prints its line; `phase` numbers its windows
/// for the TLB model (the last repetition's figures are the ones reported).
fn run(env: &Env, name: &str, b: Bench, reps: usize, freq: u64, phase: u64) {
    let mut ticks = [0u64; 101];
    let mut m = Meter {
        sizes: env.sizes(),
        phase,
        before: None,
        after: None,
        t0: 0,
        ticks: 0,
    };
    let mut failed = None;
    for t in ticks.iter_mut().take(reps) {
        settle();
        if let Err(w) = b(env, &mut m) {
            failed = Some(w);
            break;
        }
        *t = m.ticks;
    }
    let mut j = Json::new();
    j.str("bench", name)
        .num("folio_kb", if env.folio_kb == 0 { 4 } else { env.folio_kb })
        .num("reps", reps)
        .num("freq", freq)
        .num("phase", phase);
    match (failed, &m.before, &m.after) {
        (None, Some(before), Some(after)) => {
            j.spread("ticks", Spread::of(&mut ticks[..reps]))
                .changes("events", before, after);
        }
        (w, _, _) => {
            let w = w.unwrap_or_else(|| why(format_args!("not measured")));
            j.null("ticks").null("events").str("reason", w.as_str());
        }
    }
    println!("bench_mm: {}", j.end());
}

fn main(args: &rt::Args) -> i32 {
    thp::mount_pseudo_fs();
    mm::prefault_stack();
    mm::prefault_image();
    let status = match Config::parse(args) {
        Ok(c) => suite(&c),
        Err(w) => {
            println!("bench_mm: error: {w}");
            2
        }
    };
    if proc::getpid() == Ok(1) {
        if let Err(e) = proc::power_off() {
            println!("bench_mm: reboot(POWER_OFF): {e}");
        }
    }
    status
}

fn suite(c: &Config) -> i32 {
    let Ok(saved) = Policy::save() else {
        println!(
            "bench_mm: error: cannot read the mTHP policy under {}",
            thp::THP
        );
        return 1;
    };
    let freq = bench::frequency();
    let mut j = Json::new();
    if let Ok(u) = proc::uname() {
        j.str("kernel", u.sysname()).str("release", u.release());
    }
    j.num("freq", freq).num("mib", c.mib).num("reps", c.reps);
    println!("bench_mm: start {}", j.end());
    // The collapse thread (khugepaged) scans no measured window: it sleeps an hour
    // while the suite runs. Its rounds landed in whichever window was open when it
    // woke: on contkernel the first round after boot made the first benchmark of a
    // boot dearer (fork at 64 KiB with contpte=off: 3.56 M first, 2.69 M after
    // `fault`), so `--quick` and the full run disagreed.
    let _hold = thp::ScanSleep::set(3_600_000);
    if let Err(e) = stack_in_pages() {
        println!("bench_mm: error: fork: {e}");
        return 1;
    }
    let _ = time::nanosleep(&Timespec::from_ms(BOOT_QUIET_MS));
    let mut phase = 0;
    for &folio_kb in &c.folios[..c.nfolios] {
        let env = Env {
            len: c.mib << 20,
            folio_kb,
        };
        for &(name, b) in BENCHES.iter().filter(|(n, _)| c.wants(n)) {
            // Every benchmark starts from the folio size's policy (collapse_copy
            // changes it on the way).
            if let Err(e) = thp::only(folio_kb) {
                println!("bench_mm: error: cannot set the policy for {folio_kb} KiB: {e}");
                return 1;
            }
            phase += 1;
            run(&env, name, b, c.reps, freq, phase);
        }
    }
    let _ = saved.restore();
    println!("bench_mm: done");
    0
}
