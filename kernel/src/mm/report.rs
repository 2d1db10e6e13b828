//! What a process's mappings look like, for /proc/self/thpmaps and /proc/self/smaps:
//! per VMA, bytes mapped by folios of each order, by contiguous entries and by 2 MiB
//! blocks, and how much of it is mapped naturally aligned (a folio of order k at an
//! address that is a multiple of its size: what the contiguous bit and PMD blocks
//! need); and /proc/self/pagemap's entries, one 64-bit word per page; and
//! /proc/self/clear_refs, which resets the accessed state those reports read.

use alloc::string::String;
use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use super::addr::VirtAddr;
use super::addr::PMD_SIZE;
use super::aspace::Mm;
use super::folio::Folio;
use super::frame::MAX_POOL_ORDER;
use super::lazyfree::span;
use super::machine::MmMachine;
use super::mthp::HugeHint;
use super::vma::{Vma, VmaKind};
use super::zero;
use super::PAGE_SIZE;

/// One VMA's mapped bytes.
#[derive(Default)]
struct Tally {
    /// By the order of the folio that maps them (hugetlb's 32 MiB pages are order 13).
    by_order: [u64; MAX_POOL_ORDER + 1],
    /// Of those, mapped at an address aligned to the folio's size, by order.
    aligned: [u64; MAX_POOL_ORDER + 1],
    /// By contiguous level-3 entries.
    cont: u64,
    /// By 2 MiB blocks.
    pmd: u64,
    sharing: Sharing,
    /// hugetlb pages, by whether another mapping shares them: smaps counts them here
    /// only, not in Rss (Linux's `smaps_hugetlb_range`).
    shared_hugetlb: u64,
    private_hugetlb: u64,
}

/// smaps' split of the mapped bytes by how many mappings share them, dirtiness and age.
#[derive(Default)]
struct Sharing {
    /// Proportional: a page mapped by n entries counts 1/n.
    pss: u64,
    pss_dirty: u64,
    shared_clean: u64,
    shared_dirty: u64,
    private_clean: u64,
    private_dirty: u64,
    /// Accessed (AF set).
    referenced: u64,
    /// In a folio MADV_FREE marked and nobody wrote since.
    lazyfree: u64,
}

impl Tally {
    fn rss(&self) -> u64 {
        self.by_order.iter().sum()
    }

    fn add(&mut self, t: &Tally) {
        for order in 0..self.by_order.len() {
            self.by_order[order] += t.by_order[order];
            self.aligned[order] += t.aligned[order];
        }
        self.cont += t.cont;
        self.pmd += t.pmd;
        self.shared_hugetlb += t.shared_hugetlb;
        self.private_hugetlb += t.private_hugetlb;
        let (a, b) = (&mut self.sharing, &t.sharing);
        a.pss += b.pss;
        a.pss_dirty += b.pss_dirty;
        a.shared_clean += b.shared_clean;
        a.shared_dirty += b.shared_dirty;
        a.private_clean += b.private_clean;
        a.private_dirty += b.private_dirty;
        a.referenced += b.referenced;
        a.lazyfree += b.lazyfree;
    }
}

/// /proc/PID/pagemap's bits (Linux's Documentation/admin-guide/mm/pagemap.rst) that
/// this kernel sets: the page is present (bits 0-54 its frame number), and mapped
/// exactly once (its map count is 1). Bit 62 (swapped) and 61 (file page or shared
/// anonymous) stay clear: no swap, and every page is private anonymous.
pub const PM_PRESENT: u64 = 1 << 63;
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// /proc/kpageflags bits (Linux's include/uapi/linux/kernel-page-flags.h) this kernel
/// can tell from a frame's metadata.
const KPF_MMAP: u64 = 1 << 11;
const KPF_ANON: u64 = 1 << 12;
const KPF_SWAPBACKED: u64 = 1 << 14;
const KPF_COMPOUND_HEAD: u64 = 1 << 15;
const KPF_COMPOUND_TAIL: u64 = 1 << 16;
const KPF_NOPAGE: u64 = 1 << 20;
const KPF_THP: u64 = 1 << 22;
const KPF_ZERO_PAGE: u64 = 1 << 24;
const KPF_RESERVED: u64 = 1 << 32;

