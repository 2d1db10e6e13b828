//! fork: the child's copy of an address space. The parent is write-protected first,
//! one batched call per VMA, then its leaves stream into the child: runs of pages on
//! consecutive frames are mapped with one call, 2 MiB blocks stay blocks, contiguous
//! blocks stay folded; every page mapped in both is shared (not exclusive).

use super::aspace::{pages, pte_attrs, Errno, Mm, MmEnv, PMD};
use super::folio;
use super::pgtable::PteAttrs;
use super::vma::VmProt;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::ENOMEM;

impl<E: MmEnv> Mm<E> {
    /// The child's copy at fork: the same VMAs, the same folios mapped read-only in
    /// both. The parent is write-protected first, one batched call per VMA whatever
    /// the VMA's flags say (an entry may allow more than its VMA while a block is being
    /// split: what counts is what the entries allow), so no page is shared while an
    /// entry can still write it. 2 MiB blocks stay blocks, runs of consecutive pages
    /// are mapped in the child with one call.
    pub fn fork(&mut self) -> Result<Mm<E>, Errno> {
        let mut child = Mm::new_in(self.env())?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        let mut next = VirtAddr(0);
        while let Some(vma) = self.vmas.next_from(next).copied() {
            next = vma.end;
            child.vmas.insert(vma).expect("parent VMAs do not overlap");
            self.tables
                .wrprotect(vma.start, pages(vma.start, vma.end))
                .map_err(|_| ENOMEM)?;
            let attrs = pte_attrs(VmProt {
                write: false,
                ..vma.prot
            });
            // Leaves stream in address order: a run of pages on consecutive frames is
            // mapped in the child with one call when it ends, a PMD block at once.
            let mut run: Option<Run> = None;
            let mut ok = true;
            self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let pa = leaf.pa_of(va);
                match &mut run {
                    Some(r) if leaf.level == 3 && r.extends_to(va, pa) => r.pages += 1,
                    _ => {
                        ok &= run.take().is_none_or(|r| r.map_shared(&mut child, attrs));
                        if leaf.level == 2 {
                            // Blocks never straddle a VMA edge (module invariant).
                            let inside = va >= vma.start && va.add(PMD as usize) <= vma.end;
                            let mapped = inside && child.tables.map_pmd(va, pa, attrs).is_ok();
                            if mapped {
                                share(pa, 512);
                            }
                            ok &= mapped;
                        } else {
                            run = Some(Run { va, pa, pages: 1 });
                        }
                    }
                }
            });
            ok &= run.is_none_or(|r| r.map_shared(&mut child, attrs));
            if !ok {
                return Err(ENOMEM);
            }
        }
        Ok(child)
    }
}

/// Pages mapped at consecutive addresses on consecutive frames (fork batches them).
struct Run {
    va: VirtAddr,
    pa: PhysAddr,
    pages: usize,
}

impl Run {
    fn extends_to(&self, va: VirtAddr, pa: PhysAddr) -> bool {
        self.va.add(self.pages * PAGE_SIZE) == va && self.pa.add(self.pages * PAGE_SIZE) == pa
    }

    /// Map the run in `child` with one call and account the shared pages.
    fn map_shared<E: MmEnv>(self, child: &mut Mm<E>, attrs: PteAttrs) -> bool {
        let ok = child
            .tables
            .map(self.va, self.pa, self.pages, attrs)
            .is_ok();
        if ok {
            share(self.pa, self.pages);
        }
        ok
    }
}

/// Account `n` more mappings of the consecutive pages from `pa` (fork), which are now
/// shared: not exclusive to either address space.
fn share(pa: PhysAddr, n: usize) {
    folio::for_each_folio(pa, n, |f, first, m| f.share(first, m));
}
