//! bench-report: turns the console logs of `scripts/bench.sh`'s boots into
//! `results.json`, prints the tables (contkernel beside each Linux peer that ran, 6.12 and
//! 7.3, with the ratio against the better of them),
//! draws `results.svg`, regenerates the tables of `docs/bench.md`, and compares two
//! runs (figures under icount must be identical).
//!
//! ```text
//! bench-report collect DIR --qemu VERSION --cpu MODEL [--icount]   DIR/runs.txt + logs -> DIR/results.json, table, DIR/results.svg
//! bench-report table RESULTS.json
//! bench-report svg RESULTS.json OUT.svg
//! bench-report readme RESULTS.json docs/bench.md [SVG-PATH]       the text between <!-- bench:begin --> and <!-- bench:end -->
//! bench-report compare A.json B.json                              same results, same instructions
//! bench-report part WHOLE.json PART.json                          PART's figures (an --only run) within 0.5% (or 1 k) of WHOLE's
//! bench-report tlb-summary RESULTS.json README.md                  the text between <!-- tlb:begin --> and <!-- tlb:end -->
//! ```
//!
//! `DIR/runs.txt` has one line per boot: `LOG KERNEL CONTPTE COW BBML2 CPU` (LOG
//! relative to DIR). A log holds `bench_mm: {...}` lines (user/src/bin/bench_mm.rs:
//! virtual-counter ticks and the counter's frequency) and `bench: {...}` lines (the
//! in-kernel `bench=contpte`: PMU instructions). Under `-icount shift=0,sleep=off` one
//! instruction is one nanosecond of virtual time, so a user benchmark's instructions are
//! `ticks * 1e9 / freq`; without icount they are `null`.
//!
//! Under `scripts/bench.sh --tlb` the log also holds the TLB model's lines
//! (tlbmodel/src/plugin.rs): `tlbmodel: {"phase":ID,...}` per measured window, joined
//! to the `bench_mm` line with the same `"phase"`, and `tlbmodel: {"exit":true,...}`,
//! whose walk-verification `mismatches` must be 0. A result then carries `tlb`: the
//! model's name and, per VA half, accesses, L1 misses, walks, walk loads and the
//! modelled cycle estimate; the table and the SVG show them.
//!
//! The picture has a panel per CPU model: each benchmark and folio size, contkernel and
//! each Linux peer against the better peer of that cell, on a log scale centred on 1x
//! (without a peer on that CPU model, contkernel's own figures, so it claims no
//! comparison), one colour
//! per kernel in every panel; then the TLB model's walks, when the run has them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One result's configuration (results.json `variant`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Variant {
    folio_kb: u64,
    contpte: String,
    cow: String,
    bbml2: String,
    cpu: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
struct Spread {
    median: u64,
    min: u64,
    max: u64,
}

/// The TLB model's counts for one VA half of a measured window.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
struct TlbHalf {
    accesses: u64,
    l1_misses: u64,
    walks: u64,
    walk_loads: u64,
    /// Modelled (assumed latencies, docs/tlb.md), not measured.
    cycles: u64,
}

/// The TLB model's figures for one result (results.json `tlb`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct TlbFigures {
    model: String,
    /// TTBR0 addresses (the process's), whoever accessed them.
    user: TlbHalf,
    /// TTBR1 addresses (the kernel's).
    kernel: TlbHalf,
    /// TLB maintenance instructions executed in the window.
    tlbi: u64,
}

impl TlbFigures {
    fn total(&self) -> TlbHalf {
        let (u, k) = (self.user, self.kernel);
        TlbHalf {
            accesses: u.accesses + k.accesses,
            l1_misses: u.l1_misses + k.l1_misses,
            walks: u.walks + k.walks,
            walk_loads: u.walk_loads + k.walk_loads,
            cycles: u.cycles + k.cycles,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Result1 {
    kernel: String,
    bench: String,
    variant: Variant,
    instructions: Option<Spread>,
    ticks: Option<Spread>,
    events: Option<Map<String, Value>>,
    /// Why there is no figure (the mechanism is missing: the errno the kernel gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The TLB model's figures (`bench.sh --tlb` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tlb: Option<TlbFigures>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Results {
    qemu: String,
    cpu: String,
    icount: bool,
    results: Vec<Result1>,
}

const CONTKERNEL: &str = "contkernel";

/// One boot of runs.txt.
#[derive(Debug, PartialEq)]
struct Run {
    log: PathBuf,
    kernel: String,
    contpte: String,
    cow: String,
    bbml2: String,
    cpu: String,
}

fn parse_runs(text: &str, dir: &Path) -> Result<Vec<Run>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let [log, kernel, contpte, cow, bbml2, cpu] = w[..] else {
                return Err(format!(
                    "runs.txt: want `LOG KERNEL CONTPTE COW BBML2 CPU`: `{l}`"
                ));
            };
            Ok(Run {
                log: dir.join(log),
                kernel: kernel.into(),
                contpte: contpte.into(),
                cow: cow.into(),
                bbml2: bbml2.into(),
                cpu: cpu.into(),
            })
        })
        .collect()
}

fn spread(v: &Value, what: &str) -> Result<Option<Spread>, String> {
    if v.is_null() {
        return Ok(None);
    }
    serde_json::from_value(v.clone())
        .map(Some)
        .map_err(|e| format!("{what}: {e}"))
}

/// `ticks * 1e9 / freq`, rounded: instructions under icount (1 instruction = 1 ns).
fn to_instructions(ticks: u64, freq: u64) -> u64 {
    ((ticks as u128 * 1_000_000_000 + freq as u128 / 2) / freq as u128) as u64
}

/// The results of one boot's console. A user run must end with `bench_mm: done`
/// (else the boot died half-way); a kernel run must have at least one line.
fn parse_log(console: &str, run: &Run, icount: bool) -> Result<Vec<Result1>, String> {
    let mut out = Vec::new();
    let mut done = false;
    let mut phases: BTreeMap<u64, TlbFigures> = BTreeMap::new();
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if line == "bench_mm: done" {
            done = true;
        }
        if let Some(json) = line.strip_prefix("tlbmodel: ") {
            tlb_line(json, &mut phases).map_err(|e| format!("{}: {e}", run.log.display()))?;
            continue;
        }
        let (user, json) = if let Some(j) = line.strip_prefix("bench_mm: {") {
            (true, j)
        } else if let Some(j) = line.strip_prefix("bench: {") {
            (false, j)
        } else {
            continue;
        };
        let v: Value = serde_json::from_str(&format!("{{{json}"))
            .map_err(|e| format!("{}: bad line ({e}): {line}", run.log.display()))?;
        let field = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let bench = field("bench")
            .as_str()
            .ok_or_else(|| format!("no bench name: {line}"))?
            .to_string();
        let events = field("events").as_object().cloned();
        let reason = field("reason").as_str().map(String::from);
        let r = if user {
            let freq = field("freq").as_u64().filter(|&f| f > 0).ok_or("no freq")?;
            let ticks = spread(&field("ticks"), &bench)?;
            let ins = ticks.filter(|_| icount).map(|t| Spread {
                median: to_instructions(t.median, freq),
                min: to_instructions(t.min, freq),
                max: to_instructions(t.max, freq),
            });
            Result1 {
                kernel: run.kernel.clone(),
                bench,
                variant: Variant {
                    folio_kb: field("folio_kb").as_u64().ok_or("no folio_kb")?,
                    contpte: run.contpte.clone(),
                    cow: run.cow.clone(),
                    bbml2: run.bbml2.clone(),
                    cpu: run.cpu.clone(),
                },
                instructions: ins,
                ticks,
                events,
                reason,
                tlb: field("phase")
                    .as_u64()
                    .and_then(|p| phases.get(&p).cloned()),
            }
        } else {
            Result1 {
                kernel: run.kernel.clone(),
                bench,
                variant: Variant {
                    folio_kb: 64,
                    contpte: field("contpte").as_str().ok_or("no contpte")?.into(),
                    cow: run.cow.clone(),
                    bbml2: run.bbml2.clone(),
                    cpu: run.cpu.clone(),
                },
                instructions: spread(&field("instructions"), "instructions")?,
                ticks: None,
                events,
                reason,
                tlb: None,
            }
        };
        out.push(r);
    }
    let user_run = console.contains("bench_mm: start");
    if user_run && !done {
        return Err(format!(
            "{}: no `bench_mm: done`: the run did not finish",
            run.log.display()
        ));
    }
    if out.is_empty() {
        return Err(format!("{}: no benchmark lines", run.log.display()));
    }
    Ok(out)
}

