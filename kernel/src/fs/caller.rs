//! The calling process as the /proc/self files and gup_test see it: its identity and
//! its address space. Processes lie above this layer (each task holds its file table,
//! `fs::Files`), so the process layer lends the two through functions `boot.rs`
//! registers, as it wires the trap handlers: a file works on the `Mm` it is handed and
//! never names the task that holds it.

use alloc::string::String;

use crate::arch::aarch64::mm::machine::Mm;

/// What /proc/self/status says of the caller.
pub struct Identity {
    pub pid: u32,
    pub ppid: u32,
    pub name: String,
}

/// A function run on an address space, locked (`None`: there is none).
pub type OnMm<'a> = &'a mut dyn FnMut(Option<&mut Mm>);

/// What the process layer lends (`proc::task`).
pub struct Hooks {
    pub identity: fn() -> Identity,
    /// Runs `f` on the address space of task `pid` (the caller if `None`) under its
    /// lock (row L2 of `mm`'s lock table); `f` gets `None` for a kernel thread or a
    /// task that is gone.
    pub with_mm: fn(Option<u32>, OnMm<'_>),
}

static HOOKS: spin::Once<Hooks> = spin::Once::new();

/// Boot, once, before the first process runs.
pub fn set_hooks(h: Hooks) {
    HOOKS.call_once(|| h);
}

fn hooks() -> &'static Hooks {
    HOOKS.get().expect("fs::caller hooks are set at boot")
}

pub(super) fn identity() -> Identity {
    (hooks().identity)()
}

/// `f` on the caller's address space, locked.
pub(super) fn with_mm<R>(f: impl FnOnce(Option<&mut Mm>) -> R) -> R {
    with_mm_of(None, f)
}

/// `f` on task `pid`'s address space (the caller's if `None`), locked.
pub(super) fn with_mm_of<R>(pid: Option<u32>, f: impl FnOnce(Option<&mut Mm>) -> R) -> R {
    let mut f = Some(f);
    let mut out = None;
    (hooks().with_mm)(pid, &mut |mm| out = f.take().map(|f| f(mm)));
    out.expect("the hook runs f once")
}
