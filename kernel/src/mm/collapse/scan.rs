//! One block: what its entries map ([`Survey`]) and what to do about it
//! (`Mm::collapse_block`); one 2 MiB window: the bitmap of occupied entries and the
//! binary-tree search of orders (`Mm::collapse_window`, see the module docs of
//! `collapse`).

use core::sync::atomic::Ordering;

use super::{Collapsed, Fail, Limits, PAGES_COLLAPSED};
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::aspace::Mm;
use crate::mm::folio::{self, Folio};
use crate::mm::machine::MmMachine;
use crate::mm::mthp::{self, MTHP_ORDERS, PMD_ORDER};
use crate::mm::pgtable::{ContMode, Prot};
use crate::mm::vma::{Vma, VmaKind};
use crate::mm::zero;
use crate::mm::{PhysAddr, VirtAddr, PAGE_SIZE};

/// What the entries of one block map, from one walk.
#[derive(Clone, Copy, Debug)]
pub(super) struct Survey {
    /// Pages mapped.
    pub present: usize,
    /// A 2 MiB block entry maps the block (or contains it).
    pub pmd_mapped: bool,
    /// The frame page 0 would map if the mapped pages are one run in order: page `i`
    /// maps `base_pa + i` for every mapped `i`, `base_pa` aligned to the block.
    pub base_pa: Option<PhysAddr>,
    /// Every 64 KiB block inside is folded (true for blocks under 64 KiB, and when
    /// the tables never fold: contpte=off).
    pub folded: bool,
    /// Pages marked anon-exclusive.
    pub exclusive: usize,
    /// Pages mapped by more than one entry (another address space maps them too).
    pub shared: usize,
    /// Pages of a lazyfree folio mapped by a clean entry: memory reclaim may discard.
    pub lazyfree: usize,
    /// Pages of folios someone holds beyond their mappings (a pin; Linux's
    /// `is_refcount_suitable` fails for them).
    pub held: usize,
    /// The permissions of the mapped entries, if they all agree.
    pub prot: Option<Prot>,
}

impl Survey {
    /// Every page is mapped, in order, from an aligned frame.
    pub fn in_order(&self, n: usize) -> Option<PhysAddr> {
        self.base_pa.filter(|_| self.present == n)
    }

    /// Already mapped as one folio of at least `order`, folded: nothing to gain.
    pub fn is_collapsed(&self, order: usize) -> bool {
        if self.pmd_mapped {
            return true;
        }
        let Some(pa) = self.in_order(1 << order) else {
            return false;
        };
        order < PMD_ORDER && self.folded && folio::span_of(pa).contains(pa, PAGE_SIZE << order)
    }
}

impl<E: MmMachine> Mm<E> {
    /// Survey the `n` pages from `base` (aligned to `n` pages, inside one 2 MiB).
    pub(super) fn survey(&self, base: VirtAddr, n: usize) -> Survey {
        let mut s = Survey {
            present: 0,
            pmd_mapped: false,
            base_pa: None,
            folded: true,
            exclusive: 0,
            shared: 0,
            lazyfree: 0,
            held: 0,
            prot: None,
        };
        let mut in_order = true;
        let mut prot_agrees = true;
        // Without the Contiguous bit (contpte=off) nothing is ever folded.
        let folds = self.tables.mode() != ContMode::Off;
        let end = base.add(n * PAGE_SIZE);
        self.tables.for_each_leaf(base, end, |va, leaf| {
            if leaf.level != 3 {
                s.pmd_mapped = true;
                return;
            }
            let pa = leaf.pa_of(va);
            if zero::is_zero(pa) {
                // Counted as an empty entry (khugepaged's none_or_zero): the copy
                // reads its zeros and the unmap accounts nothing for it.
                return;
            }
            let i = va.offset_from(base) / PAGE_SIZE;
            let want = PhysAddr::new(pa.as_u64().wrapping_sub((i * PAGE_SIZE) as u64));
            match s.base_pa {
                None if s.present == 0 => s.base_pa = Some(want),
                Some(b) if b == want => {}
                _ => in_order = false,
            }
            let prot = leaf.pte.prot();
            match s.prot {
                None if s.present == 0 => s.prot = Some(prot),
                Some(p) if p == prot => {}
                _ => prot_agrees = false,
            }
            s.folded &= !folds || n < CONT_SIZE / PAGE_SIZE || leaf.pte.is_cont();
            let f = Folio::of(pa);
            let k = f.index(pa);
            s.exclusive += f.is_exclusive(k) as usize;
            s.shared += (f.mapcount(k) > 1) as usize;
            s.lazyfree += (f.is_lazyfree() && !leaf.pte.is_dirty()) as usize;
            s.held += (f.refcount() > f.expected_refs()) as usize;
            s.present += 1;
        });
        let aligned = s.base_pa.is_some_and(|b| b.is_aligned(n * PAGE_SIZE));
        if !in_order || !aligned {
            s.base_pa = None;
        }
        if !prot_agrees {
            s.prot = None;
        }
        s
    }

