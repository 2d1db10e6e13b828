//! /proc and /sys files of general state that Linux's own programs (glibc, the mm
//! selftests) read, in Linux's names and formats: the calling process's maps, smaps,
//! smaps_rollup and status (`mm::report`), meminfo, the vm sysctls, and the CPU lists
//! (`/sys/devices/system/cpu/{online,possible,present}`, /proc/cpuinfo, /proc/stat) from
//! which glibc's `sysconf(_SC_NPROCESSORS_ONLN)` counts CPUs; and the reads of
//! /proc/self/pagemap and /proc/kpageflags (`File::Words`), generated per read; and
//! /proc/self/mem (`MemFile`), the opener's memory at the file position.

use alloc::string::String;
use core::fmt::Write;

use super::{Node, WordTable, WORD};
use crate::arch::aarch64::mm::machine::Mm;
use crate::mm::addr::PAGE_SHIFT;
use crate::mm::fault::Transfer;
use crate::mm::mthp;
use crate::mm::{PhysAddr, VirtAddr};
use crate::percpu;
use crate::proc::task::Pid;
use crate::uapi::{Errno, EINVAL, EIO, ENOENT};

/// `f(mm)` of the calling process, or nothing for a kernel thread.
fn with_mm(f: fn(&Mm) -> String) -> String {
    let t = crate::proc::sched::me();
    let mm = t.mm.lock();
    mm.as_ref().map_or_else(String::new, f)
}

/// A write to /proc/self/clear_refs: a number, 1 to 5 (`Mm::clear_refs`).
pub fn clear_refs(text: &str) -> Result<(), Errno> {
    let kind: u64 = text.trim().parse().map_err(|_| EINVAL)?;
    let t = crate::proc::sched::me();
    let mut mm = t.mm.lock();
    mm.as_mut().ok_or(EINVAL)?.clear_refs(kind)
}

/// /proc/self/status: identity, then the memory lines of `Mm::status`, then threads.
fn status() -> String {
    let t = crate::proc::sched::me();
    let mut s = String::new();
    let _ = writeln!(s, "Name:\t{}", t.name.lock().as_str());
    let _ = writeln!(s, "State:\tR (running)");
    let _ = writeln!(s, "Tgid:\t{}", t.pid());
    let _ = writeln!(s, "Pid:\t{}", t.pid());
    let _ = writeln!(
        s,
        "PPid:\t{}",
        t.parent.load(core::sync::atomic::Ordering::Acquire)
    );
    let _ = writeln!(s, "Uid:\t0\t0\t0\t0");
    let _ = writeln!(s, "Gid:\t0\t0\t0\t0");
    s.push_str(&with_mm(Mm::status));
    let _ = writeln!(s, "Threads:\t1");
    s
}

/// `Field:   N kB` with Linux's meminfo widths (show_val_kb).
pub(super) fn kb(s: &mut String, field: &str, kb: usize) {
    let _ = writeln!(s, "{:<16}{kb:>8} kB", alloc::format!("{field}:"));
}

