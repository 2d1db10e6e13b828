//! Every file and directory that `README.md` and `docs/*.md` name exists: a path in
//! backticks (code blocks included) or a Markdown link target, containing a `/`, is
//! looked up relative to the repository, the document's own directory, `kernel/`,
//! `kernel/src/` and `kernel/src/mm/` (the docs write `mm/fault.rs` for
//! `kernel/src/mm/fault.rs`, and `pgtable/fork.rs` inside the mm narrative). A path counts if its file name has an extension or it starts
//! in a directory of the repository (`mm/collapse/`). Not checked: paths in the guest
//! (`/proc/...`, `transparent_hugepage/cow`), URLs, globs and placeholders
//! (`docs/seeds/002_*.txt`, `hugepages-<N>kB`), and `#anchors`.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The path-like words of a Markdown text: backticked spans and link targets.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.extend(span.split_whitespace().map(str::to_string));
        }
    }
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out.into_iter()
        .map(|p| {
            p.split('#')
                .next()
                .unwrap_or("")
                .trim_end_matches([',', ':', '.'])
                .to_string()
        })
        .filter(|p| is_repo_path(p))
        .collect()
}

/// A file of the repository (its name has an extension) or a path that starts in one
/// of its directories; not a guest path, a build output, a URL, a glob or a
/// placeholder, nor a word such as `v2/v3` or `ops/s`.
fn is_repo_path(p: &str) -> bool {
    const DIRS: [&str; 12] = [
        "kernel", "platform", "user", "tests", "scripts", "docs", "linker", "mm", "proc", "arch",
        "fs", "syscall",
    ];
    let has_ext = p
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .is_some_and(|(stem, ext)| {
            !stem.is_empty() && !ext.is_empty() && ext.chars().all(|c| c.is_ascii_lowercase())
        });
    let in_repo_dir = DIRS.contains(&p.split('/').next().unwrap_or(""));
    p.contains('/')
        && !p.starts_with('/')
        && !p.starts_with("target/")
        && !p.contains("://")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && (has_ext || in_repo_dir)
}

/// The named paths of `text` (a document in `dir`) that exist nowhere.
fn missing(text: &str, dir: &Path, root: &Path) -> Vec<String> {
    let bases = [
        root.to_path_buf(),
        dir.to_path_buf(),
        root.join("kernel"),
        root.join("kernel/src"),
        root.join("kernel/src/mm"),
    ];
    let mut out: Vec<String> = named_paths(text)
        .into_iter()
        .filter(|p| !bases.iter().any(|b| b.join(p).exists()))
        .collect();
    out.dedup();
    out
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("docs/ is readable") {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                docs.push(p);
            }
        }
    }
    docs
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = root();
    let mut bad = Vec::new();
    let docs = documents(&root);
    assert!(docs.len() >= 6, "README.md and docs/*.md: only {docs:?}");
    for doc in docs {
        let text = fs::read_to_string(&doc).unwrap();
        for p in missing(&text, doc.parent().unwrap(), &root) {
            bad.push(format!(
                "{}: {p}",
                doc.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        bad.join("\n")
    );
}

#[test]
fn a_planted_bad_path_is_found() {
    let root = root();
    let text = "The fault path: `mm/fault.rs`, then `mm/no_such_file.rs`; see \
                [the manual](docs/manual.md) and [gone](docs/gone.md#x), not \
                `/proc/vmstat`, `transparent_hugepage/cow`, `hugepages-<N>kB/stats`, \
                `ops/s`, `target/built.log` or `a/*.txt`; `kernel/gone/`.";
    assert_eq!(
        missing(text, &root.join("docs"), &root),
        ["mm/no_such_file.rs", "kernel/gone/", "docs/gone.md"]
    );
}
