//! The kernel command line (DTB /chosen/bootargs, QEMU's -append): space-separated
//! `key` or `key=value` words; everything after a lone `--` belongs to /init, as in Linux.

use log::LevelFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdLine<'a> {
    kernel: &'a str,
    init: &'a str,
}

impl<'a> CmdLine<'a> {
    pub fn parse(line: &'a str) -> Self {
        let line = line.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        match line
            .split_once(" -- ")
            .or_else(|| line.strip_suffix(" --").map(|k| (k, "")))
        {
            Some((kernel, init)) => Self {
                kernel,
                init: init.trim(),
            },
            None if line == "--" => Self {
                kernel: "",
                init: "",
            },
            None => match line.strip_prefix("-- ") {
                Some(init) => Self {
                    kernel: "",
                    init: init.trim(),
                },
                None => Self {
                    kernel: line,
                    init: "",
                },
            },
        }
    }

    /// The kernel's words, `(key, Some(value))` or `(key, None)`.
    pub fn words(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.kernel
            .split_ascii_whitespace()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (w, None),
            })
    }

    /// The last value given for `key` (`Some("")` for a bare `key`).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v.unwrap_or(""))
    }

    /// The kernel's words that are not among `known` keys (reported at boot: a typo
    /// would otherwise be dropped without a word).
    pub fn unknown<'k>(&self, known: &'k [&str]) -> impl Iterator<Item = &'a str> + 'k
    where
        'a: 'k,
    {
        self.words()
            .map(|(k, _)| k)
            .filter(move |k| !known.contains(k))
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Arguments for /init (after `--`).
    pub fn init_args(&self) -> impl Iterator<Item = &'a str> {
        self.init.split_ascii_whitespace()
    }

    /// `loglevel=` by name (error, warn, info, debug, trace) or Linux number (0..=8).
    pub fn log_level(&self) -> Result<LevelFilter, &'a str> {
        let Some(v) = self.get("loglevel") else {
            return Ok(LevelFilter::Info);
        };
        let level = match v {
            "off" => LevelFilter::Off,
            "error" | "0" | "1" | "2" | "3" => LevelFilter::Error,
            "warn" | "4" => LevelFilter::Warn,
            "info" | "5" | "6" => LevelFilter::Info,
            "debug" | "7" => LevelFilter::Debug,
            "trace" | "8" => LevelFilter::Trace,
            _ => return Err(v),
        };
        Ok(level)
    }

    /// A boolean switch `key=on|off` (also 1/0, yes/no); `default` when absent.
    pub fn switch(&self, key: &str, default: bool) -> Result<bool, &'a str> {
        match self.get(key) {
            None => Ok(default),
            Some("on" | "1" | "yes" | "") => Ok(true),
            Some("off" | "0" | "no") => Ok(false),
            Some(v) => Err(v),
        }
    }
}

/// Linux's `memparse`: an unsigned number in C notation (`0x` hex, leading `0` octal,
/// else decimal; wrapping on overflow), times 2^10 per step of an optional K, M, G, T,
/// P or E suffix (either case). Text after that is ignored, as Linux ignores it.
pub fn memparse(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let (radix, digits) = match bytes {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &text[2..]),
        [b'0', ..] => (8, text),
        _ => (10, text),
    };
    let mut value = 0u64;
    let mut rest = digits.chars();
    let mut suffix = None;
    for c in rest.by_ref() {
        match c.to_digit(radix) {
            Some(d) => value = value.wrapping_mul(radix.into()).wrapping_add(d.into()),
            None => {
                suffix = Some(c);
                break;
            }
        }
    }
    let shift = match suffix.map(|c| c.to_ascii_uppercase()) {
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some('E') => 60,
        _ => 0,
    };
    value << shift
}

/// Words joined by spaces when printed, without allocating: the boot CPU reports
/// unknown words before the kernel heap exists.
pub struct Spaced<'k>(pub &'k [&'k str]);

impl core::fmt::Display for Spaced<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_values_and_last_wins() {
        let c = CmdLine::parse("loglevel=debug ktest ktest=frame bbml2=on");
        assert_eq!(c.get("ktest"), Some("frame"));
        assert_eq!(c.get("loglevel"), Some("debug"));
        assert!(c.has("bbml2"));
        assert!(!c.has("nope"));
        assert_eq!(c.log_level(), Ok(LevelFilter::Debug));
        assert_eq!(c.switch("bbml2", false), Ok(true));
        assert_eq!(c.switch("absent", true), Ok(true));
    }

    #[test]
    fn unknown_words_are_listed() {
        let c = CmdLine::parse("ktest contpte=off tyop=1 -- init args");
        assert_eq!(
            c.unknown(&["ktest", "contpte"]).collect::<Vec<_>>(),
            ["tyop"]
        );
    }

    #[test]
    fn spaced_prints_words_between_spaces() {
        assert_eq!(alloc::format!("{}", Spaced(&["a", "bc", "d"])), "a bc d");
        assert_eq!(alloc::format!("{}", Spaced(&[])), "");
    }

    #[test]
    fn init_args_after_double_dash() {
        let c = CmdLine::parse("quiet -- /bin/x -v 3\0");
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.init_args().collect::<Vec<_>>(), ["/bin/x", "-v", "3"]);
        assert!(!c.has("-v"));
        let c = CmdLine::parse("-- a b");
        assert_eq!(c.words().count(), 0);
        assert_eq!(c.init_args().count(), 2);
        let c = CmdLine::parse("");
        assert_eq!(c.words().count(), 0);
    }

    #[test]
    fn bad_values_are_errors() {
        assert_eq!(CmdLine::parse("loglevel=loud").log_level(), Err("loud"));
        assert_eq!(CmdLine::parse("x=maybe").switch("x", false), Err("maybe"));
        assert_eq!(
            CmdLine::parse("loglevel=7").log_level(),
            Ok(LevelFilter::Debug)
        );
    }
}
