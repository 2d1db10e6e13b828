//! The kernel's arrows point down. Reads `kernel/src`, resolves every path a file
//! names to the file that defines it, and checks two things of that graph:
//! - every arrow goes to a module of the same layer or a lower one, in the order of
//!   `LAYERS` (the README's "Layout");
//! - no import cycle runs through files of different directories: each strongly
//!   connected component stays inside one (two files of one subsystem may know each
//!   other, as `proc/sched.rs` and `proc/task.rs` do).
//!
//! What counts as an arrow, and the judgement calls:
//! - Every path in code, not only in `use`: `crate::`, `$crate::`, `super::` (repeated),
//!   `self::`, a child module declared in the file (`mod thp;` then `thp::read`), and a
//!   name bound by a `use` (`use crate::mm;` then `mm::folio::Folio`). Grouped imports
//!   (`use crate::{a::b, c::{d, e}}`) are expanded. Inline modules (`mod imp { .. }`)
//!   count: `super::` inside one is the file's own module.
//! - A path through a re-export (`pub use`, or a parent's private `use` a child names
//!   through `super::`) lands on the file that defines the item: the re-export is a
//!   signpost, not code, and the signpost's own `use` is its file's arrow. A glob
//!   re-export is searched for the name; a name found nowhere lands on the module that
//!   was named.
//! - A macro invoked by name (`kprintln!`) is an arrow to the file that defines it; a
//!   name two files define (each for itself) is no arrow.
//! - Declaring a child (`mod thp;`) is not an arrow: the arrows are what the parent names.
//! - Comments and string literals are not arrows, intra-doc links included; nor is a
//!   visibility path (`pub(in crate::mm)`).
//! - A directory is a module: `mm/pgtable/` is another module than `mm/`, so a cycle
//!   between `mm/mod.rs` and a file of `mm/pgtable/` crosses modules. A directory's
//!   `mod.rs` belongs to that directory (`mm/pgtable/mod.rs` is in `mm/pgtable/`), so a
//!   cycle between a directory's files and its own `mod.rs` stays inside it and passes.
//! - Tests, the in-kernel test suite, host-only models and `#[cfg(test)]` items are left
//!   out: they may use anything. So are `lib.rs` (the list of modules) and `main.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The layers, lowest first, by module path under `kernel/src` (a directory, or a file
/// without `.rs`; the longest entry that holds a file places it): the machine and the
/// kernel's own services at the bottom, memory management, then files and what is
/// built on memory and runs it (interrupt dispatch, power-off, the profiler, the
/// target machine under `Mm` once it lives in `arch/aarch64/mm`), processes, and the
/// system calls and bring-up. A new top-level module must be placed here.
const LAYERS: [&[&str]; 5] = [
    &[
        "arch", "cmdline", "console", "percpu", "sync", "time", "uapi",
    ],
    &["mm"],
    &["arch/aarch64/mm", "fs", "interrupts", "power", "profile"],
    &["proc"],
    &["bench", "boot", "smp", "syscall"],
];

/// The layer of a source file (`mm/pgtable/ctx.rs` -> 1): its longest entry in `LAYERS`.
fn layer(file: &str) -> Option<usize> {
    let module = file.trim_end_matches(".rs");
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(n, l)| l.iter().map(move |e| (n, *e)))
        .filter(|(_, e)| module == *e || module.starts_with(&format!("{e}/")))
        .max_by_key(|(_, e)| e.len())
        .map(|(n, _)| n)
}

/// The arrows of `g` that point up a layer, or leave a file with no layer.
fn upward_arrows(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (f, deps) in g {
        for t in deps {
            match (layer(f), layer(t)) {
                (Some(from), Some(to)) if to <= from => {}
                (Some(from), Some(to)) => {
                    out.push(format!("  {f} (layer {from}) -> {t} (layer {to})"))
                }
                _ => out.push(format!("  {f} -> {t}: a module with no layer in LAYERS")),
            }
        }
    }
    out
}

