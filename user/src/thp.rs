//! Transparent huge pages as the kernel shows them: the mTHP policy and counters of
//! `/sys/kernel/mm/transparent_hugepage` (Linux's names and formats), this kernel's
//! additions (`/proc/self/thpmaps`, `/sys/kernel/mm/contpte/stats`,
//! `transparent_hugepage/shrink_deferred`, the `cow_*` counters), `/proc/meminfo`
//! and `/proc/vmstat`.
//!
//! The same program runs on Linux, which lacks this kernel's files: readers return
//! `None` (or ENOENT) for a missing file, and [`need`] turns that into "n/a" on Linux
//! but a failure on contkernel, which promises every file.

use crate::fs;
use crate::proc;
use crate::test::Fail;
use crate::text::Text;
use crate::Errno;
use core::fmt;

/// The directory of the THP switches and counters.
pub const THP: &str = "/sys/kernel/mm/transparent_hugepage";
/// The mTHP sizes of anonymous memory with a 4 KiB granule: orders 2..9.
pub const SIZES_KB: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// Bytes of a 2 MiB PMD block.
pub const PMD_SIZE: usize = 2 << 20;
/// Bytes of a contiguous block of 16 level-3 entries.
pub const CONT_SIZE: usize = 64 << 10;

/// Order (log2 of 4 KiB pages) of a size in KiB: 16 -> 2, ..., 2048 -> 9.
pub const fn order_of_kb(kb: usize) -> usize {
    (kb / 4).trailing_zeros() as usize
}

/// A path of up to 95 bytes, NUL-terminated for the kernel on demand.
pub type Path = Text<96>;

pub fn path(args: fmt::Arguments<'_>) -> Path {
    Text::from_fmt(args)
}

/// `THP/hugepages-<kb>kB/<file>`.
pub fn size_path(kb: usize, file: &str) -> Path {
    path(format_args!("{THP}/hugepages-{kb}kB/{file}"))
}

/// A failed access to a file: `path: ENOENT(2)`.
pub struct FileErr {
    pub path: Path,
    pub err: Errno,
}

impl fmt::Display for FileErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.err)
    }
}

impl From<FileErr> for Fail {
    fn from(e: FileErr) -> Fail {
        Fail::new(format_args!("{e}"))
    }
}

fn file_err(path: &Path, err: Errno) -> FileErr {
    FileErr {
        path: Text::from_fmt(format_args!("{path}")),
        err,
    }
}

/// Whether the running kernel is contkernel (uname release `*contkernel*`), which
/// provides every file named here; Linux lacks thpmaps, shrink_deferred, the cow_*
/// counters and contpte/stats.
pub fn on_contkernel() -> bool {
    proc::uname().is_ok_and(|u| u.release().contains("contkernel"))
}

/// `v`, or for a missing value: "n/a" (`Ok(None)`) on Linux, a failure naming
/// `what` on contkernel.
pub fn need<T>(v: Option<T>, what: fmt::Arguments<'_>) -> Result<Option<T>, Fail> {
    match v {
        Some(v) => Ok(Some(v)),
        None if on_contkernel() => Err(Fail::new(format_args!("missing on contkernel: {what}"))),
        None => Ok(None),
    }
}

/// Mounts sysfs on /sys and procfs on /proc where nothing is mounted there yet (a
/// Linux that runs this program as its init); errors are ignored. On contkernel the
/// files are always there.
pub fn mount_pseudo_fs() {
    if !fs::is_dir(c"/sys/kernel") {
        let _ = fs::mount(c"sysfs", c"/sys", c"sysfs", 0);
    }
    if fs::read_file(c"/proc/meminfo", &mut [0; 1]).is_err() {
        let _ = fs::mount(c"proc", c"/proc", c"proc", 0);
    }
}

/// The selected word of a policy file (`always [inherit] madvise never` ->
/// `inherit`), or the whole first line if nothing is bracketed.
pub fn selected(text: &[u8]) -> Text<16> {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut t = Text::new();
    match (
        line.iter().position(|&b| b == b'['),
        line.iter().position(|&b| b == b']'),
    ) {
        (Some(a), Some(b)) if a < b => t.push(&line[a + 1..b]),
        _ => t.push(line),
    }
    t
}

