//! The /proc and /sys files Linux's own mm selftests and glibc read before anything
//! else, in Linux's names, formats and defaults; the same checks pass on Linux
//! (`scripts/linux.sh -- procfs`): the transparent_hugepage knobs, /proc/self/pagemap
//! (read with pread, one 8-byte entry per page: present, frame number, mapped
//! exclusively), /proc/kpageflags (anonymous, mapped, THP head and tail), maps, smaps (every field Linux prints, Pss and sharing after fork),
//! smaps_rollup, status, meminfo, the vm sysctls, the CPU lists glibc counts, and
//! /proc/self/mem (reads, and writes that break copy-on-write of read-only pages).
#![no_std]
#![no_main]

use core::ffi::CStr;

use rt::fs::{self, AT_FDCWD, O_CLOEXEC, O_RDONLY, O_RDWR, SEEK_SET};
use rt::mm::*;
use rt::pagemap::{entry as pagemap, kpageflags, *};
use rt::proc;
use rt::procfs::{field, read_text, vma_block};
use rt::test::{Context, Fail, Outcome, Suite};
use rt::text::Text;
use rt::thp::{self, Policy};
use rt::{ensure, Errno};

rt::entry!(main);

fn main(_args: &rt::Args) -> i32 {
    rt::thp::mount_pseudo_fs();
    let mut t = Suite::new("procfs");
    t.run("thp_knobs_linux_defaults", thp_knobs_linux_defaults);
    t.run("thp_knobs_take_linux_words", thp_knobs_take_linux_words);
    t.run(
        "pagemap_present_pfn_exclusive",
        pagemap_present_pfn_exclusive,
    );
    t.run("pagemap_shared_after_fork", pagemap_shared_after_fork);
    t.run("pagemap_bad_offsets", pagemap_bad_offsets);
    t.run("kpageflags_thp_head_tail", kpageflags_thp_head_tail);
    t.run("maps_line", maps_line);
    t.run("smaps_fields", smaps_fields);
    t.run("smaps_pss_after_fork", smaps_pss_after_fork);
    t.run("smaps_rollup", smaps_rollup);
    t.run("status", status);
    t.run("meminfo", meminfo);
    t.run("vm_sysctls", vm_sysctls);
    t.run("cpu_lists_agree", cpu_lists_agree);
    t.run("mem_reads_own_memory", mem_reads_own_memory);
    t.run("mem_writes_after_fork", mem_writes_after_fork);
    t.run("mem_writes_64k_folio", mem_writes_64k_folio);
    t.finish()
}

const RW: usize = PROT_READ | PROT_WRITE;
const THP: &str = "/sys/kernel/mm/transparent_hugepage";

/// Expects file `path` to read exactly `want`.
fn expect_file(path: &str, want: &str) -> Outcome {
    let mut buf = [0u8; 256];
    let got = read_text(path, &mut buf)?;
    ensure!(got == want, "{path}: {got:?}, want {want:?}");
    Ok(())
}

/// Linux's values after boot with Debian's configuration.
fn thp_knobs_linux_defaults() -> Outcome {
    for (file, want) in [
        ("defrag", "always defer defer+madvise [madvise] never\n"),
        (
            "shmem_enabled",
            "always within_size advise [never] deny force\n",
        ),
        ("use_zero_page", "1\n"),
        ("hpage_pmd_size", "2097152\n"),
        ("khugepaged/defrag", "1\n"),
        ("khugepaged/max_ptes_swap", "64\n"),
        ("khugepaged/max_ptes_shared", "256\n"),
        (
            "hugepages-64kB/shmem_enabled",
            "always inherit within_size advise [never]\n",
        ),
    ] {
        expect_file(
            Text::<96>::from_fmt(format_args!("{THP}/{file}")).as_str(),
            want,
        )?;
    }
    Ok(())
}

