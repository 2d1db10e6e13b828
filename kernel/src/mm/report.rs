//! /proc/self/thpmaps: per VMA, bytes mapped by folios of each order, by contiguous
//! entries and by 2 MiB blocks.

use alloc::string::String;
use core::fmt::Write as _;

use super::aspace::{Mm, MmEnv, PMD};
use super::folio::Folio;
use super::vma::VmaKind;
use super::PAGE_SIZE;

impl<E: MmEnv> Mm<E> {
    /// /proc/self/thpmaps: per VMA, bytes mapped by folios of each order, by
    /// contiguous entries, and by 2 MiB blocks.
    pub fn thp_report(&self) -> String {
        let mut out = String::new();
        for vma in self.vmas.iter() {
            let mut by_order = [0u64; 10];
            let (mut cont, mut pmd) = (0u64, 0u64);
            self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let bytes = if leaf.level == 2 {
                    PMD
                } else {
                    PAGE_SIZE as u64
                };
                by_order[Folio::lock(leaf.pa_of(va)).order()] += bytes;
                if leaf.level == 2 {
                    pmd += bytes;
                } else if leaf.pte.is_cont() {
                    cont += bytes;
                }
            });
            let p = vma.prot;
            let perms =
                [(p.read, 'r'), (p.write, 'w'), (p.exec, 'x')]
                    .map(|(on, c)| if on { c } else { '-' });
            let kind = match vma.kind {
                VmaKind::Anon => "anon",
                VmaKind::Stack => "stack",
                VmaKind::Heap => "heap",
                VmaKind::Image => "image",
            };
            let _ = write!(
                out,
                "{:x}-{:x} {}{}{}p {kind}",
                vma.start.as_u64(),
                vma.end.as_u64(),
                perms[0],
                perms[1],
                perms[2]
            );
            for order in [0, 2, 3, 4, 5, 6, 7, 8, 9] {
                let _ = write!(out, " order{order}={}", by_order[order]);
            }
            let _ = writeln!(out, " cont={cont} pmd={pmd}");
        }
        out
    }
}