/// The /proc/kpageflags word of frame `pfn`: no page (outside RAM); for a page of an
/// anonymous folio, anon and swap-backed (as Linux marks every anonymous page), mapped
/// if a page-table entry maps it, and in a large folio the head or tail bit and THP
/// (Linux marks every large anonymous folio so, mTHP included); the zero page's
/// zero-page and reserved bits, as Linux; 0 for any other frame. Reads the metadata without the folio lock: a snapshot a concurrent split or
/// free may outdate, as Linux's is.
pub fn kpageflags(pfn: usize) -> u64 {
    let frames = super::frame::frames();
    if !frames.covers(pfn) {
        return KPF_NOPAGE;
    }
    let pa = super::PhysAddr::from_pfn(pfn);
    if let Some(huge) = super::zero::huge_head(pa) {
        // Linux's huge zero folio: zero page, THP, compound.
        let part = if pa == huge {
            KPF_COMPOUND_HEAD
        } else {
            KPF_COMPOUND_TAIL
        };
        return KPF_ZERO_PAGE | KPF_THP | part;
    }
    if super::zero::is_zero(pa) {
        return KPF_ZERO_PAGE | KPF_RESERVED;
    }
    let Some((head, order)) = frames.block_of(pa) else {
        return 0;
    };
    // A block freed and reallocated since may leave a stale order: stay in RAM.
    if !frames.covers(head.pfn()) || (order > 0 && !frames.covers(head.pfn() + 1)) {
        return 0;
    }
    let head_meta = frames.meta(head);
    if !head_meta.test(super::frame::flags::ANON) {
        return 0;
    }
    let mut word = KPF_ANON | KPF_SWAPBACKED;
    let entire = if order > 0 {
        frames
            .meta(head.add(PAGE_SIZE))
            .total_mapcount
            .load(Ordering::Acquire)
    } else {
        0
    };
    if frames.meta(pa).mapcount.load(Ordering::Acquire) + entire > 0 {
        word |= KPF_MMAP;
    }
    if order > 0 {
        word |= KPF_THP
            | if pa == head {
                KPF_COMPOUND_HEAD
            } else {
                KPF_COMPOUND_TAIL
            };
    }
    word
}

/// Orders the report lists: base pages and the mTHP sizes 16 KiB..2 MiB.
const ORDERS: [usize; 9] = [0, 2, 3, 4, 5, 6, 7, 8, 9];