/// One line of the TLB model: a window's figures go into `phases` (the last of a
/// phase's repetitions wins, as the counters reported are the last repetition's); the
/// exit line must show walks verified against QEMU and no mismatch.
fn tlb_line(json: &str, phases: &mut BTreeMap<u64, TlbFigures>) -> Result<(), String> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format!("bad tlbmodel line ({e}): {json}"))?;
    if let Some(id) = v.get("phase").and_then(Value::as_u64) {
        let f = serde_json::from_value(v).map_err(|e| format!("tlbmodel phase {id}: {e}"))?;
        phases.insert(id, f);
    } else if v.get("exit").is_some() {
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        match (n("verified"), n("mismatches")) {
            (Some(v), Some(0)) if v > 0 => {}
            (v, m) => {
                return Err(format!(
                    "the TLB model's walks disagree with QEMU's (verified {v:?}, mismatches {m:?}): {json}"
                ))
            }
        }
    }
    Ok(())
}

/// The figure compared: instructions, else ticks (without icount).
fn figure(r: &Result1) -> Option<u64> {
    r.instructions.or(r.ticks).map(|s| s.median)
}

fn human(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n}"),
        10_000..=999_999 => format!("{:.1} k", n as f64 / 1e3),
        _ => format!("{:.2} M", n as f64 / 1e6),
    }
}

/// What a Linux peer does where it lacks the mechanism measured (at this folio size).
fn linux_note(peer: &str, bench: &str, folio_kb: u64) -> Option<&'static str> {
    match (peer, bench, folio_kb) {
        ("linux-6.12", "reuse", 16..=1024) => {
            Some("Linux 6.12 reuses no mTHP folio: a fault and a copy per 4 KiB page")
        }
        ("linux-7.3", "reuse", 16..=1024) => {
            Some("Linux 7.3 reuses the PTE-mapped folio, a fault per 4 KiB page")
        }
        (_, "reuse", 2048) => Some("Linux reuses a PMD-mapped 2 MiB folio whole too"),
        (_, "collapse_copy", _) => Some("Linux collapses to 2 MiB only"),
        (_, "collapse_inplace", 16..) => {
            Some("Linux copies into a new 2 MiB folio (no in-place collapse)")
        }
        _ => None,
    }
}

/// The Linux peers that ran (`linux-6.12`, `linux-7.3`), oldest first.
fn peers(res: &Results) -> Vec<&str> {
    let version = |k: &str| -> Vec<u64> {
        k.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let mut p: Vec<&str> = res
        .results
        .iter()
        .map(|r| r.kernel.as_str())
        .filter(|k| *k != CONTKERNEL)
        .collect();
    p.sort_by_key(|k| version(k));
    p.dedup();
    p
}

/// The Linux peers that ran on CPU model `cpu`: a model no peer ran on gets
/// contkernel's figures alone, not a comparison with empty columns.
fn peers_on<'a>(res: &'a Results, cpu: &str) -> Vec<&'a str> {
    peers(res)
        .into_iter()
        .filter(|p| {
            res.results
                .iter()
                .any(|r| r.kernel == *p && r.variant.cpu == cpu)
        })
        .collect()
}

/// `linux-7.3` as a reader writes it: `Linux 7.3`.
fn peer_name(kernel: &str) -> String {
    kernel.replacen("linux-", "Linux ", 1)
}

/// The better (fewer instructions) of the peers' figures for the same cell.
fn best_linux(linux: &[Option<&Result1>]) -> Option<u64> {
    linux.iter().filter_map(|l| l.and_then(figure)).min()
}

/// The variant words that differ from the default (contpte=on cow=page bbml2=off).
fn variant_label(v: &Variant) -> String {
    let mut w = Vec::new();
    if v.contpte != "on" {
        w.push(format!("contpte={}", v.contpte));
    }
    if v.cow != "page" {
        w.push(format!("cow={}", v.cow));
    }
    if v.bbml2 != "off" {
        w.push(format!("bbml2={}", v.bbml2));
    }
    if w.is_empty() {
        "default".into()
    } else {
        w.join(" ")
    }
}

fn cell(r: Option<&Result1>) -> String {
    match r {
        None => "—".into(),
        Some(r) => match figure(r) {
            Some(f) => human(f),
            None => format!("n/a ({})", r.reason.as_deref().unwrap_or("no figure")),
        },
    }
}

fn is_kernel_bench(r: &Result1) -> bool {
    r.bench.starts_with("contpte_")
}

fn ratio(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}x", a as f64 / b as f64),
        _ => "".into(),
    }
}

