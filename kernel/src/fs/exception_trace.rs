//! `/proc/sys/debug/exception-trace`, Linux's switch (`show_unhandled_signals`) for the
//! report the kernel prints when it kills a process for a fault (`proc/process.rs`).
//! A program whose children fault on purpose (`sched_stress`: 500 of them) turns it
//! off around them. A kill is never silent: while the switch is off each one is
//! counted by signal, and turning it back on, or the machine stopping, prints what
//! was not reported (`contkernel: exception-trace was off: 500 kills not reported:
//! SIGSEGV 500`).
//!
//! Protocol: `ON` and the counters are atomics, no lock. A kill reads `ON` and then
//! counts; a flush swaps every counter to zero. A kill that read `ON` off just before
//! the switch went back on is counted after that flush and reported by the next one
//! (at the latest when the machine stops), never lost.

use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::kprintln;
use crate::uapi::{signal_name, Errno, EINVAL};

static ON: AtomicBool = AtomicBool::new(true);

/// Kills not reported, by signal number (1..=63; every signal the kernel kills with
/// is below 32).
static UNREPORTED: [AtomicU32; 64] = [const { AtomicU32::new(0) }; 64];

/// Whether the kill by `sig` about to happen is to be reported; if not, it is counted.
pub fn report_kill(sig: u32) -> bool {
    if ON.load(Ordering::Relaxed) {
        return true;
    }
    UNREPORTED[sig as usize % UNREPORTED.len()].fetch_add(1, Ordering::Relaxed);
    false
}

/// Prints the kills counted while the switch was off, if any, and zeroes the counts.
pub fn flush() {
    let mut total = 0u64;
    let mut by_signal = String::new();
    for (sig, c) in UNREPORTED.iter().enumerate() {
        let n = c.swap(0, Ordering::Relaxed);
        if n != 0 {
            total += u64::from(n);
            let name = signal_name(sig as u32).unwrap_or("signal");
            let _ = write!(by_signal, " {name} {n}");
        }
    }
    if total != 0 {
        kprintln!("contkernel: exception-trace was off: {total} kills not reported:{by_signal}");
    }
}

pub fn render() -> String {
    alloc::format!("{}\n", ON.load(Ordering::Relaxed) as u32)
}

/// Linux's integer syntax: 0 turns the reports off, any other number on.
pub fn write(s: &str) -> Result<(), Errno> {
    let v: i64 = s.trim().parse().map_err(|_| EINVAL)?;
    let was = ON.swap(v != 0, Ordering::Relaxed);
    if v != 0 && !was {
        flush();
    }
    Ok(())
}