/// Writes `value` to knob `file`, with the errno Linux gives.
fn write_knob(file: &str, value: &str) -> Result<usize, Errno> {
    let mut p = Text::<96>::from_fmt(format_args!("{THP}/{file}"));
    fs::write_file(p.as_cstr(), value.as_bytes())
}

/// A choice file takes one of its words (EINVAL otherwise, the value kept); a 0/1 flag
/// takes 0 or 1.
fn thp_knobs_take_linux_words() -> Outcome {
    write_knob("defrag", "never\n").ctx("write defrag never")?;
    expect_file(
        Text::<96>::from_fmt(format_args!("{THP}/defrag")).as_str(),
        "always defer defer+madvise madvise [never]\n",
    )?;
    let e = write_knob("defrag", "sometimes");
    ensure!(
        e == Err(Errno::EINVAL),
        "defrag sometimes: {e:?}, want EINVAL"
    );
    write_knob("defrag", "madvise").ctx("write defrag madvise")?;
    expect_file(
        Text::<96>::from_fmt(format_args!("{THP}/defrag")).as_str(),
        "always defer defer+madvise [madvise] never\n",
    )?;
    let e = write_knob("use_zero_page", "2");
    ensure!(
        e == Err(Errno::EINVAL),
        "use_zero_page 2: {e:?}, want EINVAL"
    );
    write_knob("hugepages-64kB/shmem_enabled", "advise").ctx("write shmem_enabled")?;
    expect_file(
        Text::<96>::from_fmt(format_args!("{THP}/hugepages-64kB/shmem_enabled")).as_str(),
        "always inherit within_size [advise] never\n",
    )?;
    write_knob("hugepages-64kB/shmem_enabled", "never").ctx("restore shmem_enabled")?;
    let e = write_knob("khugepaged/max_ptes_swap", "512");
    ensure!(
        e == Err(Errno::EINVAL),
        "max_ptes_swap 512: {e:?}, want EINVAL"
    );
    Ok(())
}

/// A page written is present with its frame number and mapped once; a page never
/// touched reads 0; no page is swapped or file-backed.
fn pagemap_present_pfn_exclusive() -> Outcome {
    let r = Region::anon(4 * PAGE, RW, 0).ctx("mmap")?;
    r.advise(0, 4 * PAGE, MADV_NOHUGEPAGE).ctx("madvise")?;
    r.store(0, 1);
    r.store(2 * PAGE, 1);
    let (a, b, c) = (
        pagemap(r.addr)?,
        pagemap(r.addr + PAGE)?,
        pagemap(r.addr + 2 * PAGE)?,
    );
    for (what, e) in [("page 0", a), ("page 2", c)] {
        ensure!(e & PM_PRESENT != 0, "{what}: {e:#x} not present");
        ensure!(e & PM_PFN != 0, "{what}: {e:#x} has no frame number");
        ensure!(e & PM_MMAP_EXCLUSIVE != 0, "{what}: {e:#x} not exclusive");
        ensure!(
            e & (PM_SWAP | PM_FILE) == 0,
            "{what}: {e:#x} swapped or file"
        );
    }
    ensure!(a & PM_PFN != c & PM_PFN, "two pages, one frame {a:#x}");
    ensure!(b & (PM_PRESENT | PM_SWAP) == 0, "untouched page 1: {b:#x}");
    Ok(())
}

/// After fork, a page both processes map is present in the child at the same frame
/// but no longer exclusively mapped; the child's own write makes it exclusive again.
fn pagemap_shared_after_fork() -> Outcome {
    let r = Region::anon(2 * PAGE, RW, 0).ctx("mmap")?;
    r.advise(0, 2 * PAGE, MADV_NOHUGEPAGE).ctx("madvise")?;
    r.store(0, 1);
    let parent = pagemap(r.addr)?;
    let s = proc::fork_wait(|| {
        let Ok(shared) = pagemap(r.addr) else {
            return 1;
        };
        if shared & PM_PFN != parent & PM_PFN || shared & PM_MMAP_EXCLUSIVE != 0 {
            return 2;
        }
        r.store(0, 2);
        match pagemap(r.addr) {
            Ok(own) if own & PM_MMAP_EXCLUSIVE != 0 && own & PM_PFN != parent & PM_PFN => 0,
            _ => 3,
        }
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} (2: shared page exclusive or moved, 3: copy not exclusive)"
    );
    Ok(())
}