/// The markdown tables: per CPU model, contkernel's default variant against each Linux
/// peer that ran (same benchmark, folio size and CPU) with the ratio against the better
/// of them; contkernel's other variants against its default; the in-kernel benchmark's
/// three modes. Without a peer the first table has contkernel's column alone.
fn table(res: &Results) -> String {
    let unit = if res.icount {
        "instructions"
    } else {
        "virtual-counter ticks"
    };
    let same = |a: &Result1, b: &Result1| {
        a.bench == b.bench
            && a.variant.folio_kb == b.variant.folio_kb
            && a.variant.cpu == b.variant.cpu
    };
    let user = |r: &&Result1| !is_kernel_bench(r);
    let default = |r: &&Result1| r.kernel == CONTKERNEL && variant_label(&r.variant) == "default";
    let mut cpus: Vec<&str> = Vec::new();
    for r in &res.results {
        if !cpus.contains(&r.variant.cpu.as_str()) {
            cpus.push(&r.variant.cpu);
        }
    }
    let mut s = String::new();
    for cpu in &cpus {
        // One row per benchmark and folio size that contkernel's default or a peer ran.
        let mut keys: Vec<&Result1> = Vec::new();
        for r in res.results.iter().filter(user) {
            if r.variant.cpu == *cpu
                && (r.kernel != CONTKERNEL || default(&r))
                && !keys.iter().any(|k| same(k, r))
            {
                keys.push(r);
            }
        }
        if keys.is_empty() {
            continue;
        }
        let peers = peers_on(res, cpu);
        let names: Vec<String> = peers.iter().map(|p| peer_name(p)).collect();
        let mut head = vec!["benchmark".to_string(), "folio".into(), "contkernel".into()];
        head.extend(names.iter().cloned());
        match &names[..] {
            [] => {
                let _ = writeln!(s, "`-cpu {cpu}`, contkernel (contpte=on, cow=page, bbml2=off), {unit} (no Linux peer ran: `--linux` adds them):\n");
            }
            [one] => {
                let _ = writeln!(s, "`-cpu {cpu}`, contkernel (contpte=on, cow=page, bbml2=off) against {one}, {unit}:\n");
                head.extend([format!("contkernel/{one}"), "note".into()]);
            }
            [first, .., last] => {
                let _ = writeln!(s, "`-cpu {cpu}`, contkernel (contpte=on, cow=page, bbml2=off) against {}, {unit}; the ratio is against the better (fewer) of them:\n", names.join(" and "));
                head.extend([
                    "contkernel/better Linux".into(),
                    format!("{last}/{}", first.trim_start_matches("Linux ")),
                    "note".into(),
                ]);
            }
        }
        let _ = writeln!(s, "| {} |", head.join(" | "));
        let align: Vec<&str> = head
            .iter()
            .map(|h| match h.as_str() {
                "benchmark" | "note" => "---",
                _ => "---:",
            })
            .collect();
        let _ = writeln!(s, "|{}|", align.join("|"));
        for k in keys {
            let ours = res.results.iter().filter(default).find(|r| same(r, k));
            let linux: Vec<Option<&Result1>> = peers
                .iter()
                .map(|p| res.results.iter().find(|l| l.kernel == *p && same(l, k)))
                .collect();
            let mut row = vec![
                k.bench.clone(),
                format!("{} KiB", k.variant.folio_kb),
                cell(ours),
            ];
            row.extend(linux.iter().map(|l| cell(*l)));
            if !peers.is_empty() {
                row.push(ratio(ours.and_then(figure), best_linux(&linux)));
                if let [first, .., last] = &linux[..] {
                    row.push(ratio(last.and_then(figure), first.and_then(figure)));
                }
                let notes: Vec<&str> = peers
                    .iter()
                    .zip(&linux)
                    .filter(|(_, l)| l.is_some())
                    .filter_map(|(p, _)| linux_note(p, &k.bench, k.variant.folio_kb))
                    .fold(Vec::new(), |mut v, n| {
                        if !v.contains(&n) {
                            v.push(n);
                        }
                        v
                    });
                row.push(notes.join("; "));
            }
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        let _ = writeln!(s);
    }
    let variants: Vec<&Result1> = res
        .results
        .iter()
        .filter(user)
        .filter(|r| r.kernel == CONTKERNEL && variant_label(&r.variant) != "default")
        .collect();
    if !variants.is_empty() {
        let _ = writeln!(s, "contkernel's other variants against its default (same benchmark, folio size and CPU), {unit}:\n");
        let _ = writeln!(
            s,
            "| benchmark | folio | cpu | variant | variant | default | variant/default |"
        );
        let _ = writeln!(s, "|---|---:|---|---|---:|---:|---:|");
        for r in variants {
            let d = res.results.iter().filter(default).find(|d| same(d, r));
            let _ = writeln!(
                s,
                "| {} | {} KiB | {} | {} | {} | {} | {} |",
                r.bench,
                r.variant.folio_kb,
                r.variant.cpu,
                variant_label(&r.variant),
                cell(Some(r)),
                cell(d),
                ratio(figure(r), d.and_then(figure))
            );
        }
        let _ = writeln!(s);
    }
    let kernel: Vec<&Result1> = res.results.iter().filter(|r| is_kernel_bench(r)).collect();
    let mut groups: Vec<(&str, &str, &str)> = Vec::new();
    for r in &kernel {
        let g = (
            r.bench.as_str(),
            r.variant.cpu.as_str(),
            r.variant.bbml2.as_str(),
        );
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    if !groups.is_empty() {
        let _ = writeln!(
            s,
            "In-kernel `bench=contpte`, one 64 KiB block, instructions per call (PMU):\n"
        );
        let _ = writeln!(
            s,
            "| operation | cpu | bbml2 | contpte=on | contpte=off | contpte=naive | naive/on |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|");
        for (bench, cpu, bbml2) in groups {
            let mode = |m: &str| {
                kernel.iter().copied().find(|r| {
                    r.bench == bench
                        && r.variant.cpu == cpu
                        && r.variant.bbml2 == bbml2
                        && r.variant.contpte == m
                })
            };
            let _ = writeln!(
                s,
                "| {bench} | {cpu} | {bbml2} | {} | {} | {} | {} |",
                cell(mode("on")),
                cell(mode("off")),
                cell(mode("naive")),
                ratio(mode("naive").and_then(figure), mode("on").and_then(figure))
            );
        }
        let _ = writeln!(s);
    }
    tlb_table(res, &mut s);
    let _ = writeln!(s, "Figures: median of the repetitions.");
    if let Some(line) = fork_check(res) {
        let _ = writeln!(s, "\n{line}");
    }
    s
}

/// The TLB model's figures of every user benchmark that has them, beside its
/// instructions: what the Contiguous bit costs (instructions) next to what it saves
/// (walks, modelled cycles).
fn tlb_table(res: &Results, s: &mut String) {
    let rows: Vec<(&Result1, &TlbFigures)> = res
        .results
        .iter()
        .filter_map(|r| Some((r, r.tlb.as_ref()?)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "Modelled TLB (`{}`, tlbmodel plugin, docs/tlb.md): data accesses, L1 D-TLB misses, table walks (user + kernel half), descriptor loads, and the cycles they would cost at the model's assumed latencies (an estimate, not a measurement):\n",
        first.model
    );
    let _ = writeln!(
        s,
        "| benchmark | folio | kernel | cpu | variant | instructions | accesses | L1 misses | walks (user + kernel) | walk loads | est. cycles (modelled) |"
    );
    let _ = writeln!(s, "|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|");
    for (r, t) in rows {
        let all = t.total();
        let _ = writeln!(
            s,
            "| {} | {} KiB | {} | {} | {} | {} | {} | {} | {} + {} | {} | {} |",
            r.bench,
            r.variant.folio_kb,
            r.kernel,
            r.variant.cpu,
            variant_label(&r.variant),
            cell(Some(r)),
            human(all.accesses),
            human(all.l1_misses),
            human(t.user.walks),
            human(t.kernel.walks),
            human(all.walk_loads),
            human(all.cycles)
        );
    }
    let _ = writeln!(s);
}

/// The issue's required result: fork of 64 MiB of 64 KiB folios, contpte=on within
/// 1.10x of off, naive at least 5x on (contkernel, -cpu max, cow=page, bbml2=off).
fn fork_check(res: &Results) -> Option<String> {
    let fork = |mode: &str| {
        res.results
            .iter()
            .find(|r| {
                r.kernel == CONTKERNEL
                    && r.bench == "fork"
                    && r.variant.folio_kb == 64
                    && r.variant.cpu == "max"
                    && r.variant.contpte == mode
                    && r.variant.cow == "page"
                    && r.variant.bbml2 == "off"
            })
            .and_then(figure)
    };
    let (on, off, naive) = (fork("on")?, fork("off")?, fork("naive").unwrap_or(0));
    let on_off = on as f64 / off.max(1) as f64;
    let naive_on = naive as f64 / on.max(1) as f64;
    Some(format!(
        "fork, 64 MiB of 64 KiB folios, -cpu max: contpte=on / off = {on_off:.2}x (target <= 1.10x: {}), naive / on = {naive_on:.2}x (target >= 5x: {})",
        if on_off <= 1.10 { "met" } else { "NOT met" },
        if naive_on >= 5.0 { "met" } else { "NOT met" }
    ))
}

/// One bar of the picture: a series (a kernel, or one of contkernel's variants) and its
/// value (None: no figure).
struct Bar {
    series: String,
    value: Option<f64>,
}

/// One row of a panel: a benchmark at a folio size, its bars top to bottom, and
/// whether any series ran it on this CPU model (a row of another model's sizes, kept
/// so that panels side by side line up, did not).
struct Row {
    bench: String,
    folio_kb: u64,
    bars: Vec<Bar>,
    ran: bool,
}

/// The horizontal axis of a panel, logarithmic either way.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Axis {
    /// Ratios against the better Linux from 2^-span to 2^span, 1x in the middle; bars
    /// start at 1x, so a bar to the left is fewer instructions than the better Linux.
    Ratio { span: i32 },
    /// Counts from 10^lo to 10^hi; bars start at the left edge.
    Count { lo: i32, hi: i32 },
}

impl Axis {
    /// Ratios: the smallest power of two that holds every bar with room for its label
    /// (at most 64x, beyond which a bar is cut and its label says how far it goes).
    fn ratio(values: impl Iterator<Item = f64>) -> Axis {
        let far = values.map(|v| v.log2().abs()).fold(0.0, f64::max);
        Axis::Ratio {
            span: ((far + 0.6).ceil() as i32).clamp(1, 6),
        }
    }

    /// Counts: the powers of ten around the smallest and largest value.
    fn count(values: impl Iterator<Item = f64> + Clone) -> Axis {
        let lo = values.clone().fold(f64::MAX, f64::min).max(1.0);
        let hi = values.fold(1.0, f64::max);
        Axis::Count {
            lo: lo.log10().floor() as i32,
            hi: (hi.log10().ceil() as i32).max(lo.log10().floor() as i32 + 1),
        }
    }

    /// Where `v` falls, from 0 (left edge) to 1 (right edge), cut at the edges.
    fn pos(self, v: f64) -> f64 {
        let (lo, hi, x) = match self {
            Axis::Ratio { span } => (-span as f64, span as f64, v.log2()),
            Axis::Count { lo, hi } => (lo as f64, hi as f64, v.max(1.0).log10()),
        };
        ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    }

    /// Where bars start: 1x, or the left edge.
    fn origin(self) -> f64 {
        match self {
            Axis::Ratio { .. } => 0.5,
            Axis::Count { .. } => 0.0,
        }
    }

    /// The ticks, one per power of two (ratios) or ten (counts), in one format each:
    /// `1/4x 1/2x 1x 2x 4x`, `1 10 100 1 k 10 k 100 k 1 M`.
    fn ticks(self) -> Vec<(f64, String)> {
        match self {
            Axis::Ratio { span } => (-span..=span)
                .map(|k| {
                    let label = if k < 0 {
                        format!("1/{}x", 1u64 << -k)
                    } else {
                        format!("{}x", 1u64 << k)
                    };
                    (2f64.powi(k), label)
                })
                .collect(),
            Axis::Count { lo, hi } => (lo..=hi)
                .map(|k| {
                    let label = match k {
                        ..=2 => format!("{}", 10u64.pow(k.max(0) as u32)),
                        3..=5 => format!("{} k", 10u64.pow(k as u32 - 3)),
                        _ => format!("{} M", 10u64.pow(k as u32 - 6)),
                    };
                    (10f64.powi(k), label)
                })
                .collect(),
        }
    }

    fn value_label(self, v: f64) -> String {
        match self {
            Axis::Ratio { .. } => format!("{v:.2}x"),
            Axis::Count { .. } => human(v.round() as u64),
        }
    }
}

/// A panel: a title, an axis and its rows.
struct Figure {
    title: String,
    caption: String,
    axis: Axis,
    rows: Vec<Row>,
}

/// The series of a result: its kernel, or contkernel and its variant words.
fn series_name(r: &Result1) -> String {
    match (r.kernel.as_str(), variant_label(&r.variant).as_str()) {
        (CONTKERNEL, "default") => CONTKERNEL.into(),
        (CONTKERNEL, v) => format!("{CONTKERNEL} {v}"),
        (k, _) => k.into(),
    }
}

/// One colour per kernel in every panel: contkernel blue (its other variants pale
/// blue), Linux 6.12 orange, Linux 7.3 green, any other peer purple.
fn colour(series: &str) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match series {
        CONTKERNEL => RGBColor(31, 119, 180),
        s if s.starts_with(CONTKERNEL) => RGBColor(158, 202, 225),
        "linux-6.12" => RGBColor(255, 127, 14),
        "linux-7.3" => RGBColor(44, 160, 44),
        _ => RGBColor(148, 103, 189),
    }
}

/// Where a series goes among others: contkernel, its variants, the peers oldest first.
fn series_order(peers: &[&str], series: &str) -> (bool, bool, Option<usize>) {
    (
        !series.starts_with(CONTKERNEL),
        series != CONTKERNEL,
        peers.iter().position(|p| *p == series),
    )
}

/// The name a legend gives a series.
fn series_label(series: &str) -> String {
    if series.starts_with(CONTKERNEL) {
        series.into()
    } else {
        peer_name(series)
    }
}

/// The rows every CPU's panel shows, in the results' order (benchmark, then folio
/// size), the same in each so that panels side by side line up.
fn row_keys<'a>(rs: impl Iterator<Item = &'a Result1>) -> Vec<(String, u64)> {
    let mut keys: Vec<(String, u64)> = Vec::new();
    for r in rs {
        let k = (r.bench.clone(), r.variant.folio_kb);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let order: Vec<String> = keys
        .iter()
        .map(|k| k.0.clone())
        .fold(Vec::new(), |mut v, b| {
            if !v.contains(&b) {
                v.push(b);
            }
            v
        });
    keys.sort_by_key(|(b, kb)| (order.iter().position(|o| o == b), *kb));
    keys
}

/// The panels of the picture. Per CPU model, the user benchmarks: with Linux peers,
/// contkernel's default and each peer against the better peer of the cell (a log scale
/// centred on 1x); without, contkernel's own figures. Then, per CPU model with the TLB
/// model's figures, the modelled walks of every series that has them. The two groups
/// apart: instructions, walks.
fn figures(res: &Results) -> [Vec<Figure>; 2] {
    let unit = if res.icount { "instructions" } else { "ticks" };
    let user: Vec<&Result1> = res.results.iter().filter(|r| !is_kernel_bench(r)).collect();
    let mut cpus: Vec<&str> = Vec::new();
    for r in &user {
        if !cpus.contains(&r.variant.cpu.as_str()) {
            cpus.push(&r.variant.cpu);
        }
    }
    let shown = |r: &&&Result1| r.kernel != CONTKERNEL || series_name(r) == CONTKERNEL;
    let keys = row_keys(user.iter().filter(shown).copied());
    let find = |cpu: &str, series: &str, (bench, kb): &(String, u64)| {
        user.iter()
            .find(|r| {
                r.variant.cpu == cpu
                    && &r.bench == bench
                    && r.variant.folio_kb == *kb
                    && series_name(r) == series
            })
            .copied()
    };
    let (mut out, mut walks) = (Vec::new(), Vec::new());
    for cpu in &cpus {
        let peers = peers_on(res, cpu);
        let series: Vec<&str> = std::iter::once(CONTKERNEL)
            .chain(peers.iter().copied())
            .collect();
        let rows: Vec<Row> = keys
            .iter()
            .map(|k| {
                let best = best_linux(&peers.iter().map(|p| find(cpu, p, k)).collect::<Vec<_>>());
                let ran = series.iter().any(|s| find(cpu, s, k).is_some());
                let bars = series
                    .iter()
                    .map(|s| {
                        let v = find(cpu, s, k).and_then(figure).map(|f| f as f64);
                        let value = match (peers.is_empty(), best) {
                            (true, _) => v,
                            (false, Some(b)) if b > 0 => v.map(|v| v / b as f64),
                            (false, _) => None,
                        };
                        Bar {
                            series: s.to_string(),
                            value,
                        }
                    })
                    .collect();
                Row {
                    bench: k.0.clone(),
                    folio_kb: k.1,
                    bars,
                    ran,
                }
            })
            .collect();
        let values = rows
            .iter()
            .flat_map(|r| r.bars.iter().filter_map(|b| b.value))
            .collect::<Vec<_>>();
        let (title, caption, axis) = if peers.is_empty() {
            (
                format!("-cpu {cpu}: contkernel, 64 MiB ({unit}, log scale)"),
                format!("{unit}; no Linux peer ran (bench.sh --linux adds them)"),
                Axis::count(values.iter().copied()),
            )
        } else {
            (
                format!("-cpu {cpu}: {unit} against the better Linux (log scale)"),
                format!(
                    "{unit} / the better Linux's; left of 1x: fewer than {}",
                    if peers.len() > 1 { "either" } else { "Linux" }
                ),
                Axis::ratio(values.iter().copied()),
            )
        };
        out.push(Figure {
            title,
            caption,
            axis,
            rows,
        });
    }
    for cpu in &cpus {
        let with_tlb: Vec<&Result1> = user
            .iter()
            .filter(|r| r.variant.cpu == *cpu && r.tlb.is_some())
            .copied()
            .collect();
        let Some(model) = with_tlb.first().and_then(|r| r.tlb.as_ref()) else {
            continue;
        };
        let peers = peers_on(res, cpu);
        let mut series: Vec<String> = with_tlb.iter().map(|r| series_name(r)).collect();
        series.sort_by_key(|s| series_order(&peers, s));
        series.dedup();
        let rows: Vec<Row> = row_keys(with_tlb.iter().copied())
            .iter()
            .map(|k| Row {
                bench: k.0.clone(),
                folio_kb: k.1,
                bars: series
                    .iter()
                    .map(|s| Bar {
                        series: s.clone(),
                        value: find(cpu, s, k)
                            .and_then(|r| r.tlb.as_ref())
                            .map(|t| t.total().walks as f64),
                    })
                    .collect(),
                ran: true,
            })
            .collect();
        let axis = Axis::count(
            rows.iter()
                .flat_map(|r| r.bars.iter().filter_map(|b| b.value)),
        );
        walks.push(Figure {
            title: format!(
                "-cpu {cpu}: modelled TLB walks ({}, log scale)",
                model.model
            ),
            caption: "table walks, user + kernel half (modelled, docs/tlb.md)".into(),
            axis,
            rows,
        });
    }
    [out, walks]
}

const PANEL_W: i32 = 740;
/// Wide enough for the longest row label, `collapse_inplace 2 MiB`.
const LABEL_W: i32 = 150;
const BAR_H: i32 = 6;

/// A panel's height: title, rows of bars, axis labels and caption.
fn panel_height(f: &Figure) -> i32 {
    let bars = f.rows.first().map_or(1, |r| r.bars.len()) as i32;
    40 + f.rows.len() as i32 * (bars * BAR_H + 8) + 50
}

/// Draws one panel with its top left corner at (x, y).
fn draw_panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    f: &Figure,
    (x, y): (i32, i32),
) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let font = |size: u32, h: HPos| {
        TextStyle::from(("sans-serif", size).into_font())
            .pos(Pos::new(h, VPos::Center))
            .color(&BLACK)
    };
    let grey = RGBColor(120, 120, 120);
    area.draw(&Text::new(
        f.title.clone(),
        (x + 10, y + 16),
        TextStyle::from(("sans-serif", 18).into_font().style(FontStyle::Bold)),
    ))
    .map_err(e)?;
    let (x0, x1) = (x + LABEL_W, x + PANEL_W - 50);
    let px = |v: f64| x0 + ((x1 - x0) as f64 * f.axis.pos(v)).round() as i32;
    let origin = x0 + ((x1 - x0) as f64 * f.axis.origin()).round() as i32;
    let top = y + 36;
    let row_h = f.rows.first().map_or(1, |r| r.bars.len()) as i32 * BAR_H + 8;
    let bottom = top + f.rows.len() as i32 * row_h;
    for (v, label) in f.axis.ticks() {
        let tx = px(v);
        let line = if tx == origin && origin != x0 {
            BLACK.stroke_width(1)
        } else {
            RGBColor(225, 225, 225).stroke_width(1)
        };
        area.draw(&PathElement::new(vec![(tx, top), (tx, bottom)], line))
            .map_err(e)?;
        area.draw(&Text::new(label, (tx, bottom + 12), font(13, HPos::Center)))
            .map_err(e)?;
    }
    area.draw(&Text::new(
        f.caption.clone(),
        ((x0 + x1) / 2, bottom + 32),
        font(14, HPos::Center),
    ))
    .map_err(e)?;
    for (i, row) in f.rows.iter().enumerate() {
        let ry = top + i as i32 * row_h;
        if i > 0 && f.rows[i - 1].bench != row.bench {
            area.draw(&PathElement::new(
                vec![(x + 10, ry), (x1, ry)],
                grey.stroke_width(1),
            ))
            .map_err(e)?;
        }
        let label = format!("{} {}", row.bench, folio_name(row.folio_kb));
        let ink = if row.ran {
            BLACK
        } else {
            RGBColor(190, 190, 190)
        };
        area.draw(&Text::new(
            label,
            (x0 - 6, ry + row_h / 2),
            font(13, HPos::Right).color(&ink),
        ))
        .map_err(e)?;
        for (j, bar) in row.bars.iter().enumerate() {
            let by = ry + 4 + j as i32 * BAR_H;
            let Some(v) = bar.value else {
                if j == 0 && row.ran {
                    area.draw(&Text::new(
                        "no figure",
                        (origin + 4, ry + row_h / 2),
                        font(10, HPos::Left).color(&grey),
                    ))
                    .map_err(e)?;
                }
                continue;
            };
            let end = px(v);
            // A bar at 1x is a short mark, so the better Linux shows where it is.
            let (a, b) = match end.cmp(&origin) {
                std::cmp::Ordering::Equal => (origin - 1, origin + 2),
                _ => (origin.min(end), origin.max(end)),
            };
            area.draw(&Rectangle::new(
                [(a, by), (b, by + BAR_H - 1)],
                colour(&bar.series).filled(),
            ))
            .map_err(e)?;
            let cut = f.axis.pos(v) == 0.0 || f.axis.pos(v) == 1.0;
            if bar.series == CONTKERNEL || cut {
                let (tx, h) = if end < origin {
                    (end - 3, HPos::Right)
                } else {
                    (b + 3, HPos::Left)
                };
                area.draw(&Text::new(
                    f.axis.value_label(v),
                    (tx, by + BAR_H / 2),
                    font(11, h),
                ))
                .map_err(e)?;
            }
        }
    }
    Ok(())
}

