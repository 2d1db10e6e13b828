//! Turns the kernel's profile dump (`profile=PERIOD`, see `kernel/src/profile.rs`) into
//! a report, symbolised with the kernel's ELF: a flat profile (self and total samples
//! per function, EL0 lumped as `[user]`) and a call graph (each hot function with the
//! functions that called it and those it called, from the frame-pointer chains).
//!
//! `profile-report ELF CONSOLE [--top N]`: CONSOLE is the run's console output; lines
//! that are not the profile's are skipped. Exits 1 if there is no sample or no sample
//! falls in a kernel function.

use std::collections::HashMap;
use std::process::exit;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// A function of the kernel image: start, end, demangled name.
struct Symbol {
    start: u64,
    end: u64,
    name: String,
}

struct Symbols(Vec<Symbol>);

impl Symbols {
    fn read(elf: &[u8]) -> Result<Symbols, String> {
        let file = object::File::parse(elf).map_err(|e| format!("not an ELF: {e}"))?;
        let mut syms: Vec<Symbol> = file
            .symbols()
            .filter(|s| s.address() != 0)
            .filter(|s| match s.kind() {
                SymbolKind::Text => true,
                // Assembly labels (the exception vectors): untyped, in a code section.
                SymbolKind::Unknown | SymbolKind::Label => s
                    .section_index()
                    .and_then(|i| file.section_by_index(i).ok())
                    .is_some_and(|sec| sec.kind() == SectionKind::Text),
                _ => false,
            })
            .filter_map(|s| {
                let name = s.name().ok()?;
                // `$x`/`$d`: AArch64 mapping symbols, not functions.
                if name.starts_with('$') || name.is_empty() {
                    return None;
                }
                Some(Symbol {
                    start: s.address(),
                    end: s.address() + s.size(),
                    name: format!("{:#}", rustc_demangle::demangle(name)),
                })
            })
            .collect();
        syms.sort_by_key(|s| s.start);
        // Symbols without a size (assembly labels) reach the next symbol.
        for i in 0..syms.len() {
            if syms[i].end == syms[i].start {
                syms[i].end = syms.get(i + 1).map_or(u64::MAX, |n| n.start);
            }
        }
        Ok(Symbols(syms))
    }

    fn name(&self, addr: u64) -> Option<&str> {
        let i = self.0.partition_point(|s| s.start <= addr);
        let s = self.0.get(i.checked_sub(1)?)?;
        (addr < s.end).then_some(s.name.as_str())
    }
}

/// The dump: folded stacks with counts, per CPU totals, the sampling period.
#[derive(Default)]
struct Dump {
    /// (count, exception level, PC, link register, return addresses innermost first)
    stacks: Vec<(u64, u64, u64, u64, Vec<u64>)>,
    /// (CPU, samples kept, dropped for want of room, idle)
    cpus: Vec<(u64, u64, u64, u64)>,
    every: Option<String>,
    complete: bool,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

fn parse(console: &str) -> Dump {
    let mut d = Dump::default();
    for line in console.lines() {
        let Some(rest) = line.trim_end_matches('\r').strip_prefix("profile: ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            ["sampling", "every", period, event, ..] => {
                d.every = Some(format!("{period} {event}"));
            }
            ["cpu", cpu, "samples", n, "dropped", dropped, "idle", idle] => {
                let num = |s: &str| s.parse::<u64>().ok();
                if let (Some(c), Some(n), Some(dr), Some(i)) =
                    (num(cpu), num(n), num(dropped), num(idle))
                {
                    d.cpus.push((c, n, dr, i));
                }
            }
            ["end"] => d.complete = true,
            [count, el, pc, lr, callers @ ..] => {
                let (Ok(count), Ok(el), Some(pc), Some(lr)) =
                    (count.parse(), el.parse(), hex(pc), hex(lr))
                else {
                    continue;
                };
                let callers: Option<Vec<u64>> = callers.iter().map(|c| hex(c)).collect();
                if let Some(callers) = callers {
                    d.stacks.push((count, el, pc, lr, callers));
                }
            }
            _ => {}
        }
    }
    d
}

/// Samples per function: self (the PC is in it) and total (it is anywhere on the stack).
#[derive(Default, Clone, Copy)]
struct Cost {
    own: u64,
    total: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (elf, console, top) = match args.as_slice() {
        [e, c] => (e, c, 30),
        [e, c, flag, n] if flag == "--top" => (e, c, n.parse().unwrap_or(30)),
        _ => {
            eprintln!("usage: profile-report ELF CONSOLE [--top N]");
            exit(2)
        }
    };
    let read = |p: &String| {
        std::fs::read(p).unwrap_or_else(|e| {
            eprintln!("profile-report: {p}: {e}");
            exit(2)
        })
    };
    let syms = Symbols::read(&read(elf)).unwrap_or_else(|e| {
        eprintln!("profile-report: {elf}: {e}");
        exit(2)
    });
    let dump = parse(&String::from_utf8_lossy(&read(console)));