/// Source files by path under `kernel/src` (`mm/pgtable/ctx.rs`), without tests.
fn sources(src: &Path) -> BTreeMap<String, String> {
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
            if rel.ends_with(".rs") && !skip {
                let text = fs::read_to_string(&p).expect("readable source");
                out.insert(rel, text);
            }
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Identifiers and punctuation of `src`, without comments, strings and char literals.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let rest = &c[i..];
        if rest.starts_with(&['/', '/']) {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < c.len() {
                if c[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if c[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c[i] == '"' || ((c[i] == 'r' || c[i] == 'b') && raw_string(rest).is_some()) {
            i += raw_string(rest).unwrap_or_else(|| quoted(rest, '"'));
        } else if c[i] == '\'' {
            // A char literal closes within three characters ('x', '\n'; `b'x'` is an
            // identifier and one); a lifetime does not.
            if rest.get(1) == Some(&'\\') || rest.get(2) == Some(&'\'') {
                i += quoted(rest, '\'');
            } else {
                i += 1;
            }
        } else if ident(c[i]) {
            let start = i;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if rest.starts_with(&[':', ':']) {
            out.push(Tok::Path);
            i += 2;
        } else {
            if !c[i].is_whitespace() {
                out.push(Tok::Punct(c[i]));
            }
            i += 1;
        }
    }
    out
}

/// Length of a quoted literal opening at `s[0]`, escapes included.
fn quoted(s: &[char], q: char) -> usize {
    let mut i = 1;
    while i < s.len() && s[i] != q {
        i += if s[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// Length of a raw string (`r#"..."#`, `br"..."`: no escapes) opening at `s[0]`; a
/// byte string (`b"..."`) is an identifier and a string.
fn raw_string(s: &[char]) -> Option<usize> {
    let mut i = usize::from(s.first() == Some(&'b'));
    if s.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let hashes = s[i..].iter().take_while(|&&ch| ch == '#').count();
    i += hashes;
    if s.get(i) != Some(&'"') {
        return None;
    }
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    (i + 1..s.len())
        .find(|&j| s[j..].starts_with(&close))
        .map(|j| j + close.len())
}

/// A module path from the crate root: `["mm", "pgtable"]`.
type ModPath = Vec<String>;

/// What one module (a file, or an inline `mod x { .. }` in it) declares and names.
#[derive(Default)]
struct Module {
    file: String,
    /// Child modules (`mod x;`, `mod x { .. }`).
    children: BTreeSet<String>,
    /// Items defined at the module's top level (`fn`, `struct`, `const`, ...).
    defs: BTreeSet<String>,
    /// Names a `use` binds, to the path as written (resolved later). Private ones count
    /// too: a child module may name its parent's imports (`use super::*`).
    uses: BTreeMap<String, Vec<String>>,
    /// Glob imports, as written.
    globs: Vec<Vec<String>>,
    /// Every path named in the module's code, as written.
    paths: Vec<Vec<String>>,
    /// Macros invoked by name.
    macros: BTreeSet<String>,
}

/// The modules of one crate, and where each macro is defined.
#[derive(Default)]
struct Crate {
    modules: BTreeMap<ModPath, Module>,
    macro_defs: BTreeMap<String, BTreeSet<String>>,
}

/// Module path of a source file: `fs/mod.rs` -> `["fs"]`, `mm/addr.rs` -> `["mm", "addr"]`.
fn module_of(file: &str) -> ModPath {
    file.trim_end_matches(".rs")
        .trim_end_matches("/mod")
        .split('/')
        .map(String::from)
        .collect()
}

const ITEM_KEYWORDS: [&str; 8] = [
    "fn", "struct", "enum", "const", "static", "trait", "type", "union",
];

impl Crate {
    fn parse(sources: &BTreeMap<String, String>) -> Self {
        let mut krate = Crate::default();
        for (file, text) in sources {
            krate.parse_file(file, &tokens(text));
        }
        krate
    }

    fn parse_file(&mut self, file: &str, toks: &[Tok]) {
        let name = |i: usize| match toks.get(i) {
            Some(Tok::Ident(s)) => Some(s.as_str()),
            _ => None,
        };
        let punct = |i: usize, ch: char| toks.get(i) == Some(&Tok::Punct(ch));
        // Open modules and the brace depth at which each one's body lives.
        let mut scopes: Vec<(ModPath, usize)> = vec![(module_of(file), 0)];
        self.modules.entry(module_of(file)).or_default().file = file.to_string();
        let mut depth = 0;
        let mut i = 0;
        while i < toks.len() {
            let (here, body) = scopes.last().cloned().unwrap();
            let top = depth == body;
            if punct(i, '#') && cfg_test(toks, i) {
                let end = skip_item(toks, i);
                // A test module is still a child: paths into it are no arrow to here.
                let item = &toks[i..end];
                if let Some(k) = item.iter().position(|t| *t == Tok::Ident("mod".into())) {
                    if let Some(Tok::Ident(child)) = item.get(k + 1) {
                        let m = self.modules.get_mut(&here).unwrap();
                        m.children.insert(child.clone());
                    }
                }
                i = end;
                continue;
            }
            match &toks[i] {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth < body {
                        scopes.pop();
                    }
                }
                Tok::Ident(kw) if kw == "mod" && name(i + 1).is_some() => {
                    let child = name(i + 1).unwrap().to_string();
                    self.modules
                        .get_mut(&here)
                        .unwrap()
                        .children
                        .insert(child.clone());
                    if punct(i + 2, '{') {
                        let mut inner = here.clone();
                        inner.push(child);
                        self.modules.entry(inner.clone()).or_default().file = file.to_string();
                        depth += 1;
                        scopes.push((inner, depth));
                        i += 3;
                        continue;
                    }
                }
                Tok::Ident(kw) if kw == "macro_rules" && punct(i + 1, '!') => {
                    if let Some(m) = name(i + 2) {
                        self.macro_defs
                            .entry(m.to_string())
                            .or_default()
                            .insert(file.to_string());
                    }
                    i += 3;
                    continue;
                }
                Tok::Ident(kw) if top && ITEM_KEYWORDS.contains(&kw.as_str()) => {
                    if let Some(def) = name(i + 1) {
                        self.modules.get_mut(&here).unwrap().defs.insert(def.into());
                    }
                }
                Tok::Ident(kw) if kw == "use" => {
                    let mut trees = Vec::new();
                    let end = use_tree(toks, i + 1, Vec::new(), &mut trees);
                    let m = self.modules.get_mut(&here).unwrap();
                    for (path, bind) in trees {
                        match bind {
                            Binding::Glob => m.globs.push(path),
                            Binding::Name(b) => {
                                m.uses.insert(b, path.clone());
                                m.paths.push(path);
                            }
                        }
                    }
                    i = end;
                    continue;
                }
                Tok::Ident(first) => {
                    // `$crate::x` in a macro body is `crate::x`; `$name::x` is a macro
                    // variable, not a path.
                    let meta = i > 0 && punct(i - 1, '$');
                    let mut path = vec![first.clone()];
                    let mut j = i + 1;
                    while toks.get(j) == Some(&Tok::Path) && name(j + 1).is_some() {
                        path.push(name(j + 1).unwrap().to_string());
                        j += 2;
                    }
                    let after_path = i > 0 && toks[i - 1] == Tok::Path;
                    // `pub(in crate::mm)` names who may see an item, not what it uses.
                    let visibility = i > 1 && name(i - 1) == Some("in") && punct(i - 2, '(');
                    let m = self.modules.get_mut(&here).unwrap();
                    if punct(j, '!') && !punct(j + 1, '=') {
                        m.macros.insert(path.last().unwrap().clone());
                    }
                    if path.len() > 1 && !after_path && !visibility && (!meta || first == "crate") {
                        m.paths.push(path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        // A literal or comment the tokenizer misread would shift every scope after it.
        assert_eq!(depth, 0, "{file}: braces do not balance");
    }

    /// The absolute path of `path` as written in module `here`, or `None` when it
    /// leaves the crate (`core::`, `platform::`) or starts at a local name.
    fn absolute(&self, here: &[String], path: &[String], depth: u32) -> Option<ModPath> {
        let (first, rest) = path.split_first()?;
        let m = self.modules.get(here)?;
        let mut base: ModPath = match first.as_str() {
            "crate" => Vec::new(),
            "self" => here.to_vec(),
            "super" => {
                let mut base = here[..here.len().checked_sub(1)?].to_vec();
                let mut rest = rest;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                return Some(base.into_iter().chain(rest.iter().cloned()).collect());
            }
            _ if m.children.contains(first) => [here, std::slice::from_ref(first)].concat(),
            _ if depth < 8 && m.uses.contains_key(first) => {
                self.absolute(here, &m.uses[first], depth + 1)?
            }
            _ => return None,
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines what the absolute path `path` names, through re-exports.
    fn file_of(&self, path: &[String], depth: u32) -> Option<String> {
        let k = (1..=path.len())
            .rev()
            .find(|&k| self.modules.contains_key(&path[..k]))?;
        let (module, rest) = path.split_at(k);
        let m = &self.modules[module];
        let Some(name) = rest.first() else {
            return Some(m.file.clone());
        };
        if m.children.contains(name) {
            // A child left out (tests, host models): what they hold is no arrow.
            return None;
        }
        if depth >= 8 || m.defs.contains(name) {
            return Some(m.file.clone());
        }
        if m.uses.contains_key(name) {
            let target = self.absolute(module, &m.uses[name], 0);
            let through = target.map(|t| [t, rest[1..].to_vec()].concat());
            return through
                .and_then(|p| self.file_of(&p, depth + 1))
                .or_else(|| Some(m.file.clone()));
        }
        m.globs
            .iter()
            .filter_map(|g| self.absolute(module, g, 0))
            .find(|g| {
                self.modules
                    .get(g)
                    .is_some_and(|gm| gm.defs.contains(name) || gm.uses.contains_key(name))
            })
            .and_then(|g| self.file_of(&[g, rest.to_vec()].concat(), depth + 1))
            .or_else(|| Some(m.file.clone()))
    }

    /// File -> the files it names.
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (here, m) in &self.modules {
            let deps = g.entry(m.file.clone()).or_default();
            for p in m.paths.iter().chain(&m.globs) {
                if let Some(abs) = self.absolute(here, p, 0) {
                    deps.extend(self.file_of(&abs, 0));
                }
            }
            for mac in &m.macros {
                match self.macro_defs.get(mac) {
                    Some(files) if files.len() == 1 => deps.extend(files.iter().cloned()),
                    _ => {}
                }
            }
            deps.remove(&m.file);
        }
        g
    }
}

/// Whether the attribute at `toks[i]` is `#[cfg(test)]`.
fn cfg_test(toks: &[Tok], i: usize) -> bool {
    let want = ["[", "cfg", "(", "test", ")", "]"];
    want.iter()
        .enumerate()
        .all(|(k, w)| match toks.get(i + 1 + k) {
            Some(Tok::Ident(s)) => s == w,
            Some(Tok::Punct(ch)) => w.starts_with(*ch),
            _ => false,
        })
}

/// The index after the item whose attributes start at `toks[i]`: its `;`, or its
/// outermost `{ .. }` closed.
fn skip_item(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0;
    let mut bracket = 0;
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('[') => bracket += 1,
            Tok::Punct(']') => bracket -= 1,
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 && bracket == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

enum Binding {
    Name(String),
    Glob,
}

/// Expands the use tree at `toks[i]` under `prefix` into `out`; returns the index after
/// it (after the `;` at the top level).
fn use_tree(
    toks: &[Tok],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Binding)>,
) -> usize {
    let mut path = prefix;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) if s != "as" => {
                path.push(s.clone());
                i += 1;
            }
            Some(Tok::Path) => i += 1,
            Some(Tok::Punct('*')) => {
                out.push((path.clone(), Binding::Glob));
                i += 1;
                break;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while toks.get(i).is_some_and(|t| *t != Tok::Punct('}')) {
                    i = use_tree(toks, i, path.clone(), out);
                    if toks.get(i) == Some(&Tok::Punct(',')) {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            _ => {
                // `a::b::self` binds `b`; `x as y` binds `y`.
                if path.last().map(String::as_str) == Some("self") {
                    path.pop();
                }
                let alias = match (toks.get(i), toks.get(i + 1)) {
                    (Some(Tok::Ident(kw)), Some(Tok::Ident(a))) if kw == "as" => {
                        i += 2;
                        a.clone()
                    }
                    _ => path.last().cloned().unwrap_or_default(),
                };
                out.push((path.clone(), Binding::Name(alias)));
                break;
            }
        }
    }
    if toks.get(i) == Some(&Tok::Punct(';')) {
        i += 1;
    }
    i
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

/// The cycles of `g` that cross directories, one line per file with its arrows inside
/// the cycle.
fn crossing_cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    sccs(g)
        .into_iter()
        .filter(|c| c.len() > 1 && c.iter().any(|f| dir(f) != dir(&c[0])))
        .map(|mut c| {
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
        .collect()
}

#[test]
fn no_import_cycle_crosses_modules() {
    let src = contkernel_tests::workspace_root().join("kernel/src");
    let g = Crate::parse(&sources(&src)).graph();
    assert!(g.len() > 50, "found only {} kernel source files", g.len());
    let bad = crossing_cycles(&g);
    assert!(
        bad.is_empty(),
        "import cycles across modules:\n{}",
        bad.join("\n\n")
    );
}

#[test]
fn arrows_point_down_the_layers() {
    let src = contkernel_tests::workspace_root().join("kernel/src");
    let g = Crate::parse(&sources(&src)).graph();
    let bad = upward_arrows(&g);
    assert!(bad.is_empty(), "arrows up the layers:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_finds_an_upward_arrow() {
    let g = graph_of(&[
        ("arch/tlb.rs", "use crate::mm::addr::PAGE_SHIFT;"),
        ("mm/addr.rs", "pub const PAGE_SHIFT: usize = 12;"),
        ("proc/task.rs", "fn f() { crate::mm::addr::PAGE_SHIFT; }"),
        ("newthing.rs", "fn g() { crate::mm::addr::PAGE_SHIFT; }"),
    ]);
    let bad = upward_arrows(&g);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].starts_with("  arch/tlb.rs (layer 0) -> mm/addr.rs"),
        "{bad:?}"
    );
    assert!(
        bad[1].contains("newthing.rs -> mm/addr.rs: a module with no layer"),
        "{bad:?}"
    );
}

#[test]
fn the_longest_entry_places_a_file() {
    assert_eq!(layer("arch/aarch64/tlb.rs"), Some(0));
    assert_eq!(layer("arch/aarch64/mm/machine.rs"), Some(2));
    assert_eq!(layer("mm/pgtable/ctx.rs"), Some(1));
    assert_eq!(layer("boot.rs"), Some(4));
    assert_eq!(layer("fsx.rs"), None);
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

/// The graph of a synthetic source tree.
fn graph_of(files: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let sources = files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    Crate::parse(&sources).graph()
}

/// `mm/a.rs` names `proc/b.rs` plainly; `proc/b.rs` names it back in `back` (the form
/// under test, with `extra` files around them): the check must see the cycle.
fn planted(back: &str, extra: &[(&str, &str)]) -> Vec<String> {
    let mut files = vec![
        (
            "mm/a.rs",
            "use crate::proc::b::run;\npub fn f() { run() }\n",
        ),
        ("proc/b.rs", back),
    ];
    files.extend_from_slice(extra);
    crossing_cycles(&graph_of(&files))
}

#[test]
fn a_crate_path_in_code_is_an_arrow() {
    assert_eq!(planted("pub fn run() { crate::mm::a::f() }", &[]).len(), 1);
}

#[test]
fn a_super_path_is_an_arrow() {
    let back = "pub fn run() { super::super::mm::a::f() }";
    assert_eq!(planted(back, &[]).len(), 1);
    let back = "pub fn run() { super::c::g() }";
    let c = ("proc/c.rs", "pub fn g() { crate::mm::a::f() }");
    assert_eq!(planted(back, &[c]).len(), 1);
    // Inside an inline module, `super` is the file's own module.
    let back =
        "mod imp { pub fn g() { super::super::super::mm::a::f() } }\npub fn run() { imp::g() }";
    assert_eq!(planted(back, &[]).len(), 1);
}

#[test]
fn a_self_path_is_an_arrow() {
    // mm/a.rs -> proc/mod.rs (`g`) -> proc/c.rs (`self::c::h`) -> mm/a.rs.
    let files = [
        ("mm/a.rs", "pub fn f() { crate::proc::g() }"),
        ("proc/mod.rs", "pub mod c;\npub fn g() { self::c::h() }"),
        ("proc/c.rs", "pub fn h() { crate::mm::a::f() }"),
    ];
    assert_eq!(crossing_cycles(&graph_of(&files)).len(), 1);
}

#[test]
fn a_child_module_path_is_an_arrow() {
    // mm/a.rs -> proc/mod.rs (`g`) -> proc/b.rs (`b::run`, a child named without a
    // prefix) -> mm/a.rs.
    let files = [
        ("mm/a.rs", "pub fn f() { crate::proc::g() }"),
        ("proc/mod.rs", "mod b;\npub fn g() { b::run() }"),
        ("proc/b.rs", "pub fn run() { crate::mm::a::f() }"),
    ];
    assert_eq!(crossing_cycles(&graph_of(&files)).len(), 1);
}

#[test]
fn grouped_imports_are_expanded() {
    let back = "use crate::{uapi::Errno, mm::{a::f, x}};\npub fn run() { f() }";
    assert_eq!(planted(back, &[]).len(), 1);
    let back = "use super::{c::g, d};\npub fn run() { g() }";
    let c = ("proc/c.rs", "use crate::{mm::{a}};\npub fn g() { a::f() }");
    assert_eq!(planted(back, &[c]).len(), 1);
}

#[test]
fn a_name_bound_by_use_is_followed() {
    let back = "use crate::mm;\npub fn run() { mm::a::f() }";
    assert_eq!(planted(back, &[]).len(), 1);
    let back = "use crate::mm::{self as memory};\npub fn run() { memory::a::f() }";
    assert_eq!(planted(back, &[]).len(), 1);
}

#[test]
fn a_reexport_reaches_the_defining_file() {
    // `mm/mod.rs` re-exports `f` from `mm/a.rs` by name and `k` from `mm/b.rs` by a
    // glob: naming `crate::mm::f` and `crate::mm::k` are arrows to those two files, not
    // to the signpost.
    let g = graph_of(&[
        (
            "mm/mod.rs",
            "mod a;\nmod b;\npub use a::f;\npub use self::b::*;",
        ),
        ("mm/a.rs", "pub fn f() {}"),
        ("mm/b.rs", "pub fn k() {}"),
        ("proc/x.rs", "fn r() { crate::mm::f(); crate::mm::k() }"),
    ]);
    let want = BTreeSet::from(["mm/a.rs".to_string(), "mm/b.rs".to_string()]);
    assert_eq!(g["proc/x.rs"], want);
}

#[test]
fn a_macro_is_an_arrow_to_its_file() {
    let c = (
        "console.rs",
        "macro_rules! kprintln { () => { $crate::proc::b::run() } }",
    );
    let files = [("proc/b.rs", "pub fn run() { kprintln!() }"), c];
    assert_eq!(crossing_cycles(&graph_of(&files)).len(), 1);
}

#[test]
fn visibility_and_files_left_out_are_not_arrows() {
    let g = graph_of(&[
        (
            "mm/mod.rs",
            "pub mod a;\nmod host;\n#[cfg(test)]\nmod tests;",
        ),
        (
            "mm/a.rs",
            "pub(in crate::mm) fn f() { super::host::Model::new(); super::tests::t(); }",
        ),
    ]);
    assert!(g["mm/a.rs"].is_empty(), "{g:?}");
}

#[test]
fn comments_strings_and_tests_are_not_arrows() {
    let back = "//! See [`crate::mm::a`].\n/* crate::mm::a::f() */\npub fn run() { let _ = \"crate::mm::a::f\"; let _ = r#\"x \" crate::mm::a::f() \"#; let _ = '\"'; let _ = b'{'; let _ = '}'; }\n#[cfg(test)]\nmod tests { use crate::mm::a; }";
    assert!(planted(back, &[]).is_empty());
}