/// pagemap is read in whole entries (EINVAL otherwise, Linux's pagemap_read); past
/// the top of the address space it is empty; several entries come in one read.
fn pagemap_bad_offsets() -> Outcome {
    let fd = fs::openat(AT_FDCWD, c"/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0)
        .ctx("open /proc/self/pagemap")?;
    let mut buf = [0u8; 16];
    let r = Region::anon(2 * PAGE, RW, 0).ctx("mmap")?;
    r.store(0, 1);
    r.store(PAGE, 1);
    let checks = [
        (
            "unaligned offset",
            fs::pread(fd, &mut buf[..8], r.addr / PAGE * 8 + 1),
            Err(Errno::EINVAL),
        ),
        (
            "unaligned length",
            fs::pread(fd, &mut buf[..5], r.addr / PAGE * 8),
            Err(Errno::EINVAL),
        ),
        (
            "past the end",
            fs::pread(fd, &mut buf[..8], (1 << 60) + 8),
            Ok(0),
        ),
        (
            "two entries",
            fs::pread(fd, &mut buf, r.addr / PAGE * 8),
            Ok(16),
        ),
    ];
    let _ = fs::close(fd);
    for (what, got, want) in checks {
        ensure!(got == want, "{what}: {got:?}, want {want:?}");
    }
    let second = u64::from_le_bytes(buf[8..].try_into().unwrap_or_default());
    ensure!(second & PM_PRESENT != 0, "second entry of two: {second:#x}");
    Ok(())
}

/// A 2 MiB THP (MADV_HUGEPAGE, the PMD size inherits `always`): its first frame is a
/// mapped anonymous compound head with THP set, the next a tail of the same folio; a
/// base page is anonymous and mapped, with no compound bit.
fn kpageflags_thp_head_tail() -> Outcome {
    let r = Region::anon_aligned(2 << 20, 2 << 20, RW).ctx("mmap")?;
    r.advise(0, 2 << 20, MADV_HUGEPAGE).ctx("madvise")?;
    r.store(0, 1);
    let (head, tail) = (kpageflags(r.addr)?, kpageflags(r.addr + PAGE)?);
    let want = KPF_ANON | KPF_MMAP | KPF_THP;
    ensure!(
        head & (want | KPF_COMPOUND_HEAD) == want | KPF_COMPOUND_HEAD,
        "head {head:#x}"
    );
    ensure!(
        tail & (want | KPF_COMPOUND_TAIL) == want | KPF_COMPOUND_TAIL,
        "tail {tail:#x}"
    );
    let small = Region::anon(PAGE, RW, 0).ctx("mmap")?;
    small.store(0, 1);
    let base = kpageflags(small.addr)?;
    ensure!(
        base & (KPF_ANON | KPF_MMAP | KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) == KPF_ANON | KPF_MMAP,
        "base page {base:#x}"
    );
    Ok(())
}

/// `start-end rw-p 00000000 00:00 0` for an anonymous mapping; a write-only one is
/// `-w-p`.
fn maps_line() -> Outcome {
    let r = Region::anon_aligned(4 * PAGE, PAGE, RW).ctx("mmap")?;
    let w = Region::anon_aligned(4 * PAGE, PAGE, PROT_WRITE).ctx("mmap")?;
    let mut buf = [0u8; 8192];
    let text = read_text("/proc/self/maps", &mut buf)?;
    for (region, perms) in [(&r, "rw-p"), (&w, "-w-p")] {
        let line = vma_block(text, region.addr)?.lines().next().unwrap_or("");
        let want = Text::<96>::from_fmt(format_args!(
            "{:08x}-{:08x} {perms} 00000000 00:00 0",
            region.addr,
            region.addr + region.len
        ));
        ensure!(
            line.trim_end() == want.as_str(),
            "maps: {line:?}, want {:?}",
            want.as_str()
        );
    }
    Ok(())
}

/// The smaps block of `r` in `buf`.
fn smaps_of<'a>(r: &Region, buf: &'a mut [u8]) -> Result<&'a str, Fail> {
    let text = read_text("/proc/self/smaps", buf)?;
    vma_block(text, r.addr)
}