/// The selected value of policy file `path`.
pub fn read_policy(path: &Path) -> Result<Text<16>, FileErr> {
    let mut p = Text::<128>::from_fmt(format_args!("{path}"));
    let mut buf = [0u8; 96];
    let n = fs::read_file(p.as_cstr(), &mut buf).map_err(|e| file_err(path, e))?;
    Ok(selected(&buf[..n]))
}

/// Writes `value` (always, inherit, madvise, never) to policy file `path`, then
/// reads it back: a kernel that takes the write but keeps the old value is an error
/// (EINVAL).
pub fn write_policy(path: &Path, value: &str) -> Result<(), FileErr> {
    let mut p = Text::<128>::from_fmt(format_args!("{path}"));
    fs::write_file(p.as_cstr(), value.as_bytes()).map_err(|e| file_err(path, e))?;
    match read_policy(path)? {
        v if v.as_str() == value => Ok(()),
        _ => Err(file_err(path, Errno::EINVAL)),
    }
}

/// `THP/enabled`, the top-level switch.
pub fn top_path() -> Path {
    path(format_args!("{THP}/enabled"))
}

/// The whole policy: the top-level switch and every size's `enabled`.
pub struct Policy {
    pub top: Text<16>,
    pub sizes: [Text<16>; SIZES_KB.len()],
}

impl Policy {
    pub fn save() -> Result<Policy, FileErr> {
        let mut sizes: [Text<16>; SIZES_KB.len()] = Default::default();
        for (slot, kb) in sizes.iter_mut().zip(SIZES_KB) {
            *slot = read_policy(&size_path(kb, "enabled"))?;
        }
        Ok(Policy {
            top: read_policy(&top_path())?,
            sizes,
        })
    }

    /// Writes every saved value back (all are tried; the first error is returned).
    pub fn restore(&self) -> Result<(), FileErr> {
        let mut first = Ok(());
        for (v, kb) in self.sizes.iter().zip(SIZES_KB) {
            let r = write_policy(&size_path(kb, "enabled"), v.as_str());
            first = first.and(r);
        }
        first.and(write_policy(&top_path(), self.top.as_str()))
    }

    /// [`Policy::restore`], then the policy read back must be the saved one: every
    /// program leaves the policy as it found it, so the next one starts from the
    /// defaults (or the boot's `thp_anon=`), not from what this one set.
    pub fn restore_checked(&self) -> Result<Policy, Fail> {
        self.restore()?;
        let now = Policy::save()?;
        let same = self.top.as_str() == now.top.as_str()
            && (self.sizes.iter().zip(&now.sizes)).all(|(a, b)| a.as_str() == b.as_str());
        if !same {
            return Err(Fail::new(format_args!("policy not restored: {now}")));
        }
        Ok(now)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "top={}", self.top)?;
        for (v, kb) in self.sizes.iter().zip(SIZES_KB) {
            write!(f, " {kb}k={v}")?;
        }
        Ok(())
    }
}

/// Lets only `kb` be used: top-level `never`, `kb` `always`, every other size
/// `never` (`kb` = 0: every size `never`, order 0 only).
pub fn only(kb: usize) -> Result<(), FileErr> {
    write_policy(&top_path(), "never")?;
    for s in SIZES_KB {
        write_policy(
            &size_path(s, "enabled"),
            if s == kb { "always" } else { "never" },
        )?;
    }
    Ok(())
}

/// The page cache's folio sizes set like [`only`] (`shmem_enabled`: top-level `never`,
/// `kb` `always`, the others `never`) while it lives; dropping it writes back what
/// every file said before.
pub struct ShmemOnly {
    top: Option<Text<16>>,
    sizes: [Option<Text<16>>; SIZES_KB.len()],
}

