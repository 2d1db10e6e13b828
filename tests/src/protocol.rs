//! Parsers for the kernel's console protocol, as methods of [`Outcome`].
//!
//! The kernel engineer prints exactly these lines; each parser says what it accepts.
//! Lines are taken with a trailing `\r` removed (the UART driver may print `\r\n`) and
//! leading blanks ignored. Where a line can occur twice (a second panic on another CPU,
//! say), the first one counts, except for the ktest summary, where the last one does.
//!
//! | line                                                                    | parser |
//! |-------------------------------------------------------------------------|--------|
//! | `contkernel: <MiB> MiB RAM, <online>/<total> CPUs online, entered at EL<n>, GICv<n>` | [`Outcome::banner`] |
//! | `contkernel: features: key=value ...`                                   | [`Banner::features`] |
//! | `contkernel: banner at <float> ms emulated`                             | [`Banner::emulated_ms`] |
//! | `ktest: running <N> tests`                                              | [`Outcome::ktest_planned`] |
//! | `ktest: <name> ... ok` / `ktest: <name> ... FAILED: <reason>`           | [`Outcome::ktest_results`] |
//! | `<P> passed, <F> failed`, alone on its line                             | [`Outcome::ktest_summary`] |
//! | `fault: ...`                                                            | [`Outcome::fault_report`] |
//! | `panic on cpu<N>: <message>`, anywhere in a line                        | [`Outcome::panic`] |
//! | `contkernel: irqs masked longest: max=<N> us cpu0=<N> us (file:line) ...` (test builds) | [`Outcome::irqs_masked_longest_us`] |

use std::collections::BTreeMap;

use crate::Outcome;

/// What the kernel's banner lines say about the machine it found.
#[derive(Clone, Debug, PartialEq)]
pub struct Banner {
    /// RAM size in MiB.
    pub mib: u64,
    /// CPUs that came online.
    pub cpus_online: u32,
    /// CPUs described by the device tree.
    pub cpus_total: u32,
    /// The exception level the kernel was entered at: 1 or 2.
    pub el: u8,
    /// The GIC version the kernel drives: 2 or 3.
    pub gic: u8,
    /// The `contkernel: features:` line as key/value pairs (empty if the line is
    /// missing), e.g. `hafdbs` → `af+dirty`. Blank-separated words without `=` are
    /// joined to the previous value.
    pub features: BTreeMap<String, String>,
    /// The time of `contkernel: banner at <float> ms emulated`, if printed.
    pub emulated_ms: Option<f64>,
}

/// A `panic on cpu<N>: <message>` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Panic {
    /// The CPU that panicked.
    pub cpu: u32,
    /// The rest of the line after `panic on cpu<N>: `.
    pub message: String,
    /// Index of the line in [`Outcome::lines`].
    pub line: usize,
}

const BANNER_PREFIX: &str = "contkernel: ";
const KTEST_PREFIX: &str = "ktest: ";
const FAULT_PREFIX: &str = "fault:";
const PANIC_MARK: &str = "panic on cpu";

impl Outcome {
    /// The console as lines, trailing `\r` removed.
    pub fn lines(&self) -> Vec<&str> {
        self.console
            .lines()
            .map(|line| line.trim_end_matches('\r'))
            .collect()
    }

