//! What a process's mappings look like, for /proc/self/thpmaps and /proc/self/smaps:
//! per VMA, bytes mapped by folios of each order, by contiguous entries and by 2 MiB
//! blocks, and how much of it is mapped naturally aligned (a folio of order k at an
//! address that is a multiple of its size: what the contiguous bit and PMD blocks
//! need).

use alloc::string::String;
use core::fmt::Write as _;

use super::aspace::{Mm, MmEnv, PMD};
use super::folio::Folio;
use super::vma::{Vma, VmaKind};
use super::PAGE_SIZE;

/// One VMA's mapped bytes.
#[derive(Default)]
struct Tally {
    /// By the order of the folio that maps them.
    by_order: [u64; 10],
    /// Of those, mapped at an address aligned to the folio's size, by order.
    aligned: [u64; 10],
    /// By contiguous level-3 entries.
    cont: u64,
    /// By 2 MiB blocks.
    pmd: u64,
}

impl Tally {
    fn rss(&self) -> u64 {
        self.by_order.iter().sum()
    }
}

/// Orders the report lists: base pages and the mTHP sizes 16 KiB..2 MiB.
const ORDERS: [usize; 9] = [0, 2, 3, 4, 5, 6, 7, 8, 9];

impl<E: MmEnv> Mm<E> {
    fn tally(&self, vma: &Vma) -> Tally {
        let mut t = Tally::default();
        self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
            let bytes = if leaf.level == 2 {
                PMD
            } else {
                PAGE_SIZE as u64
            };
            let pa = leaf.pa_of(va);
            let f = Folio::lock(pa);
            let order = f.order();
            let size = (PAGE_SIZE << order) as u64;
            let offset = pa.as_u64() - f.head().as_u64();
            t.by_order[order] += bytes;
            if (va.as_u64() - offset).is_multiple_of(size) {
                t.aligned[order] += bytes;
            }
            if leaf.level == 2 {
                t.pmd += bytes;
            } else if leaf.pte.is_cont() {
                t.cont += bytes;
            }
        });
        t
    }

    /// /proc/self/thpmaps: one line per VMA (programs parse these), then a summary in
    /// the vocabulary of Linux's `tools/mm/thpmaps`: for each size, the kB mapped by
    /// naturally aligned folios of that size through PTEs (`anon-thp-pte-aligned-*`)
    /// or a PMD (`anon-thp-pmd-aligned-2048kB`), and by contiguous entries
    /// (`anon-cont-pte-aligned-64kB`), with their share of everything mapped.
    pub fn thp_report(&self) -> String {
        let mut out = String::new();
        let mut total = Tally::default();
        for vma in self.vmas.iter() {
            let t = self.tally(vma);
            let _ = write!(out, "{}", VmaHeader(vma));
            for order in ORDERS {
                let _ = write!(out, " order{order}={}", t.by_order[order]);
            }
            let _ = writeln!(out, " cont={} pmd={}", t.cont, t.pmd);
            for order in ORDERS {
                total.by_order[order] += t.by_order[order];
                total.aligned[order] += t.aligned[order];
            }
            total.cont += t.cont;
            total.pmd += t.pmd;
        }
        let rss = total.rss();
        let line = |out: &mut String, name: &str, bytes: u64| {
            let pct = (bytes * 100).checked_div(rss).unwrap_or(0);
            let _ = writeln!(out, "{name:<30} {:>10} kB ({pct:>3}%)", bytes >> 10);
        };
        let _ = writeln!(out, "summary: {} kB mapped", rss >> 10);
        line(&mut out, "anon-thp-pmd-aligned-2048kB:", total.pmd);
        for order in ORDERS.into_iter().skip(1) {
            let kb = (PAGE_SIZE << order) >> 10;
            let pte = if order == 9 {
                total.aligned[9] - total.pmd.min(total.aligned[9])
            } else {
                total.aligned[order]
            };
            line(
                &mut out,
                &alloc::format!("anon-thp-pte-aligned-{kb}kB:"),
                pte,
            );
        }
        line(&mut out, "anon-cont-pte-aligned-64kB:", total.cont);
        out
    }

    /// /proc/self/smaps, the fields Linux's has that this kernel knows, per VMA:
    /// Size, Rss, Anonymous, AnonHugePages (bytes mapped by 2 MiB blocks).
    pub fn smaps(&self) -> String {
        let mut out = String::new();
        for vma in self.vmas.iter() {
            let t = self.tally(vma);
            let name = match vma.kind {
                VmaKind::Stack => "[stack]",
                VmaKind::Heap => "[heap]",
                VmaKind::Anon | VmaKind::Image => "",
            };
            let _ = writeln!(out, "{} 00000000 00:00 0 {name}", SmapsHeader(vma));
            let size = (vma.end.as_u64() - vma.start.as_u64()) >> 10;
            for (field, kb) in [
                ("Size", size),
                ("Rss", t.rss() >> 10),
                ("Anonymous", t.rss() >> 10),
                ("AnonHugePages", t.pmd >> 10),
            ] {
                let _ = writeln!(out, "{:<16}{kb:>8} kB", alloc::format!("{field}:"));
            }
        }
        out
    }
}

fn perms(vma: &Vma) -> [char; 3] {
    let p = vma.prot;
    [(p.read, 'r'), (p.write, 'w'), (p.exec, 'x')].map(|(on, c)| if on { c } else { '-' })
}

/// `start-end rwxp kind`, thpmaps' VMA prefix.
struct VmaHeader<'a>(&'a Vma);

impl core::fmt::Display for VmaHeader<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.0;
        let [r, w, x] = perms(v);
        let kind = match v.kind {
            VmaKind::Anon => "anon",
            VmaKind::Stack => "stack",
            VmaKind::Heap => "heap",
            VmaKind::Image => "image",
        };
        write!(
            f,
            "{:x}-{:x} {r}{w}{x}p {kind}",
            v.start.as_u64(),
            v.end.as_u64()
        )
    }
}

/// `start-end rwxp`, as /proc/PID/maps and smaps start a VMA.
struct SmapsHeader<'a>(&'a Vma);

impl core::fmt::Display for SmapsHeader<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.0;
        let [r, w, x] = perms(v);
        write!(
            f,
            "{:08x}-{:08x} {r}{w}{x}p",
            v.start.as_u64(),
            v.end.as_u64()
        )
    }
}