impl ShmemOnly {
    pub fn set(kb: usize) -> Result<ShmemOnly, FileErr> {
        let top = path(format_args!("{THP}/shmem_enabled"));
        let saved = ShmemOnly {
            top: read_policy(&top).ok(),
            sizes: SIZES_KB.map(|s| read_policy(&size_path(s, "shmem_enabled")).ok()),
        };
        write_policy(&top, "never")?;
        for s in SIZES_KB {
            write_policy(
                &size_path(s, "shmem_enabled"),
                if s == kb { "always" } else { "never" },
            )?;
        }
        Ok(saved)
    }
}

impl Drop for ShmemOnly {
    fn drop(&mut self) {
        if let Some(t) = &self.top {
            let _ = write_policy(&path(format_args!("{THP}/shmem_enabled")), t.as_str());
        }
        for (s, v) in SIZES_KB.iter().zip(&self.sizes) {
            if let Some(v) = v {
                let _ = write_policy(&size_path(*s, "shmem_enabled"), v.as_str());
            }
        }
    }
}

/// The per-size counters (`hugepages-<N>kB/stats/<name>`): Linux's, then this
/// kernel's own.
pub const STAT_NAMES: [&str; 18] = [
    "anon_fault_alloc",
    "anon_fault_fallback",
    "split",
    "split_failed",
    "split_deferred",
    "nr_anon",
    "nr_anon_partially_mapped",
    "shmem_alloc",
    "shmem_fallback",
    "cow_reuse",
    "cow_folio_copy",
    "spread_to_pages",
    "collapse_alloc",
    "collapse_alloc_failed",
    "collapse_exceed_none_pte",
    "collapse_exceed_shared_pte",
    "collapse_in_place",
    "collapse_exceed_swap_pte",
];

/// One counter of size `kb`, `None` if the file is missing or unreadable.
pub fn stat(kb: usize, name: &str) -> Option<u64> {
    let mut p = path(format_args!("{THP}/hugepages-{kb}kB/stats/{name}"));
    fs::read_u64(p.as_cstr()).ok()
}

/// A snapshot of every counter of one size.
#[derive(Clone, Copy)]
pub struct Stats {
    pub kb: usize,
    v: [Option<u64>; STAT_NAMES.len()],
}

impl Stats {
    pub fn read(kb: usize) -> Stats {
        Stats {
            kb,
            v: STAT_NAMES.map(|n| stat(kb, n)),
        }
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        let i = STAT_NAMES.iter().position(|&n| n == name);
        i.and_then(|i| self.v[i])
    }

    /// `later - self` of counter `name` (None if either is missing).
    pub fn delta(&self, later: &Stats, name: &str) -> Option<i64> {
        Some(later.get(name)? as i64 - self.get(name)? as i64)
    }

    /// Checks `later - self` of `name` is `want`: n/a on Linux when the file is
    /// missing, a failure on contkernel.
    pub fn expect_delta(&self, later: &Stats, name: &str, want: i64) -> Result<(), Fail> {
        let d = self.delta(later, name);
        if let Some(d) = need(
            d,
            format_args!("{THP}/hugepages-{}kB/stats/{name}", self.kb),
        )? {
            if d != want {
                return Err(Fail::new(format_args!(
                    "hugepages-{}kB/stats/{name}: expected {want:+}, got {d:+} ({} -> {})",
                    self.kb,
                    self.get(name).unwrap_or(0),
                    later.get(name).unwrap_or(0)
                )));
            }
        }
        Ok(())
    }
}

/// `+N` or `n/a`, for reports.
pub struct Delta(pub Option<i64>);

impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{d:+}"),
            None => f.write_str("n/a"),
        }
    }
}

/// `N` or `n/a`, for reports.
pub struct Opt<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("n/a"),
        }
    }
}

/// A line `<key>: <number> ...` of /proc/meminfo (kB), or of any file of that shape.
pub fn meminfo_kb(key: &str) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let n = fs::read_all(c"/proc/meminfo", &mut buf).ok()?;
    buf[..n].split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key.as_bytes())?.strip_prefix(b":")?;
        fs::parse_u64(rest)
    })
}