impl<E: MmMachine> Mm<E> {
    fn tally(&self, vma: &Vma) -> Tally {
        let mut t = Tally::default();
        if let Some(h) = vma.hugetlb() {
            // One look per page, at its first entry: its folio's entire map count.
            let size = h.size.bytes();
            self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                if va.is_aligned(size) {
                    let f = Folio::lock(leaf.pa_of(va));
                    if f.mapcount(0) > 1 {
                        t.shared_hugetlb += size as u64;
                    } else {
                        t.private_hugetlb += size as u64;
                    }
                }
            });
            return t;
        }
        self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
            let bytes = if leaf.level == 2 {
                PMD_SIZE as u64
            } else {
                PAGE_SIZE as u64
            };
            let pa = leaf.pa_of(va);
            if zero::is_zero(pa) {
                // No folio, in no Rss (Linux's smaps skips what vm_normal_page has not).
                return;
            }
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
            // A 2 MiB block's pages share its entire map count: the first one speaks
            // for all.
            let mapcount = f.mapcount(f.index(pa)).max(1) as u64;
            let dirty = leaf.pte.is_dirty();
            let s = &mut t.sharing;
            s.pss += bytes / mapcount;
            if dirty {
                s.pss_dirty += bytes / mapcount;
            }
            *match (mapcount > 1, dirty) {
                (true, false) => &mut s.shared_clean,
                (true, true) => &mut s.shared_dirty,
                (false, false) => &mut s.private_clean,
                (false, true) => &mut s.private_dirty,
            } += bytes;
            if leaf.pte.is_young() {
                s.referenced += bytes;
            }
            if f.is_lazyfree() && !dirty {
                s.lazyfree += bytes;
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
            total.add(&t);
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

    /// The pagemap entries of the pages from `va` (page-aligned), one per slot of
    /// `out`: 0 for a page nothing maps. Walks only the mapped leaves of the range.
    pub fn pagemap(&self, va: VirtAddr, out: &mut [u64]) {
        out.fill(0);
        let end = va.add(out.len() * PAGE_SIZE);
        self.tables.for_each_leaf(va, end, |leaf_va, leaf| {
            let size = if leaf.level == 2 { PMD_SIZE } else { PAGE_SIZE };
            // A 2 MiB block may begin before `va` or end after `end`.
            let first = leaf_va.max(va);
            let last = leaf_va.add(size).min(end);
            if zero::is_zero(leaf.pa_of(first)) {
                // Present, its frame shown, exclusive to nobody.
                let mut page = first;
                while page < last {
                    let pfn = (leaf.pa_of(page).as_u64() / PAGE_SIZE as u64) & PM_PFN_MASK;
                    out[(page.as_u64() - va.as_u64()) as usize / PAGE_SIZE] = PM_PRESENT | pfn;
                    page = page.add(PAGE_SIZE);
                }
                return;
            }
            let f = Folio::lock(leaf.pa_of(first));
            let mut page = first;
            while page < last {
                let pa = leaf.pa_of(page);
                let mut entry = PM_PRESENT | ((pa.as_u64() / PAGE_SIZE as u64) & PM_PFN_MASK);
                if f.mapcount(f.index(pa)) == 1 {
                    entry |= PM_MMAP_EXCLUSIVE;
                }
                out[(page.as_u64() - va.as_u64()) as usize / PAGE_SIZE] = entry;
                page = page.add(PAGE_SIZE);
            }
        });
    }

    /// One VMA's /proc/PID/smaps block, Linux 6.12's fields in its order (those of
    /// mechanisms this kernel lacks, KSM, shmem, file THP and swap, are 0 as
    /// on a Linux without them).
    fn smaps_vma(&self, out: &mut String, vma: &Vma) {
        let t = self.tally(vma);
        let _ = writeln!(out, "{}", MapsLine(vma));
        // A hugetlb VMA's pages are its size, to the kernel and to the MMU (arm64 does
        // not override Linux's vma_mmu_pagesize).
        let page = vma.hugetlb().map_or(PAGE_SIZE, |h| h.size.bytes()) as u64;
        kb_line(out, "Size", vma.end.as_u64() - vma.start.as_u64());
        kb_line(out, "KernelPageSize", page);
        kb_line(out, "MMUPageSize", page);
        let locked = if vma.flags.locked { t.sharing.pss } else { 0 };
        show_smap(out, &t, false, locked);
        let _ = writeln!(out, "THPeligible:    {:>8}", thp_eligible(vma) as u8);
        let _ = writeln!(out, "VmFlags: {}", VmFlags(vma));
    }

    /// /proc/PID/status's memory lines (Linux's task_mem): the address space's size,
    /// resident set (all anonymous here), data, stack and page-table sizes are not
    /// kept apart from the rest, so only what is: VmSize, VmLck (the length of locked
    /// VMAs), VmRSS, RssAnon, RssFile, RssShmem, VmData (private writable, not stack),
    /// VmStk, VmSwap.
    pub fn status(&self) -> String {
        let (mut size, mut rss, mut data, mut stack) = (0, 0, 0, 0);
        for vma in self.vmas.iter() {
            let bytes = vma.end.as_u64() - vma.start.as_u64();
            size += bytes;
            rss += self.tally(vma).rss();
            match vma.kind {
                VmaKind::Stack => stack += bytes,
                _ if vma.prot.write => data += bytes,
                _ => {}
            }
        }
        let mut out = String::new();
        for (field, bytes) in [
            ("VmSize", size),
            ("VmLck", self.locked_bytes()),
            ("VmRSS", rss),
            ("RssAnon", rss),
            ("RssFile", 0),
            ("RssShmem", 0),
            ("VmData", data),
            ("VmStk", stack),
            ("VmSwap", 0),
        ] {
            let _ = writeln!(
                out,
                "{:<8}{:>8} kB",
                alloc::format!("{field}:"),
                bytes >> 10
            );
        }
        out
    }

    /// /proc/self/smaps: per VMA its maps line and Linux's fields.
    /// /proc/self/clear_refs (Linux's `clear_refs_write`): 1 clears the accessed flag
    /// of every mapping, 2 of anonymous ones, 3 of file ones (one test-and-clear per
    /// entry or contiguous block that has it); 4 clears soft-dirty state, which arm64
    /// does not have (Linux's walk clears nothing there either); 5 resets the peak RSS,
    /// which this kernel does not keep. Anything else is EINVAL.
    pub fn clear_refs(&mut self, kind: u64) -> Result<(), crate::uapi::Errno> {
        let (anon, file) = match kind {
            1 => (true, true),
            2 => (true, false),
            3 => (false, true),
            4 | 5 => return Ok(()),
            _ => return Err(crate::uapi::EINVAL),
        };
        let vmas: alloc::vec::Vec<(VirtAddr, VirtAddr)> = self
            .vmas
            .iter()
            .filter(|v| if v.file().is_some() { file } else { anon })
            .map(|v| (v.start, v.end))
            .collect();
        for (start, end) in vmas {
            let mut at = start;
            while at < end {
                let Some(leaf) = self.tables.get(at) else {
                    at = at.add(PAGE_SIZE);
                    continue;
                };
                if leaf.pte.is_young() {
                    self.tables.test_and_clear_young(at);
                }
                at = at.add(span(at, &leaf) * PAGE_SIZE);
            }
        }
        Ok(())
    }

    pub fn smaps(&self) -> String {
        let mut out = String::new();
        for vma in self.vmas.iter() {
            self.smaps_vma(&mut out, vma);
        }
        out
    }

    /// /proc/self/maps: one line per VMA, as Linux prints it.
    pub fn maps(&self) -> String {
        let mut out = String::new();
        for vma in self.vmas.iter() {
            let _ = writeln!(out, "{}", MapsLine(vma));
        }
        out
    }

    /// /proc/self/smaps_rollup: smaps' memory fields summed over every VMA, under one
    /// header spanning them all (Linux's show_smaps_rollup).
    pub fn smaps_rollup(&self) -> String {
        let mut total = Tally::default();
        let (mut first, mut last) = (u64::MAX, 0);
        let mut locked = 0;
        for vma in self.vmas.iter() {
            let t = self.tally(vma);
            if vma.flags.locked {
                locked += t.sharing.pss;
            }
            total.add(&t);
            first = first.min(vma.start.as_u64());
            last = last.max(vma.end.as_u64());
        }
        let mut out = String::new();
        if first == u64::MAX {
            return out;
        }
        let _ = writeln!(
            out,
            "{:<72} [rollup]",
            alloc::format!("{first:08x}-{last:08x} ---p 00000000 00:00 0")
        );
        show_smap(&mut out, &total, true, locked);
        out
    }
}

