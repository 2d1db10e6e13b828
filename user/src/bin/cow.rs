//! Copy-on-write after fork, both directions, on a 1 MiB region and on single pages:
//! a write by the parent after fork is not seen by the child, a write by the child is
//! not seen by the parent, and each side keeps its own writes.
//!
//! Order without shared memory: for "the child writes", the parent checks after
//! wait4; for "the parent writes", the child re-reads for 300 ms while the parent
//! writes right after fork (a leak is caught whenever the parent runs in that window,
//! which on one CPU it must, since the child sleeps).
#![no_std]
#![no_main]

use rt::ensure;
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Outcome, Suite};
use rt::time::{nanosleep, Timespec};

rt::entry!(main);

const MIB: usize = 1 << 20;
const OLD: u8 = 0x11;
const NEW: u8 = 0xee;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("cow");
    t.run("child_writes_1mib", || child_writes(MIB));
    t.run("child_writes_page", || child_writes(PAGE));
    t.run("parent_writes_1mib", || parent_writes(MIB));
    t.run("parent_writes_page", || parent_writes(PAGE));
    t.run("both_write_after_fork", both_write);
    t.run("unmap_in_child_keeps_parent", unmap_in_child);
    t.finish()
}

fn filled(len: usize, byte: u8) -> Result<Region, rt::test::Fail> {
    let r = Region::anon(len, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    r.fill(0, len, byte);
    Ok(r)
}

/// The child overwrites everything and checks its copy; the parent still has OLD.
fn child_writes(len: usize) -> Outcome {
    let r = filled(len, OLD)?;
    let s = proc::fork_wait(|| {
        r.fill(0, len, NEW);
        r.find_not(0, len, NEW).is_some() as i32
    })
    .ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    let bad = r.find_not(0, len, OLD);
    ensure!(
        bad.is_none(),
        "parent sees the child's write at +{:#x}",
        bad.unwrap_or(0)
    );
    Ok(())
}

/// The parent overwrites everything right after fork; the child keeps seeing OLD.
fn parent_writes(len: usize) -> Outcome {
    let r = filled(len, OLD)?;
    let pid = proc::spawn(|| {
        for _ in 0..30 {
            if r.find_not(0, len, OLD).is_some() {
                return 1;
            }
            let _ = nanosleep(&Timespec::from_ms(10));
        }
        0
    })
    .ctx("fork")?;
    r.fill(0, len, NEW);
    let s = proc::wait(pid).ctx("wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child saw the parent's write ({s})"
    );
    ensure!(
        r.find_not(0, len, NEW).is_none(),
        "parent lost its own write"
    );
    Ok(())
}

/// Both sides write different halves and bytes; each sees only its own writes.
fn both_write() -> Outcome {
    let r = filled(MIB, OLD)?;
    let s = proc::fork_wait(|| {
        r.fill(0, MIB / 2, 0xc1);
        let _ = nanosleep(&Timespec::from_ms(50));
        (r.find_not(0, MIB / 2, 0xc1).is_some() || r.find_not(MIB / 2, MIB / 2, OLD).is_some())
            as i32
    });
    r.fill(MIB / 2, MIB / 2, 0xa1);
    let s = s.ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child's view wrong ({s})"
    );
    ensure!(
        r.find_not(0, MIB / 2, OLD).is_none(),
        "parent sees the child's half"
    );
    ensure!(
        r.find_not(MIB / 2, MIB / 2, 0xa1).is_none(),
        "parent lost its half"
    );
    Ok(())
}

/// The child unmapping the shared region leaves the parent's copy intact.
fn unmap_in_child() -> Outcome {
    let r = filled(MIB, OLD)?;
    let s = proc::fork_wait(|| r.unmap(0, MIB).is_err() as i32).ctx("fork/wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    ensure!(r.find_not(0, MIB, OLD).is_none(), "parent's copy changed");
    r.fill(0, MIB, NEW);
    ensure!(
        r.find_not(0, MIB, NEW).is_none(),
        "parent's write after the child left lost"
    );
    Ok(())
}