/// Every field Linux 6.12 prints for an anonymous mapping, in its order, and the
/// values of two written pages of a MADV_NOHUGEPAGE mapping.
fn smaps_fields() -> Outcome {
    let r = Region::anon_aligned(4 * PAGE, PAGE, RW).ctx("mmap")?;
    r.advise(0, 4 * PAGE, MADV_NOHUGEPAGE).ctx("madvise")?;
    r.store(0, 1);
    r.store(PAGE, 1);
    let mut buf = [0u8; 65536];
    let block = smaps_of(&r, &mut buf)?;
    let names: [&str; 24] = [
        "Size",
        "KernelPageSize",
        "MMUPageSize",
        "Rss",
        "Pss",
        "Pss_Dirty",
        "Shared_Clean",
        "Shared_Dirty",
        "Private_Clean",
        "Private_Dirty",
        "Referenced",
        "Anonymous",
        "KSM",
        "LazyFree",
        "AnonHugePages",
        "ShmemPmdMapped",
        "FilePmdMapped",
        "Shared_Hugetlb",
        "Private_Hugetlb",
        "Swap",
        "SwapPss",
        "Locked",
        "THPeligible",
        "VmFlags",
    ];
    let mut lines = block.lines().skip(1);
    for name in names {
        let line = lines.next().unwrap_or("");
        ensure!(
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':')),
            "smaps: {line:?} where {name} belongs"
        );
    }
    for (name, want) in [
        ("Size", 16),
        ("KernelPageSize", 4),
        ("Rss", 8),
        ("Pss", 8),
        ("Private_Dirty", 8),
        ("Shared_Dirty", 0),
        ("Anonymous", 8),
        ("AnonHugePages", 0),
        ("THPeligible", 0),
    ] {
        let got = field(block, name)?;
        ensure!(got == want, "smaps {name}: {got}, want {want}");
    }
    let flags = block
        .lines()
        .find_map(|l| l.strip_prefix("VmFlags:"))
        .ctx("VmFlags")?;
    let words = |w: &str| flags.split_whitespace().any(|f| f == w);
    for want in ["rd", "wr", "mr", "mw", "me", "ac", "nh"] {
        ensure!(words(want), "VmFlags {flags:?} lacks {want}");
    }
    ensure!(!words("ex") && !words("hg"), "VmFlags {flags:?}");
    Ok(())
}

/// A page mapped by parent and child counts half in each one's Pss and as shared;
/// the child's own write makes its copy private again. (Shared pages are counted
/// clean or dirty together: this kernel's fork gives the child clean entries where
/// Linux's copy_present_pte keeps them dirty.)
fn smaps_pss_after_fork() -> Outcome {
    let r = Region::anon_aligned(2 * PAGE, PAGE, RW).ctx("mmap")?;
    r.advise(0, 2 * PAGE, MADV_NOHUGEPAGE).ctx("madvise")?;
    r.store(0, 1);
    r.store(PAGE, 1);
    // Pss, shared and private kB in the child.
    let split = |block: &str| -> Option<(u64, u64, u64)> {
        let f = |name| field(block, name).ok();
        Some((
            f("Pss")?,
            f("Shared_Clean")? + f("Shared_Dirty")?,
            f("Private_Clean")? + f("Private_Dirty")?,
        ))
    };
    let s = proc::fork_wait(|| {
        let mut buf = [0u8; 65536];
        let Ok(block) = smaps_of(&r, &mut buf) else {
            return 1;
        };
        if split(block) != Some((4, 8, 0)) {
            return 2;
        }
        r.store(0, 2);
        let Ok(block) = smaps_of(&r, &mut buf) else {
            return 1;
        };
        if split(block) != Some((6, 4, 4)) {
            return 3;
        }
        0
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} (2: shared pages counted wrong, 3: after the copy)"
    );
    Ok(())
}

