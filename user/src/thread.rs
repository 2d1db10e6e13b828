//! Threads without a libc: `clone` with the flags glibc's `pthread_create` passes
//! (the same address space, files, signal actions; `CLONE_THREAD`), on a stack
//! mapped for the thread, and `join` through the futex word the kernel clears and
//! wakes when the thread exits (`CLONE_CHILD_CLEARTID`), as `pthread_join` does.
//! The runtime keeps no per-thread state (no TLS), so a thread may call anything in
//! `rt` whose state is its own (the `print!` buffer is per call).

use crate::mm::{self, PAGE, PROT_READ, PROT_WRITE};
use crate::sys::nr;
use crate::{syscall, Errno};

const CLONE_VM: usize = 0x100;
const CLONE_FS: usize = 0x200;
const CLONE_FILES: usize = 0x400;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x10000;
const CLONE_SYSVSEM: usize = 0x40000;
const CLONE_PARENT_SETTID: usize = 0x100000;
const CLONE_CHILD_CLEARTID: usize = 0x200000;
const FUTEX_WAIT: usize = 0;

/// Stack of each thread: 256 KiB.
const STACK: usize = 64 * PAGE;

core::arch::global_asm!(
    // long rt_clone_thread(flags x0, sp x1, ptid x2, tls x3, ctid x4, fn x5, arg x6):
    // the child runs fn(arg) on its own stack and exits with its result; the parent
    // returns the tid (or -errno). x9 and x10 survive the call in both (the kernel
    // keeps every register but x0), and the child never returns through the
    // parent's frames.
    ".global rt_clone_thread",
    "rt_clone_thread:",
    "    mov x9, x5",
    "    mov x10, x6",
    "    mov x8, #220",
    "    svc #0",
    "    cbnz x0, 1f",
    "    mov x0, x10",
    "    blr x9",
    "    mov x8, #93",
    "    svc #0",
    "1:  ret",
);

extern "C" {
    fn rt_clone_thread(
        flags: usize,
        sp: usize,
        ptid: usize,
        tls: usize,
        ctid: usize,
        f: extern "C" fn(usize) -> usize,
        arg: usize,
    ) -> isize;
}

/// A running thread; `join` waits for it and gives its stack back.
pub struct Thread {
    pub tid: u32,
    stack: usize,
}

impl Thread {
    /// The word the kernel writes the tid to and clears at exit: the stack's top.
    fn word(stack: usize) -> *mut u32 {
        (stack + STACK - 16) as *mut u32
    }
}

/// Start `f(arg)` in a new thread of this process.
pub fn spawn(f: extern "C" fn(usize) -> usize, arg: usize) -> Result<Thread, Errno> {
    let stack = mm::map_anon(STACK, PROT_READ | PROT_WRITE, 0)?;
    let word = Thread::word(stack) as usize;
    let flags = CLONE_VM
        | CLONE_FS
        | CLONE_FILES
        | CLONE_SIGHAND
        | CLONE_THREAD
        | CLONE_SYSVSEM
        | CLONE_PARENT_SETTID
        | CLONE_CHILD_CLEARTID;
    // SAFETY: the child runs `f` on the fresh stack below `word` (16-byte aligned)
    // and exits; it never returns into this frame.
    let r = unsafe { rt_clone_thread(flags, word - 16, word, 0, word, f, arg) };
    if r < 0 {
        // SAFETY: the stack was mapped above and no thread uses it.
        let _ = unsafe { mm::munmap(stack, STACK) };
        return Err(Errno(-r as i32));
    }
    Ok(Thread {
        tid: r as u32,
        stack,
    })
}

impl Thread {
    /// Wait until the thread has exited (its tid word cleared), then unmap its stack.
    pub fn join(self) {
        let word = Thread::word(self.stack);
        loop {
            // SAFETY: the word lies in the thread's stack mapping, which stays mapped
            // until below; the kernel writes it, so read it volatile.
            let v = unsafe { core::ptr::read_volatile(word) };
            if v == 0 {
                break;
            }
            // A shared (not PRIVATE) wait, as glibc's pthread_join: Linux wakes the
            // tid word with a shared wake, whose key differs from a private wait's.
            // SAFETY: FUTEX_WAIT only reads the word; EAGAIN (it changed) and EINTR
            // send us round the loop again.
            let _ = unsafe { syscall!(nr::FUTEX, word as usize, FUTEX_WAIT, v, 0, 0, 0) };
        }
        // SAFETY: the thread has exited: nothing uses its stack any more.
        let _ = unsafe { mm::munmap(self.stack, STACK) };
    }
}
