//! Boots the contiguous-layer benchmark once (`bench=contpte` under `-icount`) and checks
//! what it reports about the work each call does: facts of the algorithm, not timings
//! (speed figures are printed by `scripts/bench.sh`, never asserted).
//!
//! `cargo test -p contkernel-tests --test bench` after `scripts/test.sh` built the kernel.

use contkernel_tests::{Machine, Outcome};

/// The benchmark's "work per call" row of `op`: (contpte=on, contpte=naive) columns,
/// each like `0f 1u 17t 48w` (folds, unfolds, TLBIs, entries written).
fn work(out: &Outcome, op: &str) -> (String, String) {
    let mut rows = out
        .lines()
        .into_iter()
        .skip_while(|l| !l.starts_with("bench: work per call"));
    let row = rows
        .find(|l| l.strip_prefix("bench: ").is_some_and(|r| r.starts_with(op)))
        .unwrap_or_else(|| panic!("no work row for `{op}`{out}"));
    let fields: Vec<&str> = row[("bench: ".len() + op.len())..]
        .split_whitespace()
        .collect();
    assert_eq!(fields.len(), 8, "malformed work row `{row}`{out}");
    (fields[..4].join(" "), fields[4..].join(" "))
}

fn counter(fields: &str, suffix: char) -> u64 {
    fields
        .split_whitespace()
        .find_map(|f| f.strip_suffix(suffix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{suffix}` counter in `{fields}`"))
}

#[test]
fn batched_operations_never_unfold_a_whole_block() {
    let out = Machine::from_env()
        .icount(true)
        .append("bench=contpte")
        .boot();
    assert_eq!(
        out.status,
        Some(0),
        "the benchmark did not finish cleanly{out}"
    );
    assert!(
        out.console.contains("instructions retired"),
        "no instruction counts under icount{out}"
    );

    for op in [
        "wrprotect 64 KiB, 1 batched call",
        "clear-young 64 KiB, 1 batched call",
        "unmap 64 KiB, 1 batched call",
    ] {
        let (on, naive) = work(&out, op);
        assert_eq!(
            (counter(&on, 'f'), counter(&on, 'u')),
            (0, 0),
            "`{op}` folded or unfolded with contpte=on: {on}{out}"
        );
        assert!(
            counter(&naive, 'u') >= 1,
            "`{op}` with contpte=naive should unfold: {naive}{out}"
        );
    }
    let (on, _) = work(&out, "fold: map the 16th page of a block");
    assert_eq!(
        counter(&on, 'f'),
        1,
        "completing a block must fold it: {on}{out}"
    );
    let (on, _) = work(&out, "wrprotect 64 KiB, 16 single calls");
    assert_eq!(
        counter(&on, 'u'),
        1,
        "write-protecting part of a block must unfold it once: {on}{out}"
    );
    assert!(
        out.console.contains("bench: convert lower bound"),
        "no lower bound line{out}"
    );
    // The machine-readable lines bench-report reads: one per operation and mode.
    for key in [
        "contpte_fold",
        "contpte_unfold",
        "contpte_wrprotect",
        "contpte_wrprotect_single",
        "contpte_clear_young",
        "contpte_clear_young_single",
        "contpte_unmap",
        "contpte_unmap_single",
    ] {
        for mode in ["on", "off", "naive"] {
            let head =
                format!("bench: {{\"bench\":\"{key}\",\"contpte\":\"{mode}\",\"instructions\":{{");
            assert!(
                out.lines().iter().any(|l| l.starts_with(&head)),
                "no JSON line for {key} contpte={mode} with instructions{out}"
            );
        }
    }
}