/// One header ending in `[rollup]`, then the summed fields with Pss split by kind.
fn smaps_rollup() -> Outcome {
    let mut buf = [0u8; 4096];
    let text = read_text("/proc/self/smaps_rollup", &mut buf)?;
    let head = text.lines().next().unwrap_or("");
    ensure!(head.ends_with("[rollup]"), "smaps_rollup header {head:?}");
    for name in [
        "Rss",
        "Pss",
        "Pss_Anon",
        "Pss_File",
        "Pss_Shmem",
        "Private_Dirty",
        "AnonHugePages",
    ] {
        ensure!(
            text.lines()
                .any(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(':'))),
            "smaps_rollup lacks {name}"
        );
    }
    Ok(())
}

/// `Pid:` is getpid(); the memory lines selftests read (vm_util's rss_anon) are there.
fn status() -> Outcome {
    let mut buf = [0u8; 4096];
    let text = read_text("/proc/self/status", &mut buf)?;
    let pid = proc::getpid().ctx("getpid")?;
    let want = Text::<32>::from_fmt(format_args!("Pid:\t{pid}"));
    ensure!(
        text.lines().any(|l| l == want.as_str()),
        "status lacks {:?}",
        want.as_str()
    );
    for name in ["Name:", "PPid:", "VmSize:", "VmRSS:", "RssAnon:", "VmSwap:"] {
        ensure!(
            text.lines().any(|l| l.starts_with(name)),
            "status lacks {name}"
        );
    }
    Ok(())
}

/// The fields the selftests and free(1) read, in Linux's `Name:   N kB` shape.
fn meminfo() -> Outcome {
    let mut buf = [0u8; 8192];
    let text = read_text("/proc/meminfo", &mut buf)?;
    for name in [
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "AnonHugePages",
        "SwapTotal",
    ] {
        let kb = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ctx(name)?;
        ensure!(kb.trim_end().ends_with(" kB"), "meminfo {name}:{kb}");
    }
    ensure!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["Hugepagesize:", "2048", "kB"])),
        "meminfo: no Hugepagesize: 2048 kB"
    );
    Ok(())
}

/// The three vm sysctls mremap_test and others read: numbers, in their ranges.
fn vm_sysctls() -> Outcome {
    let read = |path: &CStr| fs::read_u64(path).ctx(path.to_str().unwrap_or("?"));
    let min = read(c"/proc/sys/vm/mmap_min_addr")?;
    ensure!(min >= 4096 && min.is_power_of_two(), "mmap_min_addr {min}");
    let mode = read(c"/proc/sys/vm/overcommit_memory")?;
    ensure!(mode <= 2, "overcommit_memory {mode}");
    let count = read(c"/proc/sys/vm/max_map_count")?;
    ensure!(count == 65530, "max_map_count {count}");
    Ok(())
}

/// The CPU lists agree: /sys/devices/system/cpu/online (`0` or `0-N`), present and
/// possible, the `cpuN` lines of /proc/stat and the `processor` lines of /proc/cpuinfo.
fn cpu_lists_agree() -> Outcome {
    let mut buf = [0u8; 16384];
    let count = |list: &str| -> Option<u64> {
        match list.trim_end().split_once('-') {
            Some((a, b)) => Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1),
            None => list.trim_end().parse::<u64>().ok().map(|_| 1),
        }
    };
    let online =
        count(read_text("/sys/devices/system/cpu/online", &mut buf)?).ctx("online list")?;
    for other in ["possible", "present"] {
        let path = Text::<64>::from_fmt(format_args!("/sys/devices/system/cpu/{other}"));
        let n = count(read_text(path.as_str(), &mut buf)?).ctx(other)?;
        ensure!(n >= online, "{other}: {n} CPUs, online {online}");
    }
    let stat = read_text("/proc/stat", &mut buf)?;
    let cpus = stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count() as u64;
    ensure!(
        cpus == online,
        "/proc/stat: {cpus} cpuN lines, online {online}"
    );
    let info = read_text("/proc/cpuinfo", &mut buf)?;
    let procs = info.lines().filter(|l| l.starts_with("processor")).count() as u64;
    ensure!(
        procs == online,
        "/proc/cpuinfo: {procs} processors, online {online}"
    );
    Ok(())
}