/// The memory fields of an smaps block or of smaps_rollup, which adds Pss by kind
/// (Linux's `__show_smap`): everything here is anonymous, hugetlb pages apart; the
/// fields of mechanisms this kernel lacks (KSM, shmem, file THP, swap) are 0. `locked`: the Pss of
/// locked VMAs (Linux's `pss_locked`).
fn show_smap(out: &mut String, t: &Tally, rollup: bool, locked: u64) {
    let s = &t.sharing;
    kb_line(out, "Rss", t.rss());
    kb_line(out, "Pss", s.pss);
    kb_line(out, "Pss_Dirty", s.pss_dirty);
    if rollup {
        kb_line(out, "Pss_Anon", s.pss);
        kb_line(out, "Pss_File", 0);
        kb_line(out, "Pss_Shmem", 0);
    }
    for (field, bytes) in [
        ("Shared_Clean", s.shared_clean),
        ("Shared_Dirty", s.shared_dirty),
        ("Private_Clean", s.private_clean),
        ("Private_Dirty", s.private_dirty),
        ("Referenced", s.referenced),
        ("Anonymous", t.rss()),
        ("KSM", 0),
        ("LazyFree", s.lazyfree),
        ("AnonHugePages", t.pmd),
        ("ShmemPmdMapped", 0),
        ("FilePmdMapped", 0),
        ("Shared_Hugetlb", t.shared_hugetlb),
        ("Private_Hugetlb", t.private_hugetlb),
        ("Swap", 0),
        ("SwapPss", 0),
        ("Locked", locked),
    ] {
        kb_line(out, field, bytes);
    }
}

/// `Field:   N kB`: the name padded to 16 columns, the kB to 8 (Linux's SEQ_PUT_DEC).
fn kb_line(out: &mut String, field: &str, bytes: u64) {
    let _ = writeln!(
        out,
        "{:<16}{:>8} kB",
        alloc::format!("{field}:"),
        bytes >> 10
    );
}

