//! In-kernel tests on stable Rust: a registry (`registry.rs`, the one place tests are
//! listed), a runner that reports each test by name and a final `N passed, N failed`
//! line, and the deliberate crashes the host harness checks (`crashtest=`).
//!
//! The runner also checks, after every test, that all frames it took are back in the
//! allocator: a test that leaks frames fails.

use alloc::format;
use alloc::string::String;

use crate::kprintln;
use crate::mm::frame;

mod arch;
mod aspace;
mod collapse;
mod folio;
mod isolation;
mod mm;
mod pgtable;
mod proc;
mod registry;
mod smp;

pub type TestResult = Result<(), String>;

pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// Fail the test with a message (and the location) unless `cond` holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => { $crate::kassert!($cond, "{}", stringify!($cond)) };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(alloc::format!("{}:{}: {}", file!(), line!(), format_args!($($arg)+)));
        }
    };
}

#[macro_export]
macro_rules! kassert_eq {
    ($a:expr, $b:expr) => {{
        let (a, b) = (&$a, &$b);
        $crate::kassert!(*a == *b, "{} == {}: {:?} != {:?}", stringify!($a), stringify!($b), a, b);
    }};
    ($a:expr, $b:expr, $($arg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        $crate::kassert!(*a == *b, "{}: {:?} != {:?}", format_args!($($arg)+), a, b);
    }};
}

/// Run every registered test whose name contains `filter` (all for an empty filter).
/// A filter that matches no test is a mistake (a typo would pass as "0 failed"): it
/// counts as one failure.
pub fn run(filter: &str) -> (usize, usize) {
    let tests = registry::TESTS.iter().filter(|t| t.name.contains(filter));
    let planned = tests.clone().count();
    if planned == 0 {
        kprintln!("ktest: no test name contains {filter:?}");
        kprintln!("0 passed, 1 failed");
        return (0, 1);
    }
    kprintln!("ktest: running {planned} tests");
    let (mut passed, mut failed) = (0, 0);
    for t in tests {
        let before = frame::frames().free_frames();
        let mut result = (t.run)();
        let after = frame::frames().free_frames();
        if result.is_ok() && after != before {
            result = Err(format!(
                "frames not returned: {before} free before, {after} after"
            ));
        }
        match result {
            Ok(()) => {
                passed += 1;
                kprintln!("ktest: {} ... ok", t.name);
            }
            Err(e) => {
                failed += 1;
                kprintln!("ktest: {} ... FAILED: {e}", t.name);
            }
        }
    }
    kprintln!("{passed} passed, {failed} failed");
    (passed, failed)
}

/// Crash on purpose, so the host harness can check the report and the exit status.
pub fn crash(what: &str) -> ! {
    match what {
        "unmapped-read" => {
            // Top half of TTBR1's range: the kernel maps nothing there.
            let p = 0xffff_8000_0000_0000usize as *const u64;
            // SAFETY: not sound, on purpose: this read must fault.
            let v = unsafe { core::ptr::read_volatile(p) };
            panic!("read of an unmapped address returned {v:#x}");
        }
        "panic" | "early" => panic!("crashtest={what}"),
        "ptcheck" => pgtable::corrupt_block_then_operate(),
        other => panic!("unknown crashtest={other} (known: unmapped-read, panic, early, ptcheck)"),
    }
}