/// /proc/self/mem opened with `flags`.
fn open_mem(flags: usize) -> Result<usize, Fail> {
    fs::openat(AT_FDCWD, c"/proc/self/mem", flags | O_CLOEXEC, 0).ctx("open /proc/self/mem")
}

/// Whether /proc/self/mem accesses with FOLL_FORCE (reads of PROT_NONE pages, writes
/// to read-only ones): always on contkernel and by Linux's default
/// (`proc_mem.force_override=always`, as Linux 6.12 here); Debian's Linux 7.3 is
/// built to force only for a ptrace parent, so there such writes are EIO.
fn mem_forces() -> Result<bool, Fail> {
    if thp::on_contkernel() {
        return Ok(true);
    }
    let r = Region::anon(PAGE, PROT_READ, 0).ctx("mmap")?;
    let fd = open_mem(O_RDWR)?;
    let n = fs::pwrite(fd, b"x", r.addr);
    let _ = fs::close(fd);
    match n {
        Ok(1) => Ok(true),
        Err(Errno::EIO) => Ok(false),
        n => Err(Fail::new(format_args!(
            "probe write to a read-only page: {n:?}"
        ))),
    }
}

/// The byte the tests below store at offset `i`.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Reads of the process's own memory: pread at an address (across a page boundary,
/// of a PROT_NONE page too where the access is forced: `mem_forces`), lseek + read;
/// a read running into an unmapped page returns the bytes before it, one at an
/// unmapped address is EIO, a length up to the top of user space returns what is
/// mapped, and an address with the top bit set is a negative offset (EINVAL).
fn mem_reads_own_memory() -> Outcome {
    let r = Region::anon_aligned(2 * PAGE, PAGE, RW).ctx("mmap")?;
    for i in 0..2 * PAGE {
        r.store(i, pattern(i));
    }
    let none = Region::anon_aligned(PAGE, PAGE, RW).ctx("mmap")?;
    none.store(5, 0x5a);
    none.protect(0, PAGE, PROT_NONE).ctx("mprotect")?;
    let out = Region::anon(2 * PAGE, RW, 0).ctx("mmap")?;
    let fd = open_mem(O_RDONLY)?;
    let mut b = [0u8; 16];
    let across = fs::pread(fd, &mut b, r.addr + PAGE - 8);
    let across_ok = b
        .iter()
        .enumerate()
        .all(|(i, &v)| v == pattern(PAGE - 8 + i));
    let into_hole = fs::pread(fd, &mut b, r.addr + 2 * PAGE - 8);
    let hole = fs::pread(fd, &mut b, r.addr + 2 * PAGE);
    let low = fs::pread(fd, &mut b, 0x10);
    let negative = fs::pread(fd, &mut b, 0xffff_0000_4000_0000);
    let prot_none = fs::pread(fd, &mut b[..1], none.addr + 5).map(|n| (n, b[0]));
    // Up to the top of user space (both kernels' 48-bit TASK_SIZE).
    let huge_len = (1usize << 48) - out.addr;
    // SAFETY: the kernel writes at most what is mapped from r.addr + PAGE (one
    // page) into `out`, two pages; the rest of the length is never reached.
    let huge = unsafe { rt::syscall!(rt::sys::nr::PREAD64, fd, out.addr, huge_len, r.addr + PAGE) };
    let huge_ok = (0..PAGE).all(|i| out.load(i) == pattern(PAGE + i));
    let seek = fs::lseek(fd, r.addr + 100, SEEK_SET);
    let (first, second) = (fs::read(fd, &mut b[..4]), fs::read(fd, &mut b[4..8]));
    let seek_ok = b[..8]
        .iter()
        .enumerate()
        .all(|(i, &v)| v == pattern(100 + i));
    let _ = fs::close(fd);
    let checks = [
        ("across a page boundary", across, Ok(16)),
        ("into a hole", into_hole, Ok(8)),
        ("at a hole", hole, Err(Errno::EIO)),
        ("at 0x10", low, Err(Errno::EIO)),
        ("at a kernel address", negative, Err(Errno::EINVAL)),
        ("huge length from the last page", huge, Ok(PAGE)),
        ("lseek", seek, Ok(r.addr + 100)),
        ("read after lseek", first, Ok(4)),
        ("read after read", second, Ok(4)),
    ];
    for (what, got, want) in checks {
        ensure!(got == want, "{what}: {got:?}, want {want:?}");
    }
    ensure!(across_ok, "bytes across the page boundary differ");
    ensure!(huge_ok, "bytes of the huge read differ");
    ensure!(seek_ok, "bytes read after lseek differ");
    let want = if mem_forces()? {
        Ok((1, 0x5a))
    } else {
        Err(Errno::EIO)
    };
    ensure!(
        prot_none == want,
        "PROT_NONE page: {prot_none:?}, want {want:?}"
    );
    Ok(())
}