/// Whether a fault in `vma` may allocate a transparent huge page of some size: an
/// allowed order (policy and advice) whose aligned block fits in the VMA (smaps'
/// THPeligible, Linux's thp_vma_allowable_orders).
fn thp_eligible(vma: &Vma) -> bool {
    if vma.hugetlb().is_some() {
        return false;
    }
    let orders = super::mthp::POLICY.allowed_orders(vma.huge);
    super::mthp::MTHP_ORDERS.into_iter().any(|order| {
        let size = PAGE_SIZE << order;
        orders & (1 << order) != 0 && vma.start.align_up(size).add(size) <= vma.end
    })
}

fn perms(vma: &Vma) -> [char; 3] {
    let p = vma.prot;
    [(p.read, 'r'), (p.write, 'w'), (p.exec, 'x')].map(|(on, c)| if on { c } else { '-' })
}

/// `s` for a shared mapping, `p` for a private one, as Linux's maps.
fn share_char(v: &Vma) -> char {
    if v.is_shared() {
        's'
    } else {
        'p'
    }
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
            VmaKind::File(_) => "file",
            VmaKind::Hugetlb(_) => "hugetlb",
        };
        let s = share_char(v);
        write!(
            f,
            "{:x}-{:x} {r}{w}{x}{s} {kind}",
            v.start.as_u64(),
            v.end.as_u64()
        )
    }
}

/// A /proc/PID/maps line: `start-end rwxp offset dev inode`, then the name (if any)
/// at column 74, as Linux's show_vma_header_prefix pads it.
struct MapsLine<'a>(&'a Vma);

impl core::fmt::Display for MapsLine<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.0;
        let [r, w, x] = perms(v);
        let s = share_char(v);
        let (offset, dev, ino) = match v.file() {
            Some(m) => (m.index(v.start) * PAGE_SIZE as u64, "00:01", m.file.ino),
            None => (0, "00:00", 0),
        };
        let prefix = alloc::format!(
            "{:08x}-{:08x} {r}{w}{x}{s} {offset:08x} {dev} {ino}",
            v.start.as_u64(),
            v.end.as_u64()
        );
        match &v.kind {
            VmaKind::Stack => write!(f, "{prefix:<72} [stack]"),
            VmaKind::Heap => write!(f, "{prefix:<72} [heap]"),
            VmaKind::File(m) => write!(f, "{prefix:<72} {} (deleted)", m.file.name),
            // Linux's name for the hugetlbfs file behind MAP_HUGETLB.
            VmaKind::Hugetlb(_) => write!(f, "{prefix:<72} /anon_hugepage (deleted)"),
            VmaKind::Anon | VmaKind::Image => write!(f, "{prefix} "),
        }
    }
}

/// smaps' `VmFlags:` mnemonics, in Linux's order: every mapping may be made readable,
/// writable and executable (mr mw me), a shared one is sh and ms; the stack grows down
/// (gd); a userfaultfd registration is um; mlock is lo, MADV_DONTFORK dc, MLOCK_ONFAULT lf; a writable private mapping
/// is accounted (ac); MADV_WIPEONFORK is wf, MADV_HUGEPAGE hg, MADV_NOHUGEPAGE nh.
struct VmFlags<'a>(&'a Vma);

impl core::fmt::Display for VmFlags<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.0;
        for (on, name) in [
            (v.prot.read, "rd"),
            (v.prot.write, "wr"),
            (v.prot.exec, "ex"),
            (v.is_shared(), "sh"),
            (true, "mr"),
            (true, "mw"),
            (true, "me"),
            (v.is_shared(), "ms"),
            (v.kind == VmaKind::Stack, "gd"),
            (v.flags.userfault.is_some(), "um"),
            (v.flags.locked, "lo"),
            (v.flags.dontcopy, "dc"),
            (v.flags.lockonfault, "lf"),
            (v.prot.write && !v.is_shared(), "ac"),
            (v.flags.wipeonfork, "wf"),
            (v.huge == HugeHint::Huge, "hg"),
            (v.huge == HugeHint::NoHuge, "nh"),
        ] {
            if on {
                write!(f, "{name} ")?;
            }
        }
        Ok(())
    }
}