    /// The bodies of the lines that start with `prefix` (after leading blanks).
    fn lines_after<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines()
            .into_iter()
            .filter_map(move |line| line.trim_start().strip_prefix(prefix))
    }

    /// The banner, or why it could not be read.
    pub fn banner(&self) -> Result<Banner, String> {
        let main = self
            .lines_after(BANNER_PREFIX)
            .find(|body| body.contains(" MiB RAM,"))
            .ok_or("no `contkernel: <MiB> MiB RAM, ...` banner line")?;
        let mut banner = parse_banner_line(main)
            .ok_or_else(|| format!("malformed banner line `contkernel: {main}`"))?;
        if let Some(features) = self
            .lines_after(BANNER_PREFIX)
            .find_map(|body| body.strip_prefix("features:"))
        {
            banner.features = parse_features(features);
        }
        banner.emulated_ms = self.lines_after(BANNER_PREFIX).find_map(|body| {
            body.strip_prefix("banner at ")?
                .strip_suffix(" ms emulated")?
                .trim()
                .parse()
                .ok()
        });
        Ok(banner)
    }

    /// N from `ktest: running <N> tests`.
    pub fn ktest_planned(&self) -> Option<u32> {
        self.lines_after(KTEST_PREFIX).find_map(|body| {
            body.strip_prefix("running ")?
                .strip_suffix(" tests")?
                .parse()
                .ok()
        })
    }

    /// Every `ktest: <name> ... <verdict>` line in order: `Ok(())` for `ok`,
    /// `Err(reason)` for `FAILED: <reason>`, and `Err` saying so for any other verdict
    /// (a test cut short by a panic leaves `ktest: <name> ... panic on cpu0: ...`).
    pub fn ktest_results(&self) -> Vec<(String, Result<(), String>)> {
        self.lines_after(KTEST_PREFIX)
            .filter_map(|body| body.split_once(" ..."))
            .map(|(name, verdict)| {
                let verdict = verdict.trim();
                let result = if verdict == "ok" {
                    Ok(())
                } else if let Some(reason) = verdict.strip_prefix("FAILED") {
                    Err(reason.trim_start_matches(':').trim().to_string())
                } else {
                    Err(format!("no verdict, line ends with {verdict:?}"))
                };
                (name.trim().to_string(), result)
            })
            .collect()
    }

    /// The `max=` of the first `contkernel: irqs masked longest:` line: the longest
    /// stretch any CPU kept IRQs masked, in microseconds.
    pub fn irqs_masked_longest_us(&self) -> Option<u64> {
        self.lines().into_iter().find_map(|line| {
            let rest = line
                .trim()
                .strip_prefix(BANNER_PREFIX)?
                .strip_prefix("irqs masked longest: max=")?;
            rest.split_once(" us")?.0.parse().ok()
        })
    }

    /// `(passed, failed)` from the last line that is exactly `<P> passed, <F> failed`.
    pub fn ktest_summary(&self) -> Option<(u32, u32)> {
        self.lines().into_iter().rev().find_map(|line| {
            let (passed, failed) = line.trim().split_once(" passed, ")?;
            let failed = failed.strip_suffix(" failed")?;
            let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !all_digits(passed) || !all_digits(failed) {
                return None;
            }
            Some((passed.parse().ok()?, failed.parse().ok()?))
        })
    }

    /// The lines starting with `fault:` (whole lines, leading blanks removed), or `None`
    /// if the kernel reported no fault.
    pub fn fault_report(&self) -> Option<Vec<String>> {
        let report: Vec<String> = self
            .lines()
            .into_iter()
            .map(str::trim_start)
            .filter(|line| line.starts_with(FAULT_PREFIX))
            .map(String::from)
            .collect();
        (!report.is_empty()).then_some(report)
    }

    /// The first `panic on cpu<N>: <message>` line. It may start mid-line, after output
    /// that the panic cut short.
    pub fn panic(&self) -> Option<Panic> {
        self.lines()
            .into_iter()
            .enumerate()
            .find_map(|(index, line)| {
                let (_, after) = line.split_once(PANIC_MARK)?;
                let (cpu, message) = after.split_once(':')?;
                Some(Panic {
                    cpu: cpu.parse().ok()?,
                    message: message.trim().to_string(),
                    line: index,
                })
            })
    }

    /// Whether the kernel printed a panic line.
    pub fn panicked(&self) -> bool {
        self.panic().is_some()
    }
}

/// Parses `<MiB> MiB RAM, <online>/<total> CPUs online, entered at EL<n>, GICv<n>`.
fn parse_banner_line(body: &str) -> Option<Banner> {
    let mut parts = body.split(", ");
    let mib = parts
        .next()?
        .strip_suffix(" MiB RAM")?
        .trim()
        .parse()
        .ok()?;
    let (online, total) = parts
        .next()?
        .strip_suffix(" CPUs online")?
        .split_once('/')?;
    let el = parts.next()?.strip_prefix("entered at EL")?.parse().ok()?;
    let gic = parts.next()?.trim().strip_prefix("GICv")?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Banner {
        mib,
        cpus_online: online.trim().parse().ok()?,
        cpus_total: total.trim().parse().ok()?,
        el,
        gic,
        features: BTreeMap::new(),
        emulated_ms: None,
    })
}