/// The value of line `<name> <number>` of file `file` (/proc/vmstat,
/// /sys/kernel/mm/contpte/stats), None if the file or the line is missing.
pub fn keyed(file: &core::ffi::CStr, name: &str) -> Option<u64> {
    let mut buf = [0u8; 8192];
    let n = fs::read_all(file, &mut buf).ok()?;
    buf[..n].split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(name.as_bytes())?;
        rest.first().filter(|b| b.is_ascii_whitespace())?;
        fs::parse_u64(rest)
    })
}

pub const CONTPTE_STATS: &core::ffi::CStr = c"/sys/kernel/mm/contpte/stats";
/// The counters of /sys/kernel/mm/contpte/stats (this kernel only).
pub const CONTPTE_NAMES: [&str; 12] = [
    "folds",
    "unfolds",
    "converts",
    "cont_maps",
    "pmd_splits",
    "tables_moved",
    "tlbi_page",
    "tlbi_range",
    "tlbi_asid",
    "tlbi_all",
    "entries_written",
    "spurious_faults",
];

/// A snapshot of /sys/kernel/mm/contpte/stats (`None` per counter where missing).
#[derive(Clone, Copy)]
pub struct ContStats {
    v: [Option<u64>; CONTPTE_NAMES.len()],
}

impl ContStats {
    pub fn read() -> ContStats {
        let mut buf = [0u8; 1024];
        let n = fs::read_all(CONTPTE_STATS, &mut buf).unwrap_or(0);
        let text = &buf[..n];
        ContStats {
            v: CONTPTE_NAMES.map(|name| {
                text.split(|&b| b == b'\n').find_map(|line| {
                    let rest = line.strip_prefix(name.as_bytes())?;
                    rest.first().filter(|b| b.is_ascii_whitespace())?;
                    fs::parse_u64(rest)
                })
            }),
        }
    }

    pub fn present(&self) -> bool {
        self.v.iter().any(Option::is_some)
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        let i = CONTPTE_NAMES.iter().position(|&n| n == name);
        i.and_then(|i| self.v[i])
    }

    pub fn delta(&self, later: &ContStats, name: &str) -> Option<i64> {
        Some(later.get(name)? as i64 - self.get(name)? as i64)
    }
}

/// The fields of a `/proc/self/thpmaps` line after the kind.
pub const THPMAPS_FIELDS: [&str; 11] = [
    "order0", "order2", "order3", "order4", "order5", "order6", "order7", "order8", "order9",
    "cont", "pmd",
];

/// One line of `/proc/self/thpmaps`:
/// `START-END PERMS KIND order0=B order2=B ... order9=B cont=B pmd=B`.
pub struct ThpMap {
    pub start: usize,
    pub end: usize,
    pub perms: Text<8>,
    pub kind: Text<16>,
    v: [Option<u64>; THPMAPS_FIELDS.len()],
    /// The line as read, for messages.
    pub line: Text<224>,
}

