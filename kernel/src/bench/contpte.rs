//! The cost of the contiguous layer on one 64 KiB block (16 x 4 KiB entries of one
//! folio): fold, unfold, and the batched operations against 16 single-entry calls, in
//! the three modes (contpte=on, off, naive) side by side in one run, plus the lower
//! bound of a convert (the stores, TLBIs and barrier it cannot avoid).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{measure, Cost};
use crate::arch::aarch64::mm::machine::{self, UserTables};
use crate::kprintln;
use crate::mm::frame::frames;
use crate::mm::pgtable::{ContMode, CounterSnapshot, Prot, PteAttrs};
use crate::mm::{MemType, PhysAddr, VirtAddr, PAGE_SIZE};

const REPS: usize = 31;
const VA: VirtAddr = VirtAddr(0x10_0000);
const MODES: [ContMode; 3] = [ContMode::On, ContMode::Off, ContMode::Naive];

fn rw() -> PteAttrs {
    PteAttrs {
        prot: Prot::user(true, false),
        mem: MemType::Normal,
    }
}

fn page(i: usize) -> VirtAddr {
    VA.add(i * PAGE_SIZE)
}

/// One benchmarked operation: what state it starts from, what it does.
struct Op {
    /// The stable name in `bench:` JSON lines and the suite's results.json.
    key: &'static str,
    name: &'static str,
    /// Pages mapped (writable, young, dirty) before the operation.
    premapped: usize,
    run: fn(&mut UserTables, PhysAddr),
}

const OPS: &[Op] = &[
    Op {
        key: "contpte_fold",
        name: "fold: map the 16th page of a block",
        premapped: 15,
        run: |t, pa| t.map(page(15), pa.add(15 * PAGE_SIZE), 1, rw()).unwrap(),
    },
    Op {
        key: "contpte_unfold",
        name: "unfold: mprotect 1 page of a block",
        premapped: 16,
        run: |t, _| t.protect(page(5), 1, Prot::user(false, false)).unwrap(),
    },
    Op {
        key: "contpte_wrprotect",
        name: "wrprotect 64 KiB, 1 batched call",
        premapped: 16,
        run: |t, _| t.wrprotect(VA, 16).unwrap(),
    },
    Op {
        key: "contpte_wrprotect_single",
        name: "wrprotect 64 KiB, 16 single calls",
        premapped: 16,
        run: |t, _| (0..16).for_each(|i| t.wrprotect(page(i), 1).unwrap()),
    },
    Op {
        key: "contpte_clear_young",
        name: "clear-young 64 KiB, 1 batched call",
        premapped: 16,
        run: |t, _| t.clear_young_dirty(VA, 16).unwrap(),
    },
    Op {
        key: "contpte_clear_young_single",
        name: "clear-young 64 KiB, 16 single calls",
        premapped: 16,
        run: |t, _| (0..16).for_each(|i| t.clear_young_dirty(page(i), 1).unwrap()),
    },
    Op {
        key: "contpte_unmap",
        name: "unmap 64 KiB, 1 batched call",
        premapped: 16,
        run: |t, _| {
            t.unmap(VA, 16).unwrap();
        },
    },
    Op {
        key: "contpte_unmap_single",
        name: "unmap 64 KiB, 16 single calls",
        premapped: 16,
        run: |t, _| {
            (0..16).for_each(|i| {
                t.unmap(page(i), 1).unwrap();
            })
        },
    },
];

struct Result1 {
    cost: Cost,
    counters: CounterSnapshot,
}

fn bench_op(t: &mut UserTables, folio: PhysAddr, op: &Op) -> Result1 {
    let mut counters = CounterSnapshot::default();
    let cost = measure(
        REPS,
        t,
        |t| {
            t.map(VA, folio, op.premapped, rw()).unwrap();
            machine::counters().snapshot()
        },
        |t| (op.run)(t, folio),
        |t, before| {
            counters = machine::counters().snapshot() - before;
            t.unmap(VA, 16).unwrap();
        },
    );
    Result1 { cost, counters }
}

/// Lower bound of one convert, in instructions: clear 16 entries, invalidate the
/// range (one range TLBI, or 16 page TLBIs, or none with BBM level 2), complete it
/// (DSB), write 16 entries.
fn convert_bound() -> (u64, String) {
    let f = machine::config().features;
    let (tlbi, dsb, what) = match (f.bbml2, f.range_tlbi) {
        (true, _) => (0, 0, "no TLBI (bbml2)"),
        (false, true) => (1, 1, "1 range TLBI + 1 DSB"),
        (false, false) => (16, 1, "16 page TLBIs + 1 DSB"),
    };
    (32 + tlbi + dsb, format!("16 clears + {what} + 16 stores"))
}

fn cell(c: &Cost, instructions: bool) -> String {
    if instructions {
        format!("{}", c.instructions)
    } else {
        format!("{}", c.cycles)
    }
}

fn ratio(a: u64, b: u64) -> String {
    format!("{}.{:02}x", a / b.max(1), (a % b.max(1)) * 100 / b.max(1))
}

