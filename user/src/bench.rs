//! Benchmark support: the generic timer's virtual counter read at EL0 (CNTVCT_EL0 and
//! CNTFRQ_EL0, which Linux and contkernel both let EL0 read), median/min/max of
//! repetitions, and snapshots of the kernel's counters to report what an operation did.
//!
//! Counters come from the files both kernels have (`/proc/vmstat`, every line; the
//! per-size `transparent_hugepage/hugepages-<N>kB/stats/*`) and from contkernel's own
//! (`/sys/kernel/mm/contpte/stats`, every line); a file a kernel lacks adds nothing.
//! Results are printed as JSON objects (`bench_mm: {...}`) that the host's
//! `bench-report` parses: [`Json`] writes them.
//!
//! [`phase_start`] and [`phase_stop`] mark a measured window for the TLB model's QEMU
//! plugin (tlbmodel/, docs/tlb.md): no-op instructions that no compiler emits and
//! Linux never executes at EL0, so only the benchmark's own windows are counted.

use crate::fs;
use crate::text::Text;
use core::fmt::{self, Write};

/// The virtual counter (CNTVCT_EL0). The ISB keeps the read from being taken before
/// the instructions in front of it (Arm ARM D12.1.2, "reads of CNTVCT_EL0 can occur
/// speculatively and out of order").
#[inline(always)]
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: a read of a counter register EL0 may access (CNTKCTL_EL1.EL0VCTEN).
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Opens a phase of the TLB model: `orr x27, x27, x27` with the phase's id in x27
/// (an ALU no-op; tlbmodel/src/decode.rs knows it). Not `nomem`: the compiler must
/// not move the measured operation's memory accesses across it.
#[inline(always)]
pub fn phase_start(id: u64) {
    // SAFETY: ORR of a register with itself changes nothing.
    unsafe {
        core::arch::asm!("orr x27, x27, x27", in("x27") id, options(nostack, preserves_flags))
    };
}

/// Closes the phase: `orr x28, x28, x28`.
#[inline(always)]
pub fn phase_stop() {
    // SAFETY: as in `phase_start`.
    unsafe { core::arch::asm!("orr x28, x28, x28", options(nostack, preserves_flags)) };
}

/// The counter's frequency in Hz (CNTFRQ_EL0).
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: as in `counter`: readable at EL0 when EL0VCTEN or EL0PCTEN is set.
    unsafe {
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// median, min and max of some repetitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub median: u64,
    pub min: u64,
    pub max: u64,
}

