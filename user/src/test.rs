//! Test reports. A [`Suite`] runs named checks, each printing
//! `TEST <name> ... ok` or `TEST <name> ... FAILED: <why>`, and [`Suite::finish`]
//! gives the exit status: 0 only when all passed.
//!
//! A check returns [`Outcome`]; `fail!(...)` and `ensure!(cond, ...)` return a
//! formatted reason, and [`Context::ctx`] turns an unexpected errno into one.

use crate::text::Text;
use crate::{println, Errno};
use core::fmt;

/// Why a check failed.
pub struct Fail(pub Text<112>);

impl Fail {
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        Fail(Text::from_fmt(args))
    }
}

pub type Outcome = Result<(), Fail>;

/// `fail!("format", args)`: return from the check with this reason.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::test::Fail::new(format_args!($($arg)*))) };
}

/// `ensure!(cond, "format", args)`: fail with the reason unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => { if !$cond { $crate::fail!($($arg)*) } };
}

/// Names the call behind an unexpected errno: `mmap: ENOMEM(12)`.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, Fail>;
}

impl<T> Context<T> for Result<T, Errno> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::new(format_args!("{what}: {e}")))
    }
}

impl<T> Context<T> for Option<T> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.ok_or_else(|| Fail::new(format_args!("{what}: missing")))
    }
}

pub struct Suite {
    prog: &'static str,
    passed: u32,
    failed: u32,
}

impl Suite {
    pub fn new(prog: &'static str) -> Self {
        Self {
            prog,
            passed: 0,
            failed: 0,
        }
    }

    /// Runs one check and prints its TEST line.
    pub fn run(&mut self, name: &str, check: impl FnOnce() -> Outcome) {
        self.report(name, check());
    }

    /// Prints the TEST line of a check run elsewhere (e.g. in a child).
    pub fn report(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("TEST {name} ... ok");
            }
            Err(Fail(why)) => {
                self.failed += 1;
                println!("TEST {name} ... FAILED: {why}");
            }
        }
    }

    /// Prints `<prog>: N passed, N failed` and returns the exit status.
    pub fn finish(self) -> i32 {
        println!(
            "{}: {} passed, {} failed",
            self.prog, self.passed, self.failed
        );
        (self.failed != 0) as i32
    }
}
