//! The kernel's arrows point down: no import cycle runs through files of different
//! modules. Reads `kernel/src`, resolves every `crate::...` and `super::...` path to the
//! file that defines it, and checks that each strongly connected component of that
//! graph stays inside one directory (two files of one subsystem may know each other,
//! as `proc/sched.rs` and `proc/task.rs` do; a lower layer never reaches back up).
//! Tests, the in-kernel test suite and host-only models are left out: they may use
//! anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`mm::pgtable::ctx`) -> file (`mm/pgtable/ctx.rs`).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("kernel/src is readable") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().to_string_lossy().into_owned();
            let skip = rel.starts_with("ktest/")
                || rel.contains("/tests/")
                || rel.ends_with("/tests.rs")
                || rel.ends_with("/host.rs")
                || rel.ends_with("/model.rs")
                || rel == "lib.rs"
                || rel == "main.rs";
            if !rel.ends_with(".rs") || skip {
                continue;
            }
            let module = rel
                .trim_end_matches(".rs")
                .trim_end_matches("/mod")
                .replace('/', "::");
            out.insert(module, rel);
        }
    }
    out
}

/// The file a path such as `mm::folio::Folio` comes from: its longest module prefix.
fn resolve(mods: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .find_map(|k| mods.get(&parts[..k].join("::")).cloned())
}

/// Paths named after `prefix` (`crate::` or `super::`) in `src`, outside a
/// `#[cfg(test)] mod tests` block at the end of the file.
fn paths<'a>(src: &'a str, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
    let body = src.split("#[cfg(test)]\nmod tests").next().unwrap_or(src);
    body.match_indices(prefix).map(move |(i, _)| {
        body[i + prefix.len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    })
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut g = BTreeMap::new();
    for (module, file) in &mods {
        let text = fs::read_to_string(src.join(file)).expect("readable source");
        let parent = if file.ends_with("mod.rs") || !module.contains("::") {
            module.rsplit_once("::").map_or("", |(p, _)| p).to_string()
        } else {
            module.rsplit_once("::").map_or("", |(p, _)| p).to_string()
        };
        let mut deps = BTreeSet::new();
        for p in paths(&text, "crate::") {
            deps.extend(resolve(&mods, &p));
        }
        for p in paths(&text, "super::") {
            let full = if parent.is_empty() {
                p
            } else {
                format!("{parent}::{p}")
            };
            deps.extend(resolve(&mods, &full));
        }
        deps.remove(file);
        g.insert(file.clone(), deps);
    }
    g
}

/// Strongly connected components (Tarjan).
fn sccs(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct S<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut c = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                c.push(w.to_string());
                if w == v {
                    break;
                }
            }
            s.out.push(c);
        }
    }
    let mut s = S {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn dir(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(d, _)| d)
}

#[test]
fn no_import_cycle_crosses_modules() {
    let src = contkernel_tests::workspace_root().join("kernel/src");
    let g = graph(&src);
    assert!(g.len() > 50, "found only {} kernel source files", g.len());
    let bad: Vec<String> = sccs(&g)
        .into_iter()
        .filter(|c| c.len() > 1 && c.iter().any(|f| dir(f) != dir(&c[0])))
        .map(|c| {
            let mut c = c;
            c.sort();
            c.iter()
                .map(|f| {
                    let to: Vec<&str> = g[f]
                        .iter()
                        .filter(|t| c.contains(t))
                        .map(String::as_str)
                        .collect();
                    format!("  {f} -> {}", to.join(" "))
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "import cycles across modules:\n{}",
        bad.join("\n\n")
    );
}

#[test]
fn the_checker_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("mm/a.rs", vec!["proc/b.rs"]),
        ("proc/b.rs", vec!["mm/a.rs"]),
        ("fs/c.rs", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let c: Vec<_> = sccs(&g).into_iter().filter(|c| c.len() > 1).collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].len(), 2);
}