    /// Collapse the block of `order` at `base` (aligned, inside `vma` and one 2 MiB):
    /// in place if its entries already map one aligned run, else by copy within
    /// `limits`.
    pub(super) fn collapse_block(
        &mut self,
        base: VirtAddr,
        order: usize,
        vma: &Vma,
        limits: &Limits,
    ) -> Result<Collapsed, Fail> {
        let n = 1usize << order;
        let s = self.survey(base, n);
        if s.is_collapsed(order) {
            return Ok(Collapsed::Already);
        }
        if s.present == 0 {
            return Err(Fail::Empty);
        }
        // The thread leaves clean lazyfree pages alone, as Linux 7.x's khugepaged
        // (SCAN_PAGE_LAZYFREE): a collapse would turn memory reclaim may discard into
        // memory it must keep. MADV_COLLAPSE is asked for and takes them.
        if limits.thread && s.lazyfree > 0 {
            crate::mm::lazyfree::STATS
                .collapse_skipped
                .fetch_add(1, Ordering::Relaxed);
            return Err(Fail::Lazyfree);
        }
        let stats = mthp::stats(order);
        if let Some(pa) = s.in_order(n) {
            // David Hildenbrand's rule: all exclusive or none, never a mix.
            if s.exclusive == n || s.exclusive == 0 {
                match self.collapse_in_place(base, order, pa, &s, vma) {
                    Ok(()) => {
                        stats.collapse_in_place.fetch_add(1, Ordering::Relaxed);
                        self.collapsed(limits);
                        return Ok(Collapsed::InPlace);
                    }
                    Err(Fail::Busy) => return Err(Fail::Busy),
                    Err(_) => {}
                }
            }
        }
        let none = n - s.present;
        // A hole of a VMA registered with userfaultfd is its handler's to fill, never
        // the collapse's (Linux's `userfaultfd_armed` check, thread and MADV_COLLAPSE).
        let allowed = match vma.flags.userfault {
            Some(_) => Some(0),
            None => limits.none_allowed(order),
        };
        if allowed.is_none_or(|max| none > max) {
            stats
                .collapse_exceed_none_pte
                .fetch_add(1, Ordering::Relaxed);
            return Err(Fail::ExceedNone);
        }
        if s.shared > limits.shared_allowed(order) {
            stats
                .collapse_exceed_shared_pte
                .fetch_add(1, Ordering::Relaxed);
            return Err(Fail::ExceedShared);
        }
        if s.held > 0 {
            // `pin`'s rule 3: the copy would leave the pin on the old page.
            stats.collapse_exceed_pinned.fetch_add(1, Ordering::Relaxed);
            return Err(Fail::Pinned);
        }
        self.collapse_copy(base, order, vma)?;
        self.collapsed(limits);
        Ok(Collapsed::Copied)
    }

    fn collapsed(&self, limits: &Limits) {
        if limits.thread {
            PAGES_COLLAPSED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The collapse thread's work on the 2 MiB window at `window` (aligned) of `vma`:
    /// the binary-tree search of the orders `allowed` (a mask). Returns what it did.
    pub fn collapse_window(
        &mut self,
        window: VirtAddr,
        vma: &Vma,
        allowed: u16,
        limits: &Limits,
    ) -> WindowScan {
        let mut out = WindowScan::default();
        if !collapsible(vma) || allowed == 0 || self.thp_disabled {
            return out;
        }
        let occupied = self.occupied(window);
        // (offset in pages, order): at most one pending sibling per level.
        let mut stack = [(0usize, 0usize); PMD_ORDER + 1];
        let mut depth = 0;
        stack[depth] = (0, PMD_ORDER);
        depth += 1;
        while depth > 0 {
            depth -= 1;
            let (off, order) = stack[depth];
            let n = 1usize << order;
            let base = window.add(off * PAGE_SIZE);
            let inside =
                base >= vma.start && base < vma.end && vma.end.offset_from(base) >= n * PAGE_SIZE;
            let present = count_ones(&occupied, off, n);
            if present == 0 {
                continue;
            }
            let mut descend = true;
            if inside && allowed & (1 << order) != 0 {
                out.blocks += 1;
                match self.collapse_block(base, order, vma, limits) {
                    Ok(Collapsed::Already) => descend = false,
                    Ok(Collapsed::InPlace) => {
                        out.in_place += 1;
                        descend = false;
                    }
                    Ok(Collapsed::Copied) => {
                        out.copied += 1;
                        descend = false;
                    }
                    Err(Fail::NoMemory) => out.alloc_failed = true,
                    Err(_) => {}
                }
            }
            if descend && order > *MTHP_ORDERS.start() {
                let half = n / 2;
                stack[depth] = (off + half, order - 1);
                stack[depth + 1] = (off, order - 1);
                depth += 2;
            }
        }
        out
    }

    /// Bitmap of the mapped pages of the 2 MiB window at `window`.
    fn occupied(&self, window: VirtAddr) -> [u64; 8] {
        let mut bits = [0u64; 8];
        self.tables
            .for_each_leaf(window, window.add(PMD_SIZE), |va, leaf| {
                if leaf.level != 3 {
                    bits = [u64::MAX; 8];
                    return;
                }
                if zero::is_zero(leaf.pa_of(va)) {
                    return;
                }
                let i = va.offset_from(window) / PAGE_SIZE;
                bits[i / 64] |= 1 << (i % 64);
            });
        bits
    }
}

/// What one window's scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowScan {
    /// Blocks tried.
    pub blocks: usize,
    pub in_place: usize,
    pub copied: usize,
    /// An allocation failed (the thread then sleeps `alloc_sleep_millisecs`).
    pub alloc_failed: bool,
}

/// Whether collapse may touch the VMA at all: anonymous memory without
/// MADV_NOHUGEPAGE (the executable's segments are not anonymous on Linux; a file
/// mapping's folios are its page cache's, which has no collapse here: Linux's
/// `collapse_file` is not built).
pub(super) fn collapsible(vma: &Vma) -> bool {
    vma.kind != VmaKind::Image
        && vma.file().is_none()
        && vma.hugetlb().is_none()
        && vma.huge != crate::mm::mthp::HugeHint::NoHuge
}

/// Set bits of `bits` in `[off, off + n)`.
fn count_ones(bits: &[u64; 8], off: usize, n: usize) -> usize {
    (off..off + n)
        .filter(|&i| bits[i / 64] & (1 << (i % 64)) != 0)
        .count()
}
