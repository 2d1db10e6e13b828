//! bench-report: turns the console logs of `scripts/bench.sh`'s boots into
//! `results.json`, prints the table (contkernel against Linux 6.12 with the ratio),
//! draws `results.svg`, regenerates the tables of `docs/bench.md`, and compares two
//! runs (figures under icount must be identical).
//!
//! ```text
//! bench-report collect DIR --qemu VERSION --cpu MODEL [--icount]   DIR/runs.txt + logs -> DIR/results.json, table, DIR/results.svg
//! bench-report table RESULTS.json
//! bench-report svg RESULTS.json OUT.svg
//! bench-report readme RESULTS.json docs/bench.md [SVG-PATH]       the text between <!-- bench:begin --> and <!-- bench:end -->
//! bench-report compare A.json B.json                              same results, same instructions
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
const LINUX: &str = "linux-6.12";

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

/// What Linux 6.12 does where it lacks the mechanism measured (at this folio size).
fn linux_note(bench: &str, folio_kb: u64) -> &'static str {
    match (bench, folio_kb) {
        ("reuse", 16..=1024) => {
            "Linux 6.12 reuses no mTHP folio: a fault and a copy per 4 KiB page"
        }
        ("reuse", 2048) => "Linux reuses a PMD-mapped 2 MiB folio whole too",
        ("collapse_copy", _) => "Linux collapses to 2 MiB only",
        ("collapse_inplace", 16..) => "Linux copies into a new 2 MiB folio (no in-place collapse)",
        _ => "",
    }
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

/// The markdown tables: per CPU model, contkernel's default variant against Linux
/// (same benchmark, folio size and CPU) with the ratio; contkernel's other variants
/// against its default; the in-kernel benchmark's three modes.
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
        let on_cpu = |r: &&Result1| r.variant.cpu == *cpu;
        let mut rows: Vec<(Option<&Result1>, Option<&Result1>)> = res
            .results
            .iter()
            .filter(user)
            .filter(on_cpu)
            .filter(default)
            .map(|r| {
                (
                    Some(r),
                    res.results.iter().find(|l| l.kernel == LINUX && same(l, r)),
                )
            })
            .collect();
        rows.extend(
            res.results
                .iter()
                .filter(user)
                .filter(on_cpu)
                .filter(|l| {
                    l.kernel == LINUX && !res.results.iter().filter(default).any(|r| same(l, r))
                })
                .map(|l| (None, Some(l))),
        );
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "`-cpu {cpu}`, contkernel (contpte=on, cow=page, bbml2=off) against Linux 6.12, {unit}:\n");
        let _ = writeln!(
            s,
            "| benchmark | folio | contkernel | Linux 6.12 | contkernel/Linux | note |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        for (ours, linux) in rows {
            let r = ours.or(linux).expect("a row has a result");
            let _ = writeln!(
                s,
                "| {} | {} KiB | {} | {} | {} | {} |",
                r.bench,
                r.variant.folio_kb,
                cell(ours),
                cell(linux),
                ratio(ours.and_then(figure), linux.and_then(figure)),
                if linux.is_some() {
                    linux_note(&r.bench, r.variant.folio_kb)
                } else {
                    ""
                }
            );
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

/// What a panel of the SVG plots.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Panel {
    /// The user benchmarks' instructions (or ticks).
    User,
    /// The TLB model's walks (user + kernel half) of the user benchmarks.
    Walks,
    /// The in-kernel benchmark's instructions per call.
    InKernel,
}

/// The value a panel draws for a result (None: no bar; a log scale has no 0).
fn plotted(panel: Panel, r: &Result1) -> Option<u64> {
    match panel {
        Panel::Walks => r.tlb.as_ref().map(|t| t.total().walks).filter(|&w| w > 0),
        Panel::User | Panel::InKernel => figure(r),
    }
}