impl ThpMap {
    /// Bytes in field `name` (`order4`, `cont`, `pmd`), None if the line lacks it.
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = THPMAPS_FIELDS.iter().position(|&n| n == name);
        i.and_then(|i| self.v[i])
    }

    /// Bytes mapped by folios of `order`.
    pub fn order(&self, order: usize) -> Option<u64> {
        self.get(Text::<8>::from_fmt(format_args!("order{order}")).as_str())
    }

    /// Checks the line covers exactly [start, end), that each `(field, bytes)` of
    /// `want` holds, and that every order field not in `want` is 0. cont and pmd are
    /// checked only when listed. (The message names the field, not the whole line:
    /// print the line before checking.)
    pub fn expect(&self, start: usize, end: usize, want: &[(&str, u64)]) -> Result<(), Fail> {
        if (self.start, self.end) != (start, end) {
            return Err(Fail::new(format_args!(
                "/proc/self/thpmaps: the VMA is {:x}-{:x}, expected {start:x}-{end:x}",
                self.start, self.end
            )));
        }
        for name in THPMAPS_FIELDS {
            let listed = want.iter().find(|(n, _)| *n == name).map(|&(_, b)| b);
            let expected = match listed {
                Some(b) => b,
                None if name.starts_with("order") => 0,
                None => continue,
            };
            match self.get(name) {
                None => {
                    return Err(Fail::new(format_args!(
                        "/proc/self/thpmaps {:x}-{:x}: no {name}= field",
                        self.start, self.end
                    )))
                }
                Some(got) if got != expected => {
                    return Err(Fail::new(format_args!(
                    "/proc/self/thpmaps {:x}-{:x}: {name}= expected {expected:#x}, got {got:#x}",
                    self.start, self.end
                )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn parse(line: &[u8]) -> Option<ThpMap> {
        let text = core::str::from_utf8(line).ok()?;
        let mut words = text.split_ascii_whitespace();
        let (start, end) = words.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let mut m = ThpMap {
            start,
            end,
            perms: Text::from_fmt(format_args!("{}", words.next().unwrap_or(""))),
            kind: Text::from_fmt(format_args!("{}", words.next().unwrap_or(""))),
            v: [None; THPMAPS_FIELDS.len()],
            line: Text::from_fmt(format_args!("{text}")),
        };
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            if let Some(i) = THPMAPS_FIELDS.iter().position(|&n| n == k) {
                m.v[i] = fs::parse_u64(v.as_bytes());
            }
        }
        Some(m)
    }
}

impl fmt::Display for ThpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.line.as_str())
    }
}

pub const THPMAPS: &core::ffi::CStr = c"/proc/self/thpmaps";

/// The `/proc/self/thpmaps` line of the VMA holding `addr`: Err(ENOENT) without the
/// file (Linux), Ok(None) when no line covers `addr`.
pub fn thpmaps(addr: usize) -> Result<Option<ThpMap>, Errno> {
    let mut buf = [0u8; 16384];
    let n = fs::read_all(THPMAPS, &mut buf)?;
    Ok(buf[..n]
        .split(|&b| b == b'\n')
        .filter_map(ThpMap::parse)
        .find(|m| m.start <= addr && addr < m.end))
}

/// The kB of summary line `name` (e.g. `anon-cont-pte-aligned-64kB`) of
/// /proc/self/thpmaps; None without the file (Linux) or the line.
pub fn thpmaps_summary(name: &str) -> Option<u64> {
    let mut buf = [0u8; 16384];
    let n = fs::read_all(THPMAPS, &mut buf).ok()?;
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Field `field` (e.g. `AnonHugePages`, in kB) of the /proc/self/smaps entry of the
/// VMA holding `addr`; None if the file, the VMA or the field is missing.
pub fn smaps_kb(addr: usize, field: &str) -> Option<u64> {
    let mut buf = [0u8; 32768];
    let n = fs::read_all(c"/proc/self/smaps", &mut buf).ok()?;
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    let mut inside = false;
    for line in text.lines() {
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'));
        if let Some((a, b)) = range {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = a <= addr && addr < b;
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
                return rest.split_whitespace().next()?.parse().ok();
            }
        }
    }
    None
}

/// The thpmaps line of the VMA at `addr`: `Ok(None)` on Linux (no file), a failure
/// on contkernel without the file, or when no line covers `addr`.
pub fn need_thpmaps(addr: usize) -> Result<Option<ThpMap>, Fail> {
    match thpmaps(addr) {
        Ok(Some(m)) => Ok(Some(m)),
        Ok(None) => Err(Fail::new(format_args!(
            "/proc/self/thpmaps: no line covers {addr:#x}"
        ))),
        Err(e) => need(None, format_args!("/proc/self/thpmaps ({e})")),
    }
}

/// Writes `1` to `THP/shrink_deferred` (this kernel only): runs the deferred-split
/// shrinker now.
pub fn shrink_deferred() -> Result<(), FileErr> {
    let mut p = path(format_args!("{THP}/shrink_deferred"));
    match fs::write_file(p.as_cstr(), b"1") {
        Ok(_) => Ok(()),
        Err(e) => Err(file_err(&p, e)),
    }
}

/// How contkernel's contiguous layer runs (`contpte=on|off|naive` on its command
/// line), as /sys/kernel/mm/contpte/mode (or a probe) tells.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ContMode {
    /// Contiguous entries are written (contpte=on or naive).
    InUse,
    /// None are (contpte=off).
    Off,
}

