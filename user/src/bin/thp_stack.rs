//! The stack and THP, as on Linux 6.12. Linux's stack VMA is small at exec (the
//! argument pages and 128 KiB below them) and grows down a page at a time under the
//! faults below it (VM_GROWSDOWN), so no 2 MiB range ever lies empty inside it and the
//! stack never gets a 2 MiB folio, whatever the policy. A fixed 8 MiB VMA would get one
//! at exec already (the argument strings are the first write into an empty, aligned
//! 2 MiB range) and more as the stack deepens: the same program would show other THP
//! counters on the two kernels.
//!
//! `stack_at_exec`: the `[stack]` VMA of this program holds no 2 MiB folio
//! (`AnonHugePages: 0 kB` in /proc/self/smaps) and is less than 1 MiB long.
//! `stack_growth_takes_no_2m_folio`: with only hugepages-2048kB `always`, 4 MiB of
//! stack used from the top down: hugepages-2048kB/stats/anon_fault_alloc +0,
//! AnonHugePages still 0 kB, and the VMA grew to at least the 4 MiB.
#![no_std]
#![no_main]

use rt::mm::PAGE;
use rt::test::{Fail, Outcome, Suite};
use rt::thp::{self, Opt};
use rt::{ensure, println};

rt::entry!(main);

/// Stack used: `DEPTH` frames of `FRAME` bytes.
const FRAME: usize = 16 * 1024;
const DEPTH: usize = 256;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("thp_stack");
    // Before `Scenario::begin`, which faults 256 KiB of stack in (proc mounted first
    // on a Linux booted with this program as /init).
    thp::mount_pseudo_fs();
    let at_exec = stack_vma();
    let Some(sc) = thp::Scenario::begin("thp_stack", &mut t) else {
        return t.finish();
    };
    t.run("stack_at_exec", || {
        let (size, huge) = at_exec?;
        println!("thp_stack: at exec: [stack] {size} kB, AnonHugePages {huge} kB");
        ensure!(
            huge == 0,
            "AnonHugePages {huge} kB in the stack at exec, want 0"
        );
        ensure!(
            size < 1024,
            "[stack] is {size} kB at exec, want under 1 MiB"
        );
        Ok(())
    });
    t.run("stack_growth_takes_no_2m_folio", growth);
    sc.end(t)
}

/// Size and AnonHugePages (kB) of the VMA holding this frame.
fn stack_vma() -> Result<(u64, u64), Fail> {
    let here = 0u8;
    let at = core::hint::black_box(&here) as *const u8 as usize;
    let size = thp::smaps_kb(at, "Size");
    let huge = thp::smaps_kb(at, "AnonHugePages");
    match size.zip(huge) {
        Some(v) => Ok(v),
        None => Err(Fail::new(format_args!(
            "/proc/self/smaps: no Size or AnonHugePages for the stack"
        ))),
    }
}

fn growth() -> Outcome {
    thp::only(2048)?;
    let (size0, _) = stack_vma()?;
    let alloc0 = thp::stat(2048, "anon_fault_alloc");
    let (size1, huge1) = descend(DEPTH)?;
    let alloc = alloc0.zip(thp::stat(2048, "anon_fault_alloc"));
    let delta = alloc.map(|(a, b)| b as i64 - a as i64);
    println!(
        "thp_stack: {} KiB of stack: [stack] {size0} -> {size1} kB, AnonHugePages {huge1} kB, 2048kB anon_fault_alloc {}",
        FRAME * DEPTH / 1024,
        thp::Delta(delta)
    );
    ensure!(
        delta == Some(0),
        "2048kB anon_fault_alloc {}, want +0",
        Opt(delta)
    );
    ensure!(huge1 == 0, "AnonHugePages {huge1} kB in the stack, want 0");
    ensure!(
        size1 >= (FRAME * DEPTH / 1024) as u64,
        "[stack] grew from {size0} to {size1} kB only"
    );
    Ok(())
}

/// Uses `depth` frames of stack, each written from its top down a page at a time (as
/// a deepening stack is), and measures the stack VMA from the deepest one.
#[inline(never)]
fn descend(depth: usize) -> Result<(u64, u64), Fail> {
    let mut frame = [0u8; FRAME];
    frame
        .iter_mut()
        .rev()
        .step_by(PAGE)
        .for_each(|b| *b = depth as u8);
    core::hint::black_box(&mut frame);
    let r = if depth == 0 {
        stack_vma()
    } else {
        descend(depth - 1)
    };
    core::hint::black_box(&frame);
    r
}
