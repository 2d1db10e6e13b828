//! Microbenchmarks, selected with `bench=NAME` on the kernel command line (any build;
//! `scripts/bench.sh` runs them under `-icount shift=0,sleep=off`). Each operation is
//! measured over repetitions with interrupts masked, from a freshly prepared state, and
//! reported as median [min..max] of instructions retired (PMU INST_RETIRED: exact under
//! icount, absent without) and of emulated cycles (PMCCNTR: equal to instructions under
//! icount, host time otherwise).

pub mod contpte;

use alloc::vec::Vec;
use core::fmt;

use crate::arch::aarch64::pmu::{self, Sample};

/// median [min..max] of one figure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub median: u64,
    pub min: u64,
    pub max: u64,
}

impl Stats {
    fn of(mut v: Vec<u64>) -> Self {
        v.sort_unstable();
        Stats {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = alloc::format!("{} [{}..{}]", self.median, self.min, self.max);
        f.pad(&s)
    }
}

/// Instructions and cycles of one operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub instructions: Stats,
    pub cycles: Stats,
}

/// Measure `op` on `ctx` `reps` times; `setup` and `teardown` run around each
/// repetition, outside the measurement. Interrupts are masked so no tick is counted.
pub fn measure<C, S>(
    reps: usize,
    ctx: &mut C,
    mut setup: impl FnMut(&mut C) -> S,
    mut op: impl FnMut(&mut C),
    mut teardown: impl FnMut(&mut C, S),
) -> Cost {
    let (mut ins, mut cyc) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let state = setup(ctx);
        let irq = crate::arch::irq::save_and_disable();
        let a = pmu::sample();
        op(ctx);
        let d = pmu::sample()
            .since(a)
            .since(EMPTY.get().copied().unwrap_or_default());
        crate::arch::irq::restore(irq);
        teardown(ctx, state);
        ins.push(d.instructions);
        cyc.push(d.cycles);
    }
    Cost {
        instructions: Stats::of(ins),
        cycles: Stats::of(cyc),
    }
}

/// The cost of measuring nothing (two samples back to back), subtracted from every
/// measurement so the figures are those of the operation alone.
static EMPTY: spin::Once<Sample> = spin::Once::new();

fn calibrate() {
    let mut best = Sample {
        cycles: u64::MAX,
        instructions: u64::MAX,
    };
    for _ in 0..16 {
        let irq = crate::arch::irq::save_and_disable();
        let a = pmu::sample();
        let d = pmu::sample().since(a);
        crate::arch::irq::restore(irq);
        best = Sample {
            cycles: best.cycles.min(d.cycles),
            instructions: best.instructions.min(d.instructions),
        };
    }
    EMPTY.call_once(|| best);
}

/// Run the benchmark `name` (`contpte`); false if there is no such benchmark.
pub fn run(name: &str) -> bool {
    pmu::enable();
    calibrate();
    match name {
        "contpte" => contpte::run(),
        _ => return false,
    }
    true
}