/// Bars of every benchmark per variant on a log scale, one panel per (folio size, CPU)
/// of the user benchmarks, one of the TLB model's walks per (folio size, CPU) when
/// there are some, and one for the in-kernel benchmark.
fn svg(res: &Results, out: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let mut panels: BTreeMap<(Panel, u64, String), Vec<&Result1>> = BTreeMap::new();
    for r in &res.results {
        let kinds = if r.bench.starts_with("contpte_") {
            vec![Panel::InKernel]
        } else {
            vec![Panel::User, Panel::Walks]
        };
        for kind in kinds.into_iter().filter(|&k| plotted(k, r).is_some()) {
            panels
                .entry((kind, r.variant.folio_kb, r.variant.cpu.clone()))
                .or_default()
                .push(r);
        }
    }
    let n = panels.len().max(1);
    let root = SVGBackend::new(out, (1400, 420 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let unit = if res.icount { "instructions" } else { "ticks" };
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (area, ((panel, folio, cpu), rs)) in root.split_evenly((n, 1)).iter().zip(&panels) {
        let panel = *panel;
        let mut benches: Vec<&str> = Vec::new();
        let mut series: Vec<String> = Vec::new();
        for r in rs {
            if !benches.contains(&r.bench.as_str()) {
                benches.push(&r.bench);
            }
            let s = series_name(r);
            if !series.contains(&s) {
                series.push(s);
            }
        }
        let hi = rs
            .iter()
            .filter_map(|r| plotted(panel, r))
            .max()
            .unwrap_or(10) as f64
            * 3.0;
        let lo = (rs
            .iter()
            .filter_map(|r| plotted(panel, r))
            .min()
            .unwrap_or(1) as f64
            / 3.0)
            .max(1.0);
        let (title, y_desc) = match panel {
            Panel::InKernel => (
                format!("in-kernel bench=contpte, one 64 KiB block, -cpu {cpu} ({unit} per call)"),
                unit,
            ),
            Panel::User => (
                format!("64 MiB, {folio} KiB folios, -cpu {cpu} ({unit}, log scale)"),
                unit,
            ),
            Panel::Walks => (
                format!(
                    "64 MiB, {folio} KiB folios, -cpu {cpu}: modelled TLB walks ({}, log scale)",
                    rs[0].tlb.as_ref().map_or("", |t| t.model.as_str())
                ),
                "walks",
            ),
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..benches.len() as f64, (lo..hi).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|v| human(v.round() as u64))
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        let width = 0.8 / series.len() as f64;
        for (k, s) in series.iter().enumerate() {
            let color = palette[k % palette.len()];
            let bars = rs.iter().filter(|r| &series_name(r) == s).filter_map(|r| {
                let i = benches.iter().position(|b| *b == r.bench)? as f64;
                let x0 = i + 0.1 + k as f64 * width;
                Some(Rectangle::new(
                    [(x0, lo), (x0 + width * 0.9, plotted(panel, r)? as f64)],
                    color.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(s.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .draw_series(benches.iter().enumerate().map(|(i, b)| {
                Text::new(
                    b.to_string(),
                    (i as f64 + 0.1, lo),
                    ("sans-serif", 12).into_font(),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn series_name(r: &Result1) -> String {
    if r.bench.starts_with("contpte_") {
        return format!("contpte={}", r.variant.contpte);
    }
    match r.kernel.as_str() {
        CONTKERNEL => format!("contkernel {}", variant_label(&r.variant)),
        k => k.to_string(),
    }
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
/// contkernel and Linux spend (instructions) beside what the TLB does (walks of both
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
    s += "| benchmark | folios | contkernel instructions | walks | est. cycles | Linux instructions | walks | est. cycles |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|\n";
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
            let ours = find(CONTKERNEL);
            // Linux has no run-time contpte switch: its 64 KiB rows have the bit.
            let linux = if contpte == "on" { find(LINUX) } else { None };
            if ours.is_none() && linux.is_none() {
                continue;
            }
            let folios = match (folio_kb, contpte) {
                (64, m) => format!("64 KiB, contpte={m}"),
                (2048, _) => "2 MiB".into(),
                (kb, _) => format!("{kb} KiB"),
            };
            let (a, b, c) = tlb(ours);
            let (d, e, f) = tlb(linux);
            let _ = writeln!(
                s,
                "| {bench} | {folios} | {a} | {b} | {c} | {d} | {e} | {f} |"
            );
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
/// that differ (the test of determinism under icount; it needs the same run twice, as
/// each benchmark's figure depends on the allocator state the ones before it left).
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
    let usage = "usage: bench-report collect DIR --qemu V --cpu M [--icount] | table R.json | svg R.json OUT.svg | readme R.json docs/bench.md [SVG] | compare A.json B.json | tlb-summary R.json README.md";
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
                &run(LINUX, "on"),
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
            summary.contains("| read_seq | 64 KiB, contpte=on | 7 | 9 | 726 | — | — | — |"),
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

    #[test]
    fn svg_is_drawn() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("r.svg");
        svg(&results(), &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("<svg") && text.contains("fork") && text.contains("linux-6.12"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
