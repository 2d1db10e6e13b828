//! Program entry. The kernel starts `_start` with sp at the initial stack:
//!
//! ```text
//! sp -> argc | argv[0..argc] | NULL | envp[..] | NULL | auxv (type, value)* | AT_NULL
//! ```
//!
//! `_start` clears the frame pointer and link register (the end of the frame chain),
//! aligns sp to 16 bytes and hands the old sp to [`rt_start`], which calls the
//! program's `main` (named with [`entry!`]) and ends the process with exit_group.

use crate::text::Text;
use core::ffi::{c_char, CStr};

core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    ".type _start, %function",
    "_start:",
    "    mov x29, #0",
    "    mov x30, #0",
    "    mov x0, sp",
    "    and x1, x0, #~15",
    "    mov sp, x1",
    "    bl {start}",
    "    brk #0",
    start = sym rt_start,
);

extern "Rust" {
    /// Defined by [`entry!`] in every program.
    fn __rt_main(args: &Args) -> i32;
}

/// Rust side of `_start`.
///
/// # Safety
/// `sp` is the initial stack the kernel built, laid out as in the module docs.
unsafe extern "C" fn rt_start(sp: *const usize) -> ! {
    // SAFETY: the layout above: argc, then argc + 1 argv words, then envp up to its
    // NULL, then auxv pairs; all of it stays mapped for the life of the process.
    let args = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const c_char;
        let envp = argv.add(argc + 1);
        let mut end = envp;
        while !(*end).is_null() {
            end = end.add(1);
        }
        Args {
            argc,
            argv,
            envp,
            auxv: end.add(1) as *const usize,
        }
    };
    // SAFETY: `entry!` defines `__rt_main` with exactly this signature.
    let code = unsafe { __rt_main(&args) };
    crate::proc::exit_group(code)
}

/// `entry!(main)` makes `fn main(args: &rt::Args) -> i32` the program's main; its
/// result is the exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn __rt_main(args: &$crate::Args) -> i32 {
            $main(args)
        }
    };
}

/// The arguments, environment and auxiliary vector from the initial stack.
pub struct Args {
    argc: usize,
    argv: *const *const c_char,
    envp: *const *const c_char,
    auxv: *const usize,
}

/// Auxiliary vector types.
pub mod at {
    pub const PAGESZ: usize = 6;
    pub const HWCAP: usize = 16;
    pub const RANDOM: usize = 25;
}

/// AT_HWCAP bits.
pub mod hwcap {
    /// FEAT_LSE2: load-acquire/store-release inside one aligned 16 bytes need no alignment.
    pub const USCAT: usize = 1 << 25;
}

impl Args {
    /// Number of arguments (argc).
    pub fn len(&self) -> usize {
        self.argc
    }

    /// Whether there are no arguments at all (not even argv[0]).
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// argv[i].
    pub fn get(&self, i: usize) -> Option<&'static CStr> {
        // SAFETY: i < argc indexes argv, whose entries are NUL-terminated strings on
        // the initial stack.
        (i < self.argc).then(|| unsafe { CStr::from_ptr(*self.argv.add(i)) })
    }

    /// argv[i] as UTF-8 (`"?"` if it is not).
    pub fn str(&self, i: usize) -> Option<&'static str> {
        self.get(i).map(|s| s.to_str().unwrap_or("?"))
    }

    /// The environment strings (`NAME=value`).
    pub fn env(&self) -> impl Iterator<Item = &'static CStr> + '_ {
        let mut p = self.envp;
        core::iter::from_fn(move || {
            // SAFETY: envp is NULL-terminated; p never moves past the NULL.
            unsafe {
                if (*p).is_null() {
                    return None;
                }
                let s = CStr::from_ptr(*p);
                p = p.add(1);
                Some(s)
            }
        })
    }

    /// `<directory of argv[0]>/<name>`: another program installed next to this one
    /// (`/bin/<name>` when started as `/bin/<prog>`).
    pub fn sibling(&self, name: &str) -> Text<256> {
        let me = self.str(0).unwrap_or("");
        let dir = me.rfind('/').map_or(".", |i| &me[..i]);
        Text::from_fmt(format_args!("{dir}/{name}"))
    }

    /// The value of environment variable `name`.
    pub fn var(&self, name: &str) -> Option<&'static str> {
        self.env().find_map(|e| {
            let e = e.to_str().ok()?;
            e.strip_prefix(name)?.strip_prefix('=')
        })
    }

    /// The auxiliary vector entry of type `kind` (see [`at`]).
    pub fn aux(&self, kind: usize) -> Option<usize> {
        let mut p = self.auxv;
        // SAFETY: auxv is (type, value) pairs ending with type AT_NULL (0).
        unsafe {
            while *p != 0 {
                if *p == kind {
                    return Some(*p.add(1));
                }
                p = p.add(2);
            }
        }
        None
    }
}