/// The permissions /proc/self/maps gives the mapping at `addr`.
fn maps_perms(addr: usize) -> Result<Text<8>, Fail> {
    let mut buf = [0u8; 8192];
    let text = read_text("/proc/self/maps", &mut buf)?;
    let line = vma_block(text, addr)?.lines().next().unwrap_or("");
    let perms = line.split(' ').nth(1).unwrap_or("");
    Ok(Text::from_fmt(format_args!("{perms}")))
}

/// A write through /proc/self/mem to a private page shared since fork, writable or
/// read-only, gives the writer its own copy (the mapping keeps its permissions, the
/// page becomes exclusive) and never shows in the other process: the child writing,
/// the parent writing while the child lives, and a child writing through a
/// descriptor its parent opened, which reaches the parent's memory as on Linux.
/// Where the access is not forced (`mem_forces`) a read-only page is refused (EIO).
fn mem_writes_after_fork() -> Outcome {
    mem_writes_after_fork_to(RW, "rw-p")?;
    if mem_forces()? {
        return mem_writes_after_fork_to(PROT_READ, "r--p");
    }
    let r = Region::anon(PAGE, PROT_READ, 0).ctx("mmap")?;
    let fd = open_mem(O_RDWR)?;
    let n = fs::pwrite(fd, b"x", r.addr);
    let _ = fs::close(fd);
    ensure!(
        n == Err(Errno::EIO) && r.load(0) == 0,
        "unforced write: {n:?}"
    );
    Ok(())
}