/// contkernel's /sys/kernel/mm/contpte/mode: `on`, `off` or `naive`.
pub const CONTPTE_MODE: &core::ffi::CStr = c"/sys/kernel/mm/contpte/mode";
/// contkernel's transparent_hugepage/cow: `page` (copy one page of a shared large
/// folio) or `folio` (copy all of it; boot option cow=folio).
pub const THP_COW: &core::ffi::CStr = c"/sys/kernel/mm/transparent_hugepage/cow";

/// The collapse thread's (khugepaged's) sleep between rounds, in ms.
pub const SCAN_SLEEP: &core::ffi::CStr =
    c"/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs";

/// `scan_sleep_millisecs` set for a while: the value found is written back when this
/// is dropped (also when a test fails on the way).
pub struct ScanSleep(Option<u64>);

impl ScanSleep {
    pub fn set(ms: u64) -> Result<ScanSleep, Errno> {
        let saved = ScanSleep(fs::read_u64(SCAN_SLEEP).ok());
        write_u64(SCAN_SLEEP, ms)?;
        Ok(saved)
    }
}

impl Drop for ScanSleep {
    fn drop(&mut self) {
        if let Some(ms) = self.0 {
            let _ = write_u64(SCAN_SLEEP, ms);
        }
    }
}

fn write_u64(path: &core::ffi::CStr, v: u64) -> Result<(), Errno> {
    let text = Text::<24>::from_fmt(format_args!("{v}\n"));
    fs::write_file(path, text.as_str().as_bytes()).map(|_| ())
}

/// The first word of file `path`, None if it cannot be read.
pub fn read_word(path: &core::ffi::CStr) -> Option<Text<16>> {
    let mut buf = [0u8; 32];
    let n = fs::read_file(path, &mut buf).ok()?;
    let word = buf[..n].split(|b| b.is_ascii_whitespace()).next()?;
    let mut t = Text::new();
    t.push(word);
    Some(t)
}

/// Whether a write to a shared large folio copies the whole folio (contkernel with
/// cow=folio, from [`THP_COW`]); false on Linux and with cow=page.
pub fn cow_copies_folio() -> bool {
    read_word(THP_COW).is_some_and(|w| w.as_str() == "folio")
}

/// Whether contiguous entries are in use: from /sys/kernel/mm/contpte/mode if the
/// kernel has it, otherwise probed by faulting one 64 KiB folio, which writes
/// contiguous entries (cont_maps, or folds with contpte=naive) unless contpte=off.
/// The probe leaves the policy at "only 64K": call this before setting the policy a
/// test wants. `None` without contpte/stats (Linux). Returns also where the answer
/// came from.
pub fn cont_mode() -> Option<(ContMode, &'static str)> {
    if let Some(word) = read_word(CONTPTE_MODE) {
        let off = word.as_str() == "off";
        return Some((
            if off { ContMode::Off } else { ContMode::InUse },
            "/sys/kernel/mm/contpte/mode",
        ));
    }
    fs::read_all(CONTPTE_STATS, &mut [0u8; 16]).ok()?;
    only(64).ok()?;
    let prot = crate::mm::PROT_READ | crate::mm::PROT_WRITE;
    let r = crate::mm::Region::anon_aligned(CONT_SIZE, CONT_SIZE, prot).ok()?;
    let before = ContStats::read();
    r.store(0, 1);
    let after = ContStats::read();
    let written = ["cont_maps", "folds"]
        .iter()
        .filter_map(|n| before.delta(&after, n))
        .sum::<i64>();
    Some((
        if written > 0 {
            ContMode::InUse
        } else {
            ContMode::Off
        },
        "probe: a 64K fault",
    ))
}