    // Each sample as a stack of function names, innermost first. A return address is
    // symbolised at the call (address - 4), as perf does. The frame chain starts at the
    // caller of the innermost function that has a frame record; a function without one
    // (memcpy, memset: precompiled) is interrupted with its caller in the link
    // register, which is then the missing frame: it names neither the PC's function
    // nor the chain's first.
    let frame_name = |addr: u64| syms.name(addr).unwrap_or("[unknown]").to_string();
    let mut stacks: Vec<(u64, Vec<String>)> = Vec::new();
    for (count, el, pc, lr, callers) in &dump.stacks {
        if *el == 0 {
            stacks.push((*count, vec!["[user]".to_string()]));
            continue;
        }
        let mut names = vec![frame_name(*pc)];
        let chain: Vec<String> = callers
            .iter()
            .map(|&ra| frame_name(ra.wrapping_sub(4)))
            .collect();
        let by_lr = frame_name(lr.wrapping_sub(4));
        if *lr != 0 && by_lr != names[0] && chain.first() != Some(&by_lr) {
            names.push(by_lr);
        }
        names.extend(chain);
        stacks.push((*count, names));
    }
    let samples: u64 = stacks.iter().map(|s| s.0).sum();
    let in_kernel: u64 = stacks
        .iter()
        .filter(|s| s.1[0] != "[user]" && s.1[0] != "[unknown]")
        .map(|s| s.0)
        .sum();

    let mut cost: HashMap<&str, Cost> = HashMap::new();
    // (caller, callee) -> samples
    let mut edges: HashMap<(&str, &str), u64> = HashMap::new();
    for (count, names) in &stacks {
        cost.entry(&names[0]).or_default().own += count;
        let mut seen: Vec<&str> = Vec::new();
        for n in names {
            if !seen.contains(&n.as_str()) {
                seen.push(n);
                cost.entry(n).or_default().total += count;
            }
        }
        for pair in names.windows(2) {
            *edges.entry((&pair[1], &pair[0])).or_default() += count;
        }
    }

    println!("== profile: {samples} samples ({in_kernel} in kernel functions)");
    if let Some(every) = &dump.every {
        println!("one sample every {every}");
    }
    for (cpu, n, dropped, idle) in &dump.cpus {
        println!(
            "cpu {cpu}: {n} samples kept, {dropped} dropped (buffer full), {idle} idle (not kept)"
        );
    }
    if !dump.complete {
        println!("warning: the dump has no end line (the run stopped early?)");
    }
    let pct = |n: u64| 100.0 * n as f64 / samples.max(1) as f64;

    let mut flat: Vec<(&str, Cost)> = cost.iter().map(|(k, v)| (*k, *v)).collect();
    flat.sort_by(|a, b| b.1.own.cmp(&a.1.own).then(b.1.total.cmp(&a.1.total)));
    println!("\n== flat profile (self: the PC is in the function; total: it is on the stack)");
    println!(
        "{:>8} {:>6} {:>8} {:>6}  function",
        "self", "%", "total", "%"
    );
    for (name, c) in flat.iter().take(top) {
        println!(
            "{:>8} {:>5.1}% {:>8} {:>5.1}%  {name}",
            c.own,
            pct(c.own),
            c.total,
            pct(c.total)
        );
    }

    let mut by_total = flat.clone();
    by_total.sort_by_key(|f| std::cmp::Reverse(f.1.total));
    println!("\n== call graph (by total; callers above each function, callees below)");
    for (name, c) in by_total.iter().filter(|f| f.0 != "[user]").take(top / 2) {
        let mut callers: Vec<(&str, u64)> = edges
            .iter()
            .filter(|((_, callee), _)| callee == name)
            .map(|((caller, _), n)| (*caller, *n))
            .collect();
        let mut callees: Vec<(&str, u64)> = edges
            .iter()
            .filter(|((caller, _), _)| caller == name)
            .map(|((_, callee), n)| (*callee, *n))
            .collect();
        callers.sort_by_key(|c| std::cmp::Reverse(c.1));
        callees.sort_by_key(|c| std::cmp::Reverse(c.1));
        println!();
        for (caller, n) in callers.iter().take(4) {
            println!("{:>18}  {caller}", n);
        }
        println!(
            "{:>8} {:>8}  {name}  ({:.1}% total)",
            c.own,
            c.total,
            pct(c.total)
        );
        for (callee, n) in callees.iter().take(6) {
            println!("{:>18}    {callee}", n);
        }
    }

    if samples == 0 || in_kernel == 0 {
        eprintln!("profile-report: no sample in a kernel function");
        exit(1);
    }
}