fn mem_writes_after_fork_to(prot: usize, perms: &'static str) -> Outcome {
    let r = Region::anon_aligned(PAGE, PAGE, RW).ctx("mmap")?;
    r.advise(0, PAGE, MADV_NOHUGEPAGE).ctx("madvise")?;
    r.store(0, b'A');
    r.protect(0, PAGE, prot).ctx("mprotect")?;
    let s = proc::fork_wait(|| {
        let Ok(fd) = open_mem(O_RDWR) else {
            return 1;
        };
        let n = fs::pwrite(fd, b"C", r.addr);
        let _ = fs::close(fd);
        if n != Ok(1) || r.load(0) != b'C' {
            return 2;
        }
        if maps_perms(r.addr).ok().as_ref().map(Text::as_str) != Some(perms) {
            return 3;
        }
        match pagemap(r.addr) {
            Ok(e) if e & PM_MMAP_EXCLUSIVE != 0 => 0,
            _ => 4,
        }
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "{perms}: child {s} (2: write lost, 3: permissions changed, 4: copy not exclusive)"
    );
    ensure!(r.load(0) == b'A', "the child's write shows in the parent");

    // The child stores to its page (where writable) while the parent's write breaks
    // copy-on-write of the same page on another CPU.
    let writable = prot & PROT_WRITE != 0;
    let child = proc::spawn(|| {
        let before = r.load(0);
        for _ in 0..64 {
            if writable {
                r.store(1, b'c');
            }
            let _ = rt::time::sched_yield();
        }
        let _ = rt::time::nanosleep(&rt::time::Timespec {
            sec: 0,
            nsec: 50_000_000,
        });
        i32::from(before != b'A' || r.load(0) != b'A' || (writable && r.load(1) != b'c'))
    })
    .ctx("fork")?;
    let fd = open_mem(O_RDWR)?;
    let n = fs::pwrite(fd, b"P", r.addr);
    let s = proc::wait(child).ctx("wait4")?;
    ensure!(n == Ok(1) && r.load(0) == b'P', "parent's write: {n:?}");
    ensure!(r.load(1) == 0, "the child's store shows in the parent");
    ensure!(
        s.exited() && s.exit_status() == 0,
        "the parent's write shows in the child ({s})"
    );

    let s = proc::fork_wait(|| {
        let n = fs::pwrite(fd, b"I", r.addr);
        i32::from(n != Ok(1) || r.load(0) != b'P')
    })
    .ctx("fork/wait4")?;
    let _ = fs::close(fd);
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child writing through the parent's descriptor: {s}"
    );
    ensure!(
        r.load(0) == b'I',
        "the parent's memory did not get the write"
    );
    Ok(())
}

/// A 64 KiB folio (mTHP on, 64 KiB only) written through /proc/self/mem across a page
/// boundary in its middle keeps every other byte: while writable, and shared after
/// fork (read-only where the access is forced: `mem_forces`), where the child's
/// write stays in the child.
fn mem_writes_64k_folio() -> Outcome {
    const FOLIO: usize = 64 << 10;
    let saved = Policy::save()?;
    let result = mem_writes_64k_folio_with_policy(FOLIO);
    saved.restore()?;
    result
}

fn mem_writes_64k_folio_with_policy(folio: usize) -> Outcome {
    thp::only(64)?;
    let r = Region::anon_aligned(folio, folio, RW).ctx("mmap")?;
    for i in 0..folio {
        r.store(i, pattern(i));
    }
    let at = folio / 2 - 3;
    let fd = open_mem(O_RDWR)?;
    let n = fs::pwrite(fd, b"abcdef", r.addr + at);
    let _ = fs::close(fd);
    ensure!(n == Ok(6), "pwrite: {n:?}");
    let want = |i: usize| match i.checked_sub(at) {
        Some(k) if k < 6 => b"abcdef"[k],
        _ => pattern(i),
    };
    ensure!(
        (0..folio).all(|i| r.load(i) == want(i)),
        "the writable folio differs after the write"
    );
    if mem_forces()? {
        r.protect(0, folio, PROT_READ).ctx("mprotect")?;
    }
    let s = proc::fork_wait(|| {
        let Ok(fd) = open_mem(O_RDWR) else {
            return 1;
        };
        let n = fs::pwrite(fd, b"ZYXWVU", r.addr + at);
        let _ = fs::close(fd);
        if n != Ok(6) {
            return 2;
        }
        let theirs = |i: usize| match i.checked_sub(at) {
            Some(k) if k < 6 => b"ZYXWVU"[k],
            _ => want(i),
        };
        i32::from((0..folio).any(|i| r.load(i) != theirs(i))) * 3
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} (2: pwrite failed, 3: the child's folio differs)"
    );
    ensure!(
        (0..folio).all(|i| r.load(i) == want(i)),
        "the child's write shows in the parent's folio"
    );
    Ok(())
}
