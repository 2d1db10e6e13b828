//! Faults the kernel must turn into SIGSEGV for the faulting process only: each bad
//! access runs in a forked child, and the parent checks with wait4 that the child was
//! killed by signal 11 (WIFSIGNALED, WTERMSIG) and then goes on. Reads and writes of a
//! kernel address and of a low address, writes to our own text, a jump to an
//! unmapped address and to a kernel address, a jump into a page without PROT_EXEC.
#![no_std]
#![no_main]

use rt::ensure;
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc::{self, BadAccess, BadAccess::*};
use rt::test::{Context, Outcome, Suite};

rt::entry!(main);

const KERNEL: usize = 0xffff_0000_4000_0000;
const LOW: usize = 0x10;
const UNMAPPED: usize = 0xdead_0000;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("segv");
    t.run("read_kernel_address", || segfaults(Read(KERNEL)));
    t.run("write_kernel_address", || segfaults(Write(KERNEL)));
    t.run("read_low_address", || segfaults(Read(LOW)));
    t.run("write_own_text", || {
        segfaults(Write(main as *const () as usize))
    });
    t.run("jump_unmapped", || segfaults(Jump(UNMAPPED)));
    t.run("jump_kernel_address", || segfaults(Jump(KERNEL)));
    t.run("jump_no_exec_page", jump_no_exec);
    t.run("parent_alive", parent_alive);
    t.finish()
}

/// Makes `bad` in a child, which must die of SIGSEGV.
fn segfaults(bad: BadAccess) -> Outcome {
    proc::expect_segv("segv", bad)
}

/// A RW page holding a `ret` instruction: fetching from it faults (no PROT_EXEC).
fn jump_no_exec() -> Outcome {
    let page = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    const RET: u32 = 0xd65f_03c0;
    RET.to_le_bytes()
        .iter()
        .enumerate()
        .for_each(|(i, &b)| page.store(i, b));
    segfaults(Jump(page.addr))
}

/// After all that, the parent still runs and can fork a child that exits normally.
fn parent_alive() -> Outcome {
    let s = proc::fork_wait(|| 7).ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 7, "child {s}");
    Ok(())
}