/// The frame of every mTHP scenario program: `begin` mounts the pseudo filesystems on
/// a bare Linux, saves the policy, faults the program's own stack and image in with
/// base pages (a large folio there would be split and copied after fork and move the
/// counters), and prints the kernel and whether contiguous entries are in use; `end`
/// puts the policy back, prints it and the time taken, and finishes the suite.
pub struct Scenario {
    name: &'static str,
    saved: Policy,
    /// Contiguous entries are in use (always assumed on Linux, which does not say).
    pub cont_on: bool,
    t0: i128,
}

impl Scenario {
    /// `None` if the policy could not be read (reported as a failure of `t`).
    pub fn begin(name: &'static str, t: &mut crate::test::Suite) -> Option<Scenario> {
        mount_pseudo_fs();
        let saved = Policy::save();
        let _ = only(0);
        crate::mm::prefault_stack();
        crate::mm::prefault_image();
        let cont_on = match cont_mode() {
            Some((mode, how)) => {
                let on = mode == ContMode::InUse;
                crate::println!(
                    "{name}: contiguous entries: {} ({how})",
                    if on { "in use" } else { "off" }
                );
                on
            }
            None => true,
        };
        if let Ok(u) = proc::uname() {
            crate::println!("{name}: kernel={} {}", u.sysname(), u.release());
        }
        match saved {
            Ok(saved) => {
                crate::println!("{name}: policy before: {saved}");
                Some(Scenario {
                    name,
                    saved,
                    cont_on,
                    t0: crate::time::now_ns(),
                })
            }
            Err(e) => {
                t.report("save_policy", Err(e.into()));
                None
            }
        }
    }

    pub fn end(self, mut t: crate::test::Suite) -> i32 {
        let name = self.name;
        t.run("restore_policy", || {
            let now = self.saved.restore_checked()?;
            crate::println!("{name}: policy after: {now}");
            Ok(())
        });
        crate::println!(
            "{name}: {} ms",
            (crate::time::now_ns() - self.t0) / 1_000_000
        );
        t.finish()
    }
}

/// Minor faults this process has taken so far (getrusage).
pub fn minflt() -> Result<i64, Fail> {
    use crate::test::Context;
    Ok(proc::getrusage(proc::RUSAGE_SELF).ctx("getrusage")?.minflt)
}

/// The counters around one write after fork: the statistics of one mTHP size, the
/// contiguous layer's counters, Linux's `thp_split_pmd` (/proc/vmstat), and the faults.
pub struct Window {
    pub s0: Stats,
    pub s1: Stats,
    pub c0: ContStats,
    pub c1: ContStats,
    pub split_pmd0: Option<u64>,
    pub split_pmd1: Option<u64>,
    pub faults: i64,
}

/// Makes the stack private again after fork (a first write to each of its shared pages
/// is a CoW fault, and may copy or unfold a large stack folio: both would count), then
/// reads the counters of size `kb`, runs `write`, and reads them again. Not inlined, so
/// that its frame and its callees' lie in the stack just made private.
#[inline(never)]
pub fn window(kb: usize, write: impl FnOnce()) -> Result<Window, Fail> {
    crate::mm::prefault_stack();
    measure(kb, write)
}

/// `window` for a stack already private (no fork since it was last made so).
#[inline(never)]
pub fn measure(kb: usize, write: impl FnOnce()) -> Result<Window, Fail> {
    let s0 = Stats::read(kb);
    let split_pmd0 = keyed(c"/proc/vmstat", "thp_split_pmd");
    let c0 = ContStats::read();
    let f0 = minflt()?;
    write();
    let f1 = minflt()?;
    let c1 = ContStats::read();
    let split_pmd1 = keyed(c"/proc/vmstat", "thp_split_pmd");
    Ok(Window {
        s0,
        s1: Stats::read(kb),
        c0,
        c1,
        split_pmd0,
        split_pmd1,
        faults: f1 - f0,
    })
}