impl Spread {
    /// Of `v` (sorted in place); None when empty. The median of an even count is the
    /// upper middle value (an observed figure, not an average).
    pub fn of(v: &mut [u64]) -> Option<Spread> {
        v.sort_unstable();
        Some(Spread {
            median: *v.get(v.len() / 2)?,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// Most counters one snapshot holds (Linux 6.12's /proc/vmstat has about 190 lines).
const MAX_COUNTERS: usize = 320;

/// Named counter values at one moment.
pub struct Snapshot {
    names: [Text<48>; MAX_COUNTERS],
    values: [u64; MAX_COUNTERS],
    len: usize,
}

/// The per-size counters only Linux has (no swap here); with `thp::STAT_NAMES`, the
/// per-size counters read. A missing file is skipped.
const LINUX_SIZE_STATS: [&str; 3] = ["anon_fault_fallback_charge", "swpout", "swpout_fallback"];

impl Snapshot {
    /// Reads every counter: /proc/vmstat, contkernel's contpte stats (`contpte/NAME`)
    /// and the per-size statistics of each size in `sizes_kb` (`hugepages-NkB/NAME`;
    /// 0 entries are skipped).
    pub fn read(sizes_kb: &[usize]) -> Snapshot {
        let mut s = Snapshot {
            names: [const { Text::new() }; MAX_COUNTERS],
            values: [0; MAX_COUNTERS],
            len: 0,
        };
        let mut buf = [0u8; 12288];
        for (file, prefix) in [
            (c"/proc/vmstat", ""),
            (c"/sys/kernel/mm/contpte/stats", "contpte/"),
        ] {
            let n = fs::read_all(file, &mut buf).unwrap_or(0);
            for line in buf[..n].split(|&b| b == b'\n') {
                let mut words = line.split(|b| b.is_ascii_whitespace());
                let (Some(name), Some(v)) = (words.next(), words.next().and_then(fs::parse_u64))
                else {
                    continue;
                };
                let name = core::str::from_utf8(name).unwrap_or("?");
                s.push(format_args!("{prefix}{name}"), v);
            }
        }
        for (i, &kb) in sizes_kb.iter().enumerate() {
            if kb == 0 || sizes_kb[..i].contains(&kb) {
                continue;
            }
            for &name in LINUX_SIZE_STATS.iter().chain(crate::thp::STAT_NAMES.iter()) {
                if let Some(v) = crate::thp::stat(kb, name) {
                    s.push(format_args!("hugepages-{kb}kB/{name}"), v);
                }
            }
        }
        s
    }

    fn push(&mut self, name: fmt::Arguments<'_>, v: u64) {
        if self.len < MAX_COUNTERS {
            self.names[self.len] = Text::from_fmt(name);
            self.values[self.len] = v;
            self.len += 1;
        }
    }

    fn get(&self, name: &str) -> Option<u64> {
        (0..self.len)
            .find(|&i| self.names[i].as_str() == name)
            .map(|i| self.values[i])
    }

    /// `later - self` of every counter that changed, in `later`'s order.
    pub fn changes<'a>(&'a self, later: &'a Snapshot) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        (0..later.len).filter_map(move |i| {
            let name = later.names[i].as_str();
            let d = later.values[i] as i64 - self.get(name).unwrap_or(0) as i64;
            (d != 0).then_some((name, d))
        })
    }
}

/// A JSON object written into a fixed buffer (what does not fit is cut, which the
/// host's parser then rejects, so a cut never passes for a result).
pub struct Json {
    pub text: Text<8192>,
    first: bool,
}

impl Default for Json {
    fn default() -> Self {
        Self::new()
    }
}

impl Json {
    pub fn new() -> Json {
        let mut text = Text::new();
        text.push(b"{");
        Json { text, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.text.push(b",");
        }
        self.first = false;
        let _ = write!(self.text, "\"{k}\":");
    }

    pub fn num(&mut self, k: &str, v: impl fmt::Display) -> &mut Self {
        self.key(k);
        let _ = write!(self.text, "{v}");
        self
    }

    /// A string value; `"` and `\` are escaped, control characters dropped.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.text.push(b"\"");
        for c in v.chars().filter(|c| !c.is_control()) {
            if c == '"' || c == '\\' {
                self.text.push(b"\\");
            }
            let mut b = [0u8; 4];
            self.text.push(c.encode_utf8(&mut b).as_bytes());
        }
        self.text.push(b"\"");
        self
    }

    pub fn null(&mut self, k: &str) -> &mut Self {
        self.key(k);
        self.text.push(b"null");
        self
    }

    pub fn spread(&mut self, k: &str, s: Option<Spread>) -> &mut Self {
        match s {
            Some(s) => self.raw(
                k,
                format_args!(
                    "{{\"median\":{},\"min\":{},\"max\":{}}}",
                    s.median, s.min, s.max
                ),
            ),
            None => self.null(k),
        }
    }

    /// An object of the counters that changed between two snapshots.
    pub fn changes(&mut self, k: &str, before: &Snapshot, after: &Snapshot) -> &mut Self {
        self.key(k);
        self.text.push(b"{");
        for (i, (name, d)) in before.changes(after).enumerate() {
            let _ = write!(self.text, "{}\"{name}\":{d}", if i > 0 { "," } else { "" });
        }
        self.text.push(b"}");
        self
    }

    fn raw(&mut self, k: &str, v: fmt::Arguments<'_>) -> &mut Self {
        self.key(k);
        let _ = self.text.write_fmt(v);
        self
    }

    /// The finished object.
    pub fn end(&mut self) -> &str {
        self.text.push(b"}");
        self.text.as_str()
    }
}
