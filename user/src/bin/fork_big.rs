//! Fork of a process with a large populated VMA: the kernel must copy it in bounded
//! batches, never allocating kernel memory in proportion to the VMA's length (the test
//! build's page-table checker records every 64 KiB block an operation touches: one
//! operation over 256 MiB exhausted the kernel heap).
//!
//! - `fork_256m_4k` / `_64k` / `_2m`: 256 MiB filled page by page (4 KiB pages, then
//!   64 KiB and 2 MiB folios), fork; the child checks every page's word, writes one word per
//!   MiB and exits; the parent's words are unchanged.
//! - `fork_big_64k`: the same with the largest VMA that leaves a quarter of RAM free
//!   (640 MiB with 1 GiB).
//!
//! Each word holds its own offset, so a page mapped at the wrong address shows too.
//! The same binary passes on Linux 6.12.
#![no_std]
#![no_main]

use rt::mm::{Region, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Outcome, Suite};
use rt::thp::{self, Scenario, CONT_SIZE, PMD_SIZE};
use rt::{ensure, println};

rt::entry!(main);

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("fork_big");
    let Some(s) = Scenario::begin("fork_big", &mut t) else {
        return t.finish();
    };
    t.run("fork_256m_4k", || fork_with(0, 256 * MIB));
    t.run("fork_256m_64k", || fork_with(CONT_SIZE / 1024, 256 * MIB));
    t.run("fork_256m_2m", || fork_with(PMD_SIZE / 1024, 256 * MIB));
    let total = thp::meminfo_kb("MemTotal").unwrap_or(0) as usize * 1024;
    // Three quarters of RAM, in 128 MiB steps: the child's tables and copies fit.
    let len = (total * 3 / 4) & !(128 * MIB - 1);
    if len > 256 * MIB {
        println!("fork_big: largest VMA {} MiB", len / MIB);
        t.run("fork_big_64k", || fork_with(CONT_SIZE / 1024, len));
    } else {
        println!("fork_big: {} MiB of RAM: fork_big_64k n/a", total / MIB);
    }
    s.end(t)
}

/// The word at `off` of the region: its offset, tagged.
fn word(off: usize) -> u64 {
    0xf0f0_0000_0000_0000 | off as u64
}

/// `len` bytes under policy `kb` (0: 4 KiB pages only), one word per page, fork: the
/// child reads every word and writes one per MiB, the parent's stay.
fn fork_with(kb: usize, len: usize) -> Outcome {
    thp::only(kb)?;
    let r = Region::anon_aligned(len, PMD_SIZE, PROT_READ | PROT_WRITE).ctx("mmap")?;
    (0..len).step_by(PAGE).for_each(|o| r.store_u64(o, word(o)));
    let s = proc::fork_wait(|| {
        if (0..len).step_by(PAGE).any(|o| r.load_u64(o) != word(o)) {
            return 2;
        }
        (0..len).step_by(MIB).for_each(|o| r.store_u64(o, !word(o)));
        i32::from((0..len).step_by(MIB).any(|o| r.load_u64(o) != !word(o))) * 3
    })
    .ctx("fork/wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child {s} (2: a page wrong after fork, 3: its own write lost)"
    );
    let bad = (0..len).step_by(PAGE).find(|&o| r.load_u64(o) != word(o));
    ensure!(bad.is_none(), "parent's word at {bad:#x?} changed");
    Ok(())
}