fn folio_name(kb: u64) -> String {
    if kb >= 1024 && kb.is_multiple_of(1024) {
        format!("{} MiB", kb / 1024)
    } else {
        format!("{kb} KiB")
    }
}

/// The picture: a legend with one colour per kernel, then the panels of `figures`,
/// two side by side (the CPU models of the instructions, then of the TLB walks).
fn svg(res: &Results, out: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let [ins, walks] = figures(res);
    let lines: Vec<&[Figure]> = ins.chunks(2).chain(walks.chunks(2)).collect();
    let legend_h = 40;
    let height = legend_h
        + lines
            .iter()
            .map(|l| l.iter().map(panel_height).max().unwrap_or(0))
            .sum::<i32>();
    let width = PANEL_W * lines.iter().map(|l| l.len()).max().unwrap_or(1) as i32;
    let root = SVGBackend::new(out, (width as u32, height.max(100) as u32)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut series: Vec<&str> = Vec::new();
    for b in ins
        .iter()
        .chain(&walks)
        .flat_map(|f| f.rows.iter().flat_map(|r| &r.bars))
    {
        if b.value.is_some() && !series.contains(&b.series.as_str()) {
            series.push(&b.series);
        }
    }
    let peers = peers(res);
    series.sort_by_key(|s| series_order(&peers, s));
    let mut lx = 10;
    for s in series {
        root.draw(&Rectangle::new(
            [(lx, 14), (lx + 14, 28)],
            colour(s).filled(),
        ))
        .map_err(e)?;
        let label = series_label(s);
        root.draw(&Text::new(
            label.clone(),
            (lx + 20, 21),
            TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(e)?;
        lx += 40 + 8 * label.len() as i32;
    }
    let mut y = legend_h;
    for line in lines {
        for (k, f) in line.iter().enumerate() {
            draw_panel(&root, f, (k as i32 * PANEL_W, y))?;
        }
        y += line.iter().map(panel_height).max().unwrap_or(0);
    }
    root.present().map_err(|e| e.to_string())
}

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";
const TLB_BEGIN: &str = "<!-- tlb:begin -->";
const TLB_END: &str = "<!-- tlb:end -->";

/// `readme` with the text between the markers `begin` and `end` replaced by `body`.
fn splice(readme: &str, (begin, end): (&str, &str), body: &str) -> Result<String, String> {
    let a = readme.find(begin).ok_or(format!("no {begin} marker"))?;
    let b = readme.find(end).ok_or(format!("no {end} marker"))?;
    if b < a {
        return Err(format!("{end} before {begin}"));
    }
    Ok(format!("{}{begin}\n{body}{}", &readme[..a], &readme[b..]))
}

/// The README's summary of the modelled TLB (`bench.sh --tlb` results): for the
/// benchmarks where reach shows, per folio size and contiguous-bit mode, what
/// contkernel and each Linux peer with the model's figures spend (instructions) beside what the TLB does (walks of both
/// halves, modelled cycles).
fn tlb_summary(res: &Results) -> String {
    let mut s = format!(
        "QEMU {}, `-cpu {}`, 64 MiB, the `{}` model; generated by `bench-report tlb-summary` from {}; do not edit by hand.\n\n",
        res.qemu,
        res.cpu,
        res.results
            .iter()
            .find_map(|r| r.tlb.as_ref().map(|t| t.model.clone()))
            .unwrap_or_default(),
        "`docs/tlb/results.json`"
    );
    let kernels: Vec<&str> = std::iter::once(CONTKERNEL)
        .chain(peers(res).into_iter().filter(|p| {
            res.results
                .iter()
                .any(|r| r.kernel == *p && r.tlb.is_some())
        }))
        .collect();
    s += "| benchmark | folios |";
    for k in &kernels {
        let _ = write!(s, " {} instructions | walks | est. cycles |", peer_name(k));
    }
    s += &format!("\n|---|---|{}\n", "---:|---:|---:|".repeat(kernels.len()));
    let tlb = |r: Option<&Result1>| -> (String, String, String) {
        match r.and_then(|r| Some((r, r.tlb.as_ref()?.total()))) {
            Some((r, t)) => (cell(Some(r)), human(t.walks), human(t.cycles)),
            None => ("—".into(), "—".into(), "—".into()),
        }
    };
    for bench in ["fault", "read_seq", "chase"] {
        for (folio_kb, contpte) in [(4, "on"), (64, "off"), (64, "on"), (2048, "on")] {
            let find = |kernel: &str| {
                res.results.iter().find(|r| {
                    r.tlb.is_some()
                        && r.kernel == kernel
                        && r.bench == bench
                        && r.variant.folio_kb == folio_kb
                        && (kernel != CONTKERNEL || r.variant.contpte == contpte)
                })
            };
            // Linux has no run-time contpte switch: its 64 KiB rows have the bit.
            let found: Vec<Option<&Result1>> = kernels
                .iter()
                .map(|k| find(k).filter(|_| *k == CONTKERNEL || contpte == "on"))
                .collect();
            if found.iter().all(Option::is_none) {
                continue;
            }
            let folios = match (folio_kb, contpte) {
                (64, m) => format!("64 KiB, contpte={m}"),
                (2048, _) => "2 MiB".into(),
                (kb, _) => format!("{kb} KiB"),
            };
            let _ = write!(s, "| {bench} | {folios} |");
            for r in found {
                let (ins, walks, cycles) = tlb(r);
                let _ = write!(s, " {ins} | {walks} | {cycles} |");
            }
            s += "\n";
        }
    }
    s
}

fn readme_body(res: &Results, svg: Option<&str>) -> String {
    let mut s = format!(
        "QEMU {}, 1 GiB, one CPU, {}. Generated by `bench-report readme` from results.json; do not edit by hand.\n\n",
        res.qemu,
        if res.icount {
            "`-icount shift=0,sleep=off` (figures are instructions)"
        } else {
            "no icount (figures are virtual-counter ticks)"
        }
    );
    s += &table(res);
    if let Some(p) = svg {
        let _ = writeln!(s, "\n![benchmarks]({p})");
    }
    s
}

/// The differences between two runs: a result missing from either, or instructions
/// that differ (the test of determinism under icount: the same run twice; a part of a
/// run agrees with the whole within a tolerance, [`compare_part`]).
fn compare(a: &Results, b: &Results) -> Vec<String> {
    let key = |r: &Result1| (r.kernel.clone(), r.bench.clone(), r.variant.clone());
    let index = |x: &Results| {
        x.results
            .iter()
            .map(|r| (key(r), r.instructions))
            .collect::<BTreeMap<_, _>>()
    };
    let (ia, ib) = (index(a), index(b));
    let mut diffs = Vec::new();
    for (k, va) in &ia {
        match ib.get(k) {
            None => diffs.push(format!("{k:?}: only in the first run")),
            Some(vb) if vb != va => diffs.push(format!("{k:?}: {va:?} against {vb:?}")),
            _ => {}
        }
    }
    diffs.extend(
        ib.keys()
            .filter(|k| !ia.contains_key(*k))
            .map(|k| format!("{k:?}: only in the second run")),
    );
    diffs
}

/// How far a figure of a part of the run may be from the whole run's: the 100 Hz tick
/// and other timer interrupts fall elsewhere in a window that starts at another time,
/// 0.5% or, for a short window, one interrupt's instructions (mremap at 4 KiB: 25808
/// in one repetition, 26016 in another of the same boot).
const PART_TOLERANCE: f64 = 0.005;
const PART_SLACK: f64 = 1000.0;

/// The figures of `part` (some of the benchmarks, each boot running fewer before them)
/// that differ from `whole`'s by more than [`PART_TOLERANCE`], or that `whole` lacks:
/// a figure must not depend on which benchmarks ran before it in the boot.
fn compare_part(whole: &Results, part: &Results) -> Vec<String> {
    let key = |r: &Result1| (r.kernel.clone(), r.bench.clone(), r.variant.clone());
    let figures: BTreeMap<_, _> = whole.results.iter().map(|r| (key(r), figure(r))).collect();
    part.results
        .iter()
        .filter_map(|r| {
            let (k, p) = (key(r), figure(r));
            match figures.get(&k) {
                None => Some(format!("{k:?}: not in the whole run")),
                Some(&w) => match (w, p) {
                    (Some(w), Some(p))
                        if (p as f64 - w as f64).abs()
                            <= (PART_TOLERANCE * w as f64).max(PART_SLACK) =>
                    {
                        None
                    }
                    (None, None) => None,
                    _ => Some(format!("{k:?}: {w:?} in the whole run, {p:?} in the part")),
                },
            }
        })
        .collect()
}

fn read_results(path: &str) -> Result<Results, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

fn collect(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(args.first().ok_or("collect DIR")?);
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let icount = args.iter().any(|a| a == "--icount");
    let runs_path = dir.join("runs.txt");
    let text =
        std::fs::read_to_string(&runs_path).map_err(|e| format!("{}: {e}", runs_path.display()))?;
    let mut results = Vec::new();
    for run in parse_runs(&text, &dir)? {
        let console = std::fs::read(&run.log).map_err(|e| format!("{}: {e}", run.log.display()))?;
        results.extend(parse_log(&String::from_utf8_lossy(&console), &run, icount)?);
    }
    let res = Results {
        qemu: opt("--qemu").unwrap_or_default(),
        cpu: opt("--cpu").unwrap_or_else(|| "max".into()),
        icount,
        results,
    };
    let json = serde_json::to_string_pretty(&res).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json + "\n").map_err(|e| e.to_string())?;
    print!("{}", table(&res));
    svg(&res, &dir.join("results.svg"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench-report collect DIR --qemu V --cpu M [--icount] | table R.json | svg R.json OUT.svg | readme R.json docs/bench.md [SVG] | compare A.json B.json | part WHOLE.json PART.json | tlb-summary R.json README.md";
    let r = match (args.first().map(String::as_str), &args[1.min(args.len())..]) {
        (Some("collect"), rest) => collect(rest),
        (Some("table"), [r]) => read_results(r).map(|res| print!("{}", table(&res))),
        (Some("svg"), [r, out]) => read_results(r).and_then(|res| svg(&res, Path::new(out))),
        (Some("readme"), [r, md, rest @ ..]) => read_results(r).and_then(|res| {
            let old = std::fs::read_to_string(md).map_err(|e| format!("{md}: {e}"))?;
            let body = readme_body(&res, rest.first().map(String::as_str));
            let new = splice(&old, (BEGIN, END), &body)?;
            std::fs::write(md, new).map_err(|e| format!("{md}: {e}"))
        }),
        (Some("tlb-summary"), [r, md]) => read_results(r).and_then(|res| {
            let old = std::fs::read_to_string(md).map_err(|e| format!("{md}: {e}"))?;
            let new = splice(&old, (TLB_BEGIN, TLB_END), &tlb_summary(&res))?;
            std::fs::write(md, new).map_err(|e| format!("{md}: {e}"))
        }),
        (Some("compare"), [a, b]) => read_results(a).and_then(|ra| {
            let rb = read_results(b)?;
            if rb.results.iter().all(|r| r.instructions.is_none()) {
                return Err(format!("{b}: no instruction figures (run with --icount)"));
            }
            match compare(&ra, &rb) {
                d if d.is_empty() => {
                    println!(
                        "bench-report: the {} results of {b} are identical in {a}",
                        rb.results.len()
                    );
                    Ok(())
                }
                d => Err(format!("the runs differ:\n{}", d.join("\n"))),
            }
        }),
        (Some("part"), [whole, part]) => read_results(whole).and_then(|rw| {
            let rp = read_results(part)?;
            match compare_part(&rw, &rp) {
                d if d.is_empty() => {
                    println!(
                        "bench-report: the {} results of {part} are within {}% (or {} instructions) of {whole}",
                        rp.results.len(),
                        PART_TOLERANCE * 100.0,
                        PART_SLACK
                    );
                    Ok(())
                }
                d => Err(format!(
                    "figures depend on what ran before them:\n{}",
                    d.join("\n")
                )),
            }
        }),
        _ => Err(usage.into()),
    };
    if let Err(e) = r {
        eprintln!("bench-report: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L612: &str = "linux-6.12";
    const L73: &str = "linux-7.3";

    fn run(kernel: &str, contpte: &str) -> Run {
        Run {
            log: "x.log".into(),
            kernel: kernel.into(),
            contpte: contpte.into(),
            cow: "page".into(),
            bbml2: "off".into(),
            cpu: "max".into(),
        }
    }

    const USER_LOG: &str = "contkernel: banner\r\nbench_mm: start {\"kernel\":\"Linux\",\"freq\":62500000}\r\n\
bench_mm: {\"bench\":\"fork\",\"folio_kb\":64,\"reps\":3,\"freq\":62500000,\"ticks\":{\"median\":100,\"min\":99,\"max\":101},\"events\":{\"pgfault\":16}}\r\n\
bench_mm: {\"bench\":\"pageout\",\"folio_kb\":64,\"reps\":3,\"freq\":62500000,\"ticks\":null,\"events\":null,\"reason\":\"madvise(MADV_PAGEOUT): EINVAL(22)\"}\r\n\
bench_mm: done\r\n";

    #[test]
    fn user_lines_become_results_with_instructions_under_icount() {
        let rs = parse_log(USER_LOG, &run(CONTKERNEL, "on"), true).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].bench, "fork");
        assert_eq!(rs[0].variant.folio_kb, 64);
        assert_eq!(
            rs[0].instructions,
            Some(Spread {
                median: 1600,
                min: 1584,
                max: 1616
            })
        );
        assert_eq!(rs[0].events.as_ref().unwrap()["pgfault"], 16);
        assert_eq!(rs[1].instructions, None);
        assert_eq!(
            rs[1].reason.as_deref(),
            Some("madvise(MADV_PAGEOUT): EINVAL(22)")
        );
        let no_icount = parse_log(USER_LOG, &run(CONTKERNEL, "on"), false).unwrap();
        assert_eq!(no_icount[0].instructions, None);
        assert_eq!(no_icount[0].ticks.unwrap().median, 100);
    }

    #[test]
    fn a_run_cut_short_or_a_cut_line_is_an_error() {
        let cut = USER_LOG.replace("bench_mm: done", "");
        assert!(parse_log(&cut, &run(CONTKERNEL, "on"), true).is_err());
        let broken = USER_LOG.replace("\"pgfault\":16}}", "\"pgfault\":1");
        assert!(parse_log(&broken, &run(CONTKERNEL, "on"), true).is_err());
        assert!(parse_log("nothing\n", &run(CONTKERNEL, "on"), true).is_err());
    }

    #[test]
    fn kernel_lines_carry_their_mode_and_pmu_instructions() {
        let log = "bench: {\"bench\":\"contpte_fold\",\"contpte\":\"naive\",\"instructions\":{\"median\":5,\"min\":5,\"max\":5},\"cycles\":{\"median\":5,\"min\":5,\"max\":5},\"events\":{\"folds\":1}}\n";
        let rs = parse_log(log, &run(CONTKERNEL, "on"), true).unwrap();
        assert_eq!(rs[0].variant.contpte, "naive");
        assert_eq!(rs[0].instructions.unwrap().median, 5);
        assert_eq!(rs[0].ticks, None);
    }

    #[test]
    fn runs_file_lines() {
        let runs = parse_runs(
            "# c\nrun1.log contkernel on page off max\n",
            Path::new("/d"),
        )
        .unwrap();
        assert_eq!(
            runs,
            vec![Run {
                log: "/d/run1.log".into(),
                ..run(CONTKERNEL, "on")
            }]
        );
        assert!(parse_runs("a b c\n", Path::new("/d")).is_err());
    }

    fn results() -> Results {
        let mut rs = parse_log(USER_LOG, &run(CONTKERNEL, "on"), true).unwrap();
        rs.extend(
            parse_log(
                &USER_LOG.replace("\"median\":100", "\"median\":50"),
                &run(L612, "on"),
                true,
            )
            .unwrap(),
        );
        rs.extend(
            parse_log(
                &USER_LOG.replace("\"median\":100", "\"median\":98"),
                &run(CONTKERNEL, "off"),
                true,
            )
            .unwrap(),
        );
        rs.extend(
            parse_log(
                &USER_LOG.replace("\"median\":100", "\"median\":700"),
                &run(CONTKERNEL, "naive"),
                true,
            )
            .unwrap(),
        );
        Results {
            qemu: "7.2".into(),
            cpu: "max".into(),
            icount: true,
            results: rs,
        }
    }

    #[test]
    fn table_puts_linux_beside_the_default_variant_with_the_ratio() {
        let mut res = results();
        let kernel_log = "bench: {\"bench\":\"contpte_fold\",\"contpte\":\"on\",\"instructions\":{\"median\":10,\"min\":10,\"max\":10},\"cycles\":null,\"events\":{}}\nbench: {\"bench\":\"contpte_fold\",\"contpte\":\"naive\",\"instructions\":{\"median\":25,\"min\":25,\"max\":25},\"cycles\":null,\"events\":{}}\n";
        res.results
            .extend(parse_log(kernel_log, &run(CONTKERNEL, "on"), true).unwrap());
        let t = table(&res);
        assert!(
            t.contains("| contpte_fold | max | off | 10 | — | 25 | 2.50x |"),
            "{t}"
        );
        let fork_row = t
            .lines()
            .find(|l| l.starts_with("| fork | 64 KiB |"))
            .unwrap();
        assert!(fork_row.contains("| 1600 | 800 | 2.00x |"), "{fork_row}");
        let off_row = t
            .lines()
            .find(|l| l.contains("contpte=off") && l.starts_with("| fork"))
            .unwrap();
        assert!(off_row.contains("| 1568 | 1600 | 0.98x |"), "{off_row}");
        assert!(t.contains("n/a (madvise(MADV_PAGEOUT): EINVAL(22))"));
        assert!(t.contains("contpte=on / off = 1.02x (target <= 1.10x: met), naive / on = 7.00x (target >= 5x: met)"), "{t}");
    }

    /// `results()` with Linux 7.3 beside 6.12: fork 64 KiB at `median` ticks (x16).
    fn with_linux_7_3(median: u64) -> Results {
        let mut res = results();
        res.results.extend(
            parse_log(
                &USER_LOG.replace("\"median\":100", &format!("\"median\":{median}")),
                &run(L73, "on"),
                true,
            )
            .unwrap(),
        );
        res
    }

    #[test]
    fn table_shows_both_peers_and_the_ratio_against_the_better() {
        let t = table(&with_linux_7_3(40));
        assert!(
            t.contains("| benchmark | folio | contkernel | Linux 6.12 | Linux 7.3 | contkernel/better Linux | Linux 7.3/6.12 | note |"),
            "{t}"
        );
        let fork_row = t.lines().find(|l| l.starts_with("| fork |")).unwrap();
        assert!(
            fork_row.contains("| 1600 | 800 | 640 | 2.50x | 0.80x |"),
            "{fork_row}"
        );
        let t = table(&with_linux_7_3(60));
        let fork_row = t.lines().find(|l| l.starts_with("| fork |")).unwrap();
        assert!(
            fork_row.contains("| 1600 | 800 | 960 | 2.00x | 1.20x |"),
            "{fork_row}"
        );
    }

    #[test]
    fn without_linux_the_table_claims_no_comparison() {
        let mut res = results();
        res.results.retain(|r| r.kernel == CONTKERNEL);
        let t = table(&res);
        assert!(t.contains("| benchmark | folio | contkernel |\n"), "{t}");
        assert!(
            !t.contains("| Linux") && !t.contains("/Linux") && !t.contains("better"),
            "{t}"
        );
    }

    #[test]
    fn a_cpu_model_no_linux_ran_on_claims_no_comparison() {
        let mut res = results();
        let mut a72: Vec<Result1> = res
            .results
            .iter()
            .filter(|r| r.kernel == CONTKERNEL)
            .cloned()
            .collect();
        a72.iter_mut()
            .for_each(|r| r.variant.cpu = "cortex-a72".into());
        res.results.extend(a72);
        let t = table(&res);
        let (max, a72) = t.split_at(t.find("`-cpu cortex-a72`").expect("an a72 table"));
        assert!(max.contains("| contkernel | Linux 6.12 |"), "{t}");
        assert!(
            a72.contains("(no Linux peer ran") && !a72.contains("| Linux"),
            "{t}"
        );
        let [panels, _] = figures(&res);
        assert!(panels[0].caption.contains("better Linux"));
        assert!(panels[1].caption.contains("no Linux peer ran"));
        assert!(panels[1].rows.iter().all(|r| r.bars.len() == 1));
    }

    #[test]
    fn json_round_trip_keeps_the_schema() {
        let res = results();
        let text = serde_json::to_string(&res).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        for k in ["qemu", "cpu", "icount", "results"] {
            assert!(v.get(k).is_some(), "no {k}");
        }
        let r0 = &v["results"][0];
        for k in [
            "kernel",
            "bench",
            "variant",
            "instructions",
            "ticks",
            "events",
        ] {
            assert!(r0.get(k).is_some(), "no {k}");
        }
        for k in ["folio_kb", "contpte", "cow", "bbml2", "cpu"] {
            assert!(r0["variant"].get(k).is_some(), "no variant.{k}");
        }
        assert_eq!(serde_json::from_str::<Results>(&text).unwrap(), res);
    }

    #[test]
    fn compare_finds_a_changed_figure_and_a_missing_result() {
        let a = results();
        assert!(compare(&a, &a.clone()).is_empty());
        let mut b = a.clone();
        b.results[0].instructions.as_mut().unwrap().median += 1;
        assert_eq!(compare(&a, &b).len(), 1);
        b.results.pop();
        assert_eq!(compare(&a, &b).len(), 2);
    }

    #[test]
    fn a_part_agrees_within_the_tolerance_and_not_beyond() {
        let whole = results();
        let mut part = whole.clone();
        part.results.truncate(1);
        assert!(compare_part(&whole, &part).is_empty());
        part.results[0].instructions.as_mut().unwrap().median += 1;
        assert!(compare_part(&whole, &part).is_empty());
        let m = whole.results[0].instructions.unwrap().median;
        part.results[0].instructions.as_mut().unwrap().median = m + m / 100 + PART_SLACK as u64;
        assert_eq!(compare_part(&whole, &part).len(), 1);
        part.results[0].bench = "nothing".into();
        assert_eq!(compare_part(&whole, &part).len(), 1);
    }

    #[test]
    fn readme_splice_replaces_only_between_the_markers() {
        let md = format!("head\n{BEGIN}\nold\n{END}\ntail\n");
        let new = splice(&md, (BEGIN, END), "new\n").unwrap();
        assert_eq!(new, format!("head\n{BEGIN}\nnew\n{END}\ntail\n"));
        assert!(splice("no markers", (BEGIN, END), "x").is_err());
        assert!(splice(&md, (TLB_BEGIN, TLB_END), "x").is_err());
    }

    const TLB_LOG: &str = "bench_mm: start {\"freq\":1000000000}\n\
tlbmodel: {\"phase\":1,\"model\":\"cortex-a76\",\"user\":{\"accesses\":9,\"l1_misses\":9,\"walks\":8,\"walk_loads\":32,\"cycles\":646},\"kernel\":{\"accesses\":5,\"l1_misses\":1,\"walks\":1,\"walk_loads\":4,\"cycles\":80},\"tlbi\":0}\n\
bench_mm: {\"bench\":\"read_seq\",\"folio_kb\":64,\"reps\":1,\"freq\":1000000000,\"phase\":1,\"ticks\":{\"median\":7,\"min\":7,\"max\":7},\"events\":{}}\n\
bench_mm: {\"bench\":\"chase\",\"folio_kb\":64,\"reps\":1,\"freq\":1000000000,\"phase\":2,\"ticks\":{\"median\":7,\"min\":7,\"max\":7},\"events\":{}}\n\
bench_mm: done\n\
tlbmodel: {\"exit\":true,\"model\":\"cortex-a76\",\"verified\":12,\"mismatches\":0,\"unmodelled\":0}\n";

    #[test]
    fn tlb_lines_join_their_window_by_phase() {
        let rs = parse_log(TLB_LOG, &run(CONTKERNEL, "on"), true).unwrap();
        let t = rs[0]
            .tlb
            .as_ref()
            .expect("read_seq has the model's figures");
        assert_eq!(
            (t.model.as_str(), t.user.walks, t.kernel.walks),
            ("cortex-a76", 8, 1)
        );
        assert_eq!(t.total().cycles, 726);
        assert_eq!(rs[1].tlb, None, "no tlbmodel line for phase 2");
        let res = Results {
            qemu: "10.0.2".into(),
            cpu: "max".into(),
            icount: true,
            results: rs,
        };
        let table = table(&res);
        assert!(
            table.contains("| read_seq | 64 KiB | contkernel | max | default | 7 | 14 | 10 | 8 + 1 | 36 | 726 |"),
            "{table}"
        );
        let summary = tlb_summary(&res);
        assert!(
            summary.contains("| read_seq | 64 KiB, contpte=on | 7 | 9 | 726 |\n"),
            "no Linux column without a Linux run: {summary}"
        );
        let mut both = res.clone();
        both.results
            .extend(parse_log(TLB_LOG, &run(L612, "on"), true).unwrap());
        let summary = tlb_summary(&both);
        assert!(
            summary.contains("| benchmark | folios | contkernel instructions | walks | est. cycles | Linux 6.12 instructions | walks | est. cycles |"),
            "{summary}"
        );
        assert!(
            summary.contains("| read_seq | 64 KiB, contpte=on | 7 | 9 | 726 | 7 | 9 | 726 |"),
            "{summary}"
        );
        assert!(
            !summary.contains("| chase |"),
            "chase has no model figures: {summary}"
        );
        let text = serde_json::to_string(&res).unwrap();
        assert_eq!(serde_json::from_str::<Results>(&text).unwrap(), res);
        let dir = std::env::temp_dir().join(format!("bench-report-tlb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        svg(&res, &dir.join("t.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.join("t.svg")).unwrap();
        assert!(svg.contains("modelled TLB walks"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tlb_walk_mismatch_is_an_error() {
        let bad = TLB_LOG.replace("\"mismatches\":0", "\"mismatches\":3");
        let e = parse_log(&bad, &run(CONTKERNEL, "on"), true).unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        let none = TLB_LOG.replace("\"verified\":12", "\"verified\":0");
        assert!(parse_log(&none, &run(CONTKERNEL, "on"), true).is_err());
    }

    /// The words of an SVG's text elements.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect()
    }

    #[test]
    fn svg_is_drawn() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("r.svg");
        svg(&with_linux_7_3(40), &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("<svg"));
        let words = texts(&text);
        for w in [
            "contkernel",
            "Linux 6.12",
            "Linux 7.3",
            "fork 64 KiB",
            "1/2x",
            "1x",
            "2x",
            "4x",
            "2.50x",
        ] {
            assert!(words.contains(&w), "no {w} in {words:?}");
        }
        let mut alone = results();
        alone.results.retain(|r| r.kernel == CONTKERNEL);
        svg(&alone, &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let words = texts(&text);
        assert!(
            !words.contains(&"Linux 6.12") && !words.contains(&"1x"),
            "{words:?}"
        );
        assert!(text.contains("no Linux peer ran"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