/// One machine-readable line per operation and mode, which the host's bench-report
/// reads: `{"bench":KEY,"contpte":MODE,"instructions":{median,min,max}|null,
/// "cycles":{...},"events":{...}}` (instructions only where INST_RETIRED counts).
fn json_line(op: &Op, mode: ContMode, r: &Result1, counted: bool) -> String {
    let spread = |s: &super::Stats| {
        format!(
            "{{\"median\":{},\"min\":{},\"max\":{}}}",
            s.median, s.min, s.max
        )
    };
    let k = &r.counters;
    format!(
        "{{\"bench\":\"{}\",\"contpte\":\"{}\",\"instructions\":{},\"cycles\":{},\"events\":{{\"folds\":{},\"unfolds\":{},\"converts\":{},\"tlbi_page\":{},\"tlbi_range\":{},\"entries_written\":{}}}}}",
        op.key,
        mode,
        if counted {
            spread(&r.cost.instructions)
        } else {
            "null".into()
        },
        spread(&r.cost.cycles),
        k.folds,
        k.unfolds,
        k.converts,
        k.tlbi_page,
        k.tlbi_range,
        k.entries_written
    )
}

pub fn run() {
    let folio = frames()
        .alloc(4)
        .expect("no 64 KiB folio for the benchmark");
    let counted = crate::arch::aarch64::pmu::counts_instructions();
    let cfg = machine::config();
    kprintln!(
        "bench: contpte: one 64 KiB block (16 x 4 KiB, one folio), {REPS} repetitions each, IRQs masked, checker off; features {}; bbml2={}",
        crate::arch::aarch64::features::features(),
        if cfg.features.bbml2 { "on" } else { "off" }
    );
    let unit = if counted {
        "instructions retired"
    } else {
        "cycles (no INST_RETIRED: run with --icount for instructions)"
    };
    let mut results: Vec<Vec<Result1>> = Vec::new();
    for mode in MODES {
        let mut t = UserTables::with_mode(mode).expect("page tables for the benchmark");
        t.checker_mut().set_enabled(false);
        results.push(OPS.iter().map(|op| bench_op(&mut t, folio, op)).collect());
    }
    print_results(&results, counted, unit);
    frames().free(folio, 4);
}

/// The tables of `results` (per mode, per operation): the primary figure with its
/// spread, emulated cycles, the work per call, the JSON lines, and the convert's
/// lower bound.
fn print_results(results: &[Vec<Result1>], counted: bool, unit: &str) {
    kprintln!("bench: {unit}, median [min..max]");
    kprintln!(
        "bench: {:<38} {:>22} {:>22} {:>22} {:>9} {:>9}",
        "operation",
        "contpte=on",
        "contpte=off",
        "contpte=naive",
        "naive/on",
        "off/on"
    );
    for (i, op) in OPS.iter().enumerate() {
        let fig = |m: usize| {
            if counted {
                results[m][i].cost.instructions.median
            } else {
                results[m][i].cost.cycles.median
            }
        };
        kprintln!(
            "bench: {:<38} {:>22} {:>22} {:>22} {:>9} {:>9}",
            op.name,
            cell(&results[0][i].cost, counted),
            cell(&results[1][i].cost, counted),
            cell(&results[2][i].cost, counted),
            ratio(fig(2), fig(0)),
            ratio(fig(1), fig(0))
        );
    }
    kprintln!("bench: emulated cycles, median (contpte=on / off / naive)");
    for (i, op) in OPS.iter().enumerate() {
        kprintln!(
            "bench: {:<38} {:>10} {:>10} {:>10}",
            op.name,
            results[0][i].cost.cycles.median,
            results[1][i].cost.cycles.median,
            results[2][i].cost.cycles.median
        );
    }
    kprintln!("bench: work per call (contpte=on / naive): folds, unfolds, TLBIs (page+range), entries written");
    for (i, op) in OPS.iter().enumerate() {
        let c = |m: usize| {
            let k = &results[m][i].counters;
            format!(
                "{}f {}u {}t {}w",
                k.folds,
                k.unfolds,
                k.tlbi_page + k.tlbi_range + k.tlbi_asid + k.tlbi_all,
                k.entries_written
            )
        };
        kprintln!("bench: {:<38} {:>18} {:>18}", op.name, c(0), c(2));
    }
    print_json_and_bound(results, counted);
}

/// One JSON line per mode and operation (what `bench-report` reads), and the fold and
/// unfold against the convert's lower bound.
fn print_json_and_bound(results: &[Vec<Result1>], counted: bool) {
    for (m, mode) in MODES.iter().enumerate() {
        for (i, op) in OPS.iter().enumerate() {
            kprintln!("bench: {}", json_line(op, *mode, &results[m][i], counted));
        }
    }
    let (bound, what) = convert_bound();
    if counted {
        let on = &results[0];
        kprintln!(
            "bench: convert lower bound {bound} instructions ({what}); fold measured/bound {}, unfold measured/bound {}",
            ratio(on[0].cost.instructions.median, bound),
            ratio(on[1].cost.instructions.median, bound)
        );
    } else {
        kprintln!("bench: convert lower bound {bound} instructions ({what}); ratios need --icount");
    }
}
