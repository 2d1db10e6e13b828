//! What one QEMU run gave back, and how it is shown when a test fails.

use std::fmt;
use std::time::Duration;

/// Console lines shown by the `Display` of an [`Outcome`].
const CONSOLE_TAIL_LINES: usize = 60;
/// QEMU stderr lines shown by the `Display` of an [`Outcome`].
const STDERR_TAIL_LINES: usize = 20;

/// The result of booting a [`Machine`](crate::Machine).
///
/// The parsers of the kernel's console protocol are methods too; see [`crate::protocol`].
/// `Display` prints the command, how the run ended and the last 60 console lines: use it
/// in assertion messages (`assert_eq!(out.status, Some(0), "{out}")`).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// QEMU's exit code; `None` if it was killed by a signal (as on a timeout).
    /// Semihosting exit statuses and PSCI SYSTEM_OFF (0) arrive here.
    pub status: Option<i32>,
    /// Whether the timeout fired and QEMU was killed.
    pub timed_out: bool,
    /// Everything the kernel wrote to the PL011 UART (QEMU's stdout).
    pub console: String,
    /// QEMU's own diagnostics (its stderr), kept apart from the console.
    pub stderr: String,
    /// Wall-clock time from starting QEMU to its exit.
    pub wall: Duration,
    /// The QEMU command line, quoted for a shell, to rerun the case by hand.
    pub command: String,
}

impl Outcome {
    /// An outcome holding only `console`: for checking the parsers on saved text.
    pub fn from_console(console: impl Into<String>) -> Self {
        Outcome {
            console: console.into(),
            ..Outcome::default()
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(f, "qemu: {}", self.command)?;
        let ended = match (self.timed_out, self.status) {
            (true, _) => "timed out, QEMU killed".to_string(),
            (false, Some(code)) => format!("exit status {code}"),
            (false, None) => "QEMU killed by a signal".to_string(),
        };
        writeln!(f, "ended: {ended} after {:.2} s", self.wall.as_secs_f64())?;
        write_tail(f, "console", &self.console, CONSOLE_TAIL_LINES)?;
        if !self.stderr.trim().is_empty() {
            write_tail(f, "qemu stderr", &self.stderr, STDERR_TAIL_LINES)?;
        }
        Ok(())
    }
}

fn write_tail(f: &mut fmt::Formatter<'_>, what: &str, text: &str, limit: usize) -> fmt::Result {
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[lines.len().saturating_sub(limit)..];
    if shown.len() == lines.len() {
        writeln!(f, "--- {what} ({} lines) ---", lines.len())?;
    } else {
        writeln!(
            f,
            "--- {what}: last {} of {} lines ---",
            shown.len(),
            lines.len()
        )?;
    }
    for line in shown {
        writeln!(f, "{}", line.trim_end_matches('\r'))?;
    }
    writeln!(f, "--- end of {what} ---")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_the_end_of_the_console() {
        let console: String = (1..=100).map(|n| format!("line {n}\r\n")).collect();
        let out = Outcome {
            status: Some(101),
            command: "qemu-system-aarch64 -M virt".into(),
            ..Outcome::from_console(console)
        };
        let shown = out.to_string();
        assert!(
            shown.contains("qemu: qemu-system-aarch64 -M virt"),
            "{shown}"
        );
        assert!(shown.contains("exit status 101"), "{shown}");
        assert!(shown.contains("last 60 of 100 lines"), "{shown}");
        assert!(
            shown.contains("\nline 41\n") && shown.contains("\nline 100\n"),
            "{shown}"
        );
        assert!(!shown.contains("line 40\n"), "{shown}");
        assert!(!shown.contains('\r'), "{shown}");
        assert!(!shown.contains("qemu stderr"), "{shown}");
    }

    #[test]
    fn display_shows_qemu_stderr_when_there_is_some() {
        let out = Outcome {
            stderr: "qemu-system-aarch64: bad option\n".into(),
            ..Outcome::default()
        };
        assert!(out
            .to_string()
            .contains("--- qemu stderr (1 lines) ---\nqemu-system-aarch64: bad option\n"));
    }
}