/// Parses `key=value key=value ...`; a word without `=` continues the previous value.
fn parse_features(text: &str) -> BTreeMap<String, String> {
    let mut features = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some((key, value)) => {
                features.insert(key.to_string(), value.to_string());
                last = Some(key.to_string());
            }
            None => {
                if let Some(value) = last.as_ref().and_then(|key| features.get_mut(key)) {
                    value.push(' ');
                    value.push_str(word);
                }
            }
        }
    }
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "\
contkernel: 1024 MiB RAM, 4/4 CPUs online, entered at EL2, GICv3\r
contkernel: features: hafdbs=af+dirty bbm=2 tlbi_range=yes pan=yes asid_bits=16 pmu=PMUv3p5 6 counters\r
contkernel: banner at 12.75 ms emulated\r
";

    fn console(text: &str) -> Outcome {
        Outcome::from_console(text)
    }

    #[test]
    fn banner_fields() {
        let banner = console(BOOT).banner().unwrap();
        assert_eq!(
            (banner.mib, banner.cpus_online, banner.cpus_total),
            (1024, 4, 4)
        );
        assert_eq!((banner.el, banner.gic), (2, 3));
        assert_eq!(banner.emulated_ms, Some(12.75));
        let features: Vec<(&str, &str)> = banner
            .features
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            features,
            [
                ("asid_bits", "16"),
                ("bbm", "2"),
                ("hafdbs", "af+dirty"),
                ("pan", "yes"),
                ("pmu", "PMUv3p5 6 counters"),
                ("tlbi_range", "yes"),
            ]
        );
    }

    #[test]
    fn banner_with_cpus_missing_and_no_features_line() {
        let banner =
            console("noise\ncontkernel: 512 MiB RAM, 1/2 CPUs online, entered at EL1, GICv2\n")
                .banner()
                .unwrap();
        assert_eq!(
            (
                banner.mib,
                banner.cpus_online,
                banner.cpus_total,
                banner.el,
                banner.gic
            ),
            (512, 1, 2, 1, 2)
        );
        assert!(banner.features.is_empty());
        assert_eq!(banner.emulated_ms, None);
    }

    #[test]
    fn banner_errors_say_what_is_wrong() {
        assert!(console("contkernel: hello\n")
            .banner()
            .unwrap_err()
            .contains("no `contkernel:"));
        let error = console("contkernel: 1G MiB RAM, 1/1 CPUs online, entered at EL1, GICv2\n")
            .banner()
            .unwrap_err();
        assert!(error.contains("malformed banner line"), "{error}");
        assert!(
            console("contkernel: 1 MiB RAM, 1/1 CPUs online, entered at EL1, GICv2, extra\n")
                .banner()
                .is_err()
        );
    }

    const KTEST: &str = "\
contkernel: 1024 MiB RAM, 1/1 CPUs online, entered at EL1, GICv2
ktest: running 4 tests
ktest: mm::frames::alloc_free ... ok
ktest: mm::contig::fold ... FAILED: entry 3 lacks the contiguous bit ... twice
[    0.012345] I cpu0 a log line between tests
ktest: mm::cow::fork ... FAILED
ktest: mm::pt::walk ... ok\r
3 passed, 1 failed is not a summary
2 passed, 2 failed
";

    #[test]
    fn irqs_masked_line() {
        let out = console(
            "contkernel: irqs masked longest: max=812 us cpu0=812 us (kernel/src/a.rs:3) cpu1=5 us\n",
        );
        assert_eq!(out.irqs_masked_longest_us(), Some(812));
        assert_eq!(
            console("contkernel: irqs masked longest: max=x us\n").irqs_masked_longest_us(),
            None
        );
        assert_eq!(console(BOOT).irqs_masked_longest_us(), None);
    }

    #[test]
    fn ktest_lines() {
        let out = console(KTEST);
        assert_eq!(out.ktest_planned(), Some(4));
        assert_eq!(
            out.ktest_results(),
            [
                ("mm::frames::alloc_free".to_string(), Ok(())),
                (
                    "mm::contig::fold".to_string(),
                    Err("entry 3 lacks the contiguous bit ... twice".to_string())
                ),
                ("mm::cow::fork".to_string(), Err(String::new())),
                ("mm::pt::walk".to_string(), Ok(())),
            ]
        );
        assert_eq!(out.ktest_summary(), Some((2, 2)));
    }

    #[test]
    fn ktest_cut_short_by_a_panic() {
        let out = console("ktest: running 1 tests\nktest: mm::oops ... panic on cpu0: boom at kernel/src/mm.rs:3:5\n");
        let results = out.ktest_results();
        assert_eq!(results.len(), 1);
        assert!(
            results[0].1.as_ref().unwrap_err().contains("no verdict"),
            "{results:?}"
        );
        assert_eq!(out.ktest_summary(), None);
        let panic = out.panic().unwrap();
        assert_eq!(
            (panic.cpu, panic.message.as_str(), panic.line),
            (0, "boom at kernel/src/mm.rs:3:5", 1)
        );
    }

    #[test]
    fn summary_must_be_alone_on_its_line() {
        assert_eq!(console("ktest: 1 passed, 0 failed\n").ktest_summary(), None);
        assert_eq!(console("x passed, 0 failed\n").ktest_summary(), None);
        assert_eq!(
            console("  10 passed, 0 failed  \r\n").ktest_summary(),
            Some((10, 0))
        );
        assert_eq!(console("").ktest_summary(), None);
    }

    const FAULT: &str = "\
contkernel: 1024 MiB RAM, 1/1 CPUs online, entered at EL1, GICv2
fault: cpu0 EL1 synchronous exception: Data abort from the same EL (EC 0x25)
fault:   FSC 0x07 Translation fault, level 3 (read); FAR 0xffff800000000000
fault:   ELR 0xffff000040201234 SPSR 0x3c5 ESR 0x96000007
panic on cpu0: unhandled exception
  at kernel/src/arch/exceptions.rs:88:9
";

    #[test]
    fn fault_report_and_panic() {
        let out = console(FAULT);
        let report = out.fault_report().unwrap();
        assert_eq!(report.len(), 3);
        assert_eq!(
            report[1],
            "fault:   FSC 0x07 Translation fault, level 3 (read); FAR 0xffff800000000000"
        );
        assert_eq!(
            out.panic(),
            Some(Panic {
                cpu: 0,
                message: "unhandled exception".into(),
                line: 4
            })
        );
        assert!(out.panicked());
    }

    #[test]
    fn clean_console_has_no_fault_and_no_panic() {
        let out = console(BOOT);
        assert_eq!(out.fault_report(), None);
        assert!(!out.panicked());
        assert!(out.ktest_results().is_empty());
        assert_eq!(out.ktest_planned(), None);
    }
}