/// /proc/meminfo: the fields this kernel knows the value of. Memory is either free or
/// used (no swap or buffers: those are 0, truly; hugetlb pool pages count as used, as
/// Linux counts them); AnonHugePages counts
/// anonymous 2 MiB folios; Shmem and ShmemHugePages the pages of the RAM file
/// system's page cache (`mm::shmem`), which Linux counts in Cached too;
/// ShmemPmdMapped those of its 2 MiB folios mapped whole somewhere.
fn meminfo() -> String {
    use core::sync::atomic::Ordering::Relaxed;
    let f = crate::mm::frame::frames();
    let free = f.free_frames() * 4;
    let pmd_folios = mthp::stats(mthp::PMD_ORDER).nr_anon.load(Relaxed).max(0) as usize;
    let shmem = crate::mm::shmem::PAGES.load(Relaxed).max(0) as usize * 4;
    let shmem_huge = crate::mm::shmem::PMD_PAGES.load(Relaxed).max(0) as usize * 4;
    let mut s = String::new();
    kb(&mut s, "MemTotal", f.managed_frames() * 4);
    kb(&mut s, "MemFree", free);
    kb(&mut s, "MemAvailable", free);
    kb(&mut s, "Buffers", 0);
    kb(&mut s, "Cached", shmem);
    for zero in [
        "SwapCached",
        "Mlocked",
        "SwapTotal",
        "SwapFree",
        "Dirty",
        "Writeback",
    ] {
        kb(&mut s, zero, 0);
    }
    kb(&mut s, "Shmem", shmem);
    kb(&mut s, "AnonHugePages", pmd_folios * 2048);
    kb(&mut s, "ShmemHugePages", shmem_huge);
    let pmd_mapped = crate::mm::folio::FILE_PMD_MAPPED.load(Relaxed).max(0) as usize * 4;
    kb(&mut s, "ShmemPmdMapped", pmd_mapped);
    for zero in ["FileHugePages", "FilePmdMapped"] {
        kb(&mut s, zero, 0);
    }
    super::hugetlb::meminfo(&mut s);
    s
}

/// A read of a word table at `pos`: whole words only (EINVAL otherwise, as Linux's
/// pagemap_read and kpageflags_read), as many as `buf` holds (the read system call's
/// bounded chunk); 0 past the end. Pagemap takes the reader's mm lock inside the
/// files lock the caller holds (nothing takes them the other way round).
pub(super) fn read_words(
    table: WordTable,
    pos: &mut usize,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    if !pos.is_multiple_of(WORD) || !buf.len().is_multiple_of(WORD) {
        return Err(EINVAL);
    }
    let n = (buf.len() / WORD).min(table.len().saturating_sub(*pos) / WORD);
    if n == 0 {
        return Ok(0);
    }
    let first = *pos / WORD;
    let mut words = alloc::vec![0u64; n];
    match table {
        WordTable::Pagemap => {
            let va = crate::mm::VirtAddr((first << PAGE_SHIFT) as u64);
            if let Some(mm) = crate::proc::sched::me().mm.lock().as_ref() {
                mm.pagemap(va, &mut words);
            }
        }
        WordTable::Kpageflags => {
            for (i, w) in words.iter_mut().enumerate() {
                *w = crate::mm::kpageflags(first + i);
            }
        }
    }
    for (chunk, w) in buf.chunks_exact_mut(WORD).zip(&words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    *pos += n * WORD;
    Ok(n * WORD)
}

/// An open /proc/self/mem: the opener's address space (its pid and the root of its
/// tables, which identifies one address space among the live ones), as Linux's
/// file keeps the `mm` it was opened on: a descriptor inherited by fork still
/// reaches the opener's memory; once that address space is gone (exit, exec) it
/// reads and writes nothing (unless a later exec of the same process happens to get
/// the same frame for its root table: the identity is of live address spaces only).
#[derive(Clone)]
pub struct MemFile {
    pub pos: usize,
    pub writable: bool,
    owner: Pid,
    root: PhysAddr,
}

impl MemFile {
    /// Open the caller's own memory (a kernel thread has none: ENOENT).
    pub fn open(writable: bool) -> Result<Self, Errno> {
        let t = crate::proc::sched::me();
        let root = t.mm.lock().as_ref().ok_or(ENOENT)?.tables.root();
        Ok(MemFile {
            pos: 0,
            writable,
            owner: t.pid(),
            root,
        })
    }

    /// Read or write at `pos` through the owner's page tables as a debugger does
    /// (`Mm::access_forced`: faulting in, breaking copy-on-write for a write), then
    /// advance `pos`: EIO if not a byte could be copied (no VMA there), a short count
    /// at the end of the VMAs. `buf` is one chunk of the system call (a page at
    /// most), so the owner's `Mm` lock, taken inside the files lock the caller holds
    /// as for pagemap, is held for at most two pages.
    pub fn access(&mut self, buf: Transfer<'_>) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(task) = crate::proc::task::get(self.owner) else {
            return Ok(0);
        };
        let mut mm = task.mm.lock();
        let Some(mm) = mm.as_mut().filter(|mm| mm.tables.root() == self.root) else {
            return Ok(0);
        };
        match mm.access_forced(VirtAddr(self.pos as u64), buf) {
            0 => Err(EIO),
            n => {
                self.pos += n;
                Ok(n)
            }
        }
    }
}

