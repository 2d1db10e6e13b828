//! The calling process's /proc files as text: a file read whole, the maps or smaps
//! block of one VMA, an smaps or status field, smaps' `VmFlags` mnemonics.

use crate::ensure;
use crate::fs;
use crate::test::{Context, Fail};
use crate::text::Text;

/// File `path` as text, in `buf`.
pub fn read_text<'a>(path: &str, buf: &'a mut [u8]) -> Result<&'a str, Fail> {
    let mut p = Text::<128>::from_fmt(format_args!("{path}"));
    let n = fs::read_all(p.as_cstr(), buf).ctx(path)?;
    ensure!(n < buf.len(), "{path}: longer than {} bytes", buf.len());
    core::str::from_utf8(&buf[..n]).map_err(|_| Fail::new(format_args!("{path}: not UTF-8")))
}

/// The /proc/self/maps or smaps line of the VMA starting at `start`, and what follows.
pub fn vma_block(text: &str, start: usize) -> Result<&str, Fail> {
    let head = Text::<32>::from_fmt(format_args!("{start:08x}-"));
    let at = text
        .lines()
        .scan(0, |off, l| {
            let here = *off;
            *off += l.len() + 1;
            Some((here, l))
        })
        .find(|(_, l)| l.starts_with(head.as_str()))
        .map(|(off, _)| off)
        .ctx("the mapping's line")?;
    Ok(&text[at..])
}

/// The smaps block of the VMA starting at `start`, in `buf`.
pub fn smaps_block(start: usize, buf: &mut [u8]) -> Result<&str, Fail> {
    vma_block(read_text("/proc/self/smaps", buf)?, start)
}

/// Field `name` (kB, or a bare number for THPeligible) of an smaps block.
pub fn field(block: &str, name: &str) -> Result<u64, Fail> {
    block
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with(|c: char| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| Fail::new(format_args!("smaps: no {name}")))
}

/// Whether the `VmFlags:` line of an smaps block lists `flag` (`lo`, `dc`, `wf`, ...).
pub fn has_vm_flag(block: &str, flag: &str) -> Result<bool, Fail> {
    let line = block
        .lines()
        .find_map(|l| l.strip_prefix("VmFlags:"))
        .ctx("smaps: VmFlags")?;
    Ok(line.split_whitespace().any(|f| f == flag))
}

/// The kB of /proc/self/status field `name` (`VmLck`, `VmRSS`, ...).
pub fn status_kb(name: &str) -> Result<u64, Fail> {
    let mut buf = [0u8; 4096];
    let text = read_text("/proc/self/status", &mut buf)?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| Fail::new(format_args!("status: no {name}")))
}
