//! Faults the kernel must turn into SIGSEGV for the faulting process only: each bad
//! access runs in a forked child, and the parent checks with wait4 that the child was
//! killed by signal 11 (WIFSIGNALED, WTERMSIG) and then goes on. Reads and writes of a
//! kernel address and of a low address, writes to our own text, a jump to an
//! unmapped address and to a kernel address, a jump into a page without PROT_EXEC.
#![no_std]
#![no_main]

use core::arch::asm;
use rt::ensure;
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc::{self, SIGSEGV};
use rt::test::{Context, Outcome, Suite};

rt::entry!(main);

const KERNEL: usize = 0xffff_0000_4000_0000;
const LOW: usize = 0x10;
const UNMAPPED: usize = 0xdead_0000;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("segv");
    t.run("read_kernel_address", || segfaults(|| load(KERNEL)));
    t.run("write_kernel_address", || segfaults(|| store(KERNEL)));
    t.run("read_low_address", || segfaults(|| load(LOW)));
    t.run("write_own_text", || {
        segfaults(|| store(main as *const () as usize))
    });
    t.run("jump_unmapped", || segfaults(|| jump(UNMAPPED)));
    t.run("jump_kernel_address", || segfaults(|| jump(KERNEL)));
    t.run("jump_no_exec_page", jump_no_exec);
    t.run("parent_alive", parent_alive);
    t.finish()
}

/// Runs `bad` in a child, which must die of SIGSEGV.
fn segfaults(bad: impl FnOnce()) -> Outcome {
    proc::expect_killed("segv", SIGSEGV, bad)
}

fn load(addr: usize) {
    // SAFETY: deliberately invalid, run only in a child: the access faults and the
    // kernel kills the child before anything uses the value.
    unsafe { core::ptr::read_volatile(addr as *const u8) };
}

fn store(addr: usize) {
    // SAFETY: as in `load`.
    unsafe { core::ptr::write_volatile(addr as *mut u8, 0) };
}

fn jump(addr: usize) {
    // SAFETY: as in `load`: the instruction fetch faults, so nothing runs there.
    unsafe { asm!("br {0}", in(reg) addr, options(noreturn)) }
}

/// A RW page holding a `ret` instruction: fetching from it faults (no PROT_EXEC).
fn jump_no_exec() -> Outcome {
    let page = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    const RET: u32 = 0xd65f_03c0;
    RET.to_le_bytes()
        .iter()
        .enumerate()
        .for_each(|(i, &b)| page.store(i, b));
    segfaults(|| jump(page.addr))
}

/// After all that, the parent still runs and can fork a child that exits normally.
fn parent_alive() -> Outcome {
    let s = proc::fork_wait(|| 7).ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 7, "child {s}");
    Ok(())
}