/// A CPU list in Linux's cpulist format: `0` or `0-3`.
fn cpu_list(n: usize) -> String {
    match n {
        0 | 1 => String::from("0\n"),
        n => alloc::format!("0-{}\n", n - 1),
    }
}

/// /proc/cpuinfo: one block per online CPU, the arm64 fields glibc and programs
/// look for (`processor` lines are what get_nprocs_conf's fallback counts).
fn cpuinfo() -> String {
    let mut s = String::new();
    for cpu in 0..percpu::online() {
        let _ = writeln!(s, "processor\t: {cpu}");
        let _ = writeln!(s, "BogoMIPS\t: 125.00");
        let _ = writeln!(s, "CPU architecture: 8\n");
    }
    s
}

/// /proc/stat: the `cpu` lines (glibc's get_nprocs falls back to counting `cpuN`),
/// with no time accounted, then the process counters this kernel does not keep.
fn stat() -> String {
    let mut s = String::from("cpu  0 0 0 0 0 0 0 0 0 0\n");
    for cpu in 0..percpu::online() {
        let _ = writeln!(s, "cpu{cpu} 0 0 0 0 0 0 0 0 0 0");
    }
    s
}

pub static NODES: &[Node] = &[
    super::dir("/proc/sys"),
    super::dir("/proc/sys/vm"),
    super::dir("/sys/devices"),
    super::dir("/sys/devices/system"),
    super::dir("/sys/devices/system/cpu"),
    Node {
        path: "/proc/self/maps",
        render: Some(|| with_mm(Mm::maps)),
        write: None,
    },
    Node {
        path: "/proc/self/smaps_rollup",
        render: Some(|| with_mm(Mm::smaps_rollup)),
        write: None,
    },
    Node {
        path: "/proc/self/status",
        render: Some(status),
        write: None,
    },
    Node {
        path: "/proc/meminfo",
        render: Some(meminfo),
        write: None,
    },
    Node {
        path: "/proc/cpuinfo",
        render: Some(cpuinfo),
        write: None,
    },
    Node {
        path: "/proc/stat",
        render: Some(stat),
        write: None,
    },
    // The vm sysctls, read-only, with this kernel's values: the lowest address mmap
    // hands out (64 KiB; Debian's Linux says 32768), overcommit mode 1 (always: mmap
    // never refuses for want of memory, a fault that finds none is OOM) and the VMA
    // limit per process (Linux's default, enforced by mmap).
    Node {
        path: "/proc/sys/vm/mmap_min_addr",
        render: Some(|| alloc::format!("{}\n", crate::mm::aspace::MMAP_MIN)),
        write: None,
    },
    Node {
        path: "/proc/sys/vm/overcommit_memory",
        render: Some(|| String::from("1\n")),
        write: None,
    },
    Node {
        path: "/proc/sys/vm/max_map_count",
        render: Some(|| alloc::format!("{}\n", crate::mm::vma::MAX_MAP_COUNT)),
        write: None,
    },
    Node {
        path: "/sys/devices/system/cpu/online",
        render: Some(|| cpu_list(percpu::online())),
        write: None,
    },
    Node {
        path: "/sys/devices/system/cpu/possible",
        render: Some(|| cpu_list(percpu::possible())),
        write: None,
    },
    Node {
        path: "/sys/devices/system/cpu/present",
        render: Some(|| cpu_list(percpu::possible())),
        write: None,
    },
];
