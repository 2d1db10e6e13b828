//! Collapse by copy: a new folio of the block's order, the mapped pages copied into
//! it (holes stay zero), the block remapped with it in one batched `set_ptes`
//! (`PageTable::map`; a 2 MiB block then becomes one level-2 entry through
//! `collapse_l2`), the old pages' references dropped.
//!
//! Past the point where the old entries are gone nothing may fail, or the block's
//! data would be lost: the remap therefore never needs a page table. The block is
//! unmapped and remapped in two steps, all but its last page and then the last page,
//! so the level-3 table always holds an entry and is never freed and reallocated.

use core::sync::atomic::Ordering;

use super::Fail;
use crate::mm::aspace::Mm;
use crate::mm::folio::{self, Folio};
use crate::mm::install::{pte_attrs, release};
use crate::mm::machine::MmMachine;
use crate::mm::mthp::{self, PMD_ORDER};
use crate::mm::vma::Vma;
use crate::mm::{VirtAddr, PAGE_SIZE};

impl<E: MmMachine> Mm<E> {
    /// Copy the block of `order` at `base` (aligned, inside `vma` and one level-3
    /// table) into a new folio and map that instead.
    pub(super) fn collapse_copy(
        &mut self,
        base: VirtAddr,
        order: usize,
        vma: &Vma,
    ) -> Result<(), Fail> {
        let n = 1usize << order;
        let stats = mthp::stats(order);
        let Some(new) = folio::alloc_anon(self.env(), order) else {
            stats.collapse_alloc_failed.fetch_add(1, Ordering::Relaxed);
            return Err(Fail::NoMemory);
        };
        stats.collapse_alloc.fetch_add(1, Ordering::Relaxed);
        // From here a store by the process faults and waits for our lock (module docs
        // of `collapse`: writes during a collapse).
        self.tables
            .wrprotect(base, n)
            .expect("a block inside one table cuts no 2 MiB block");
        let env = self.tables.env();
        self.tables
            .for_each_leaf(base, base.add(n * PAGE_SIZE), |va, leaf| {
                let i = va.offset_from(base) / PAGE_SIZE;
                env.copy_pages(leaf.pa_of(va), new.page(i), 1);
            });
        // Exclusive before any writable entry maps the pages (who may write a page).
        // The lock is not held across `release`, which locks the old folios: only
        // this address space, whose lock we hold, can reach the new one meanwhile.
        Folio::lock(new.head()).set_exclusive(0, n, true);
        let attrs = pte_attrs(vma.prot);
        let last = base.add((n - 1) * PAGE_SIZE);
        for (va, first, count) in [(base, 0, n - 1), (last, n - 1, 1)] {
            let old = self
                .tables
                .unmap(va, count)
                .expect("a block inside one table cuts no 2 MiB block");
            release(old);
            self.tables
                .map(va, new.page(first), count, attrs)
                .expect("the table holds an entry throughout: no table is needed");
        }
        let f = Folio::lock(new.head());
        f.map(0, n);
        drop(f.put(1));
        if order == PMD_ORDER {
            let _one = Folio::lock(new.head());
            self.tables.collapse_l2(base);
        }
        if vma.prot.write && !self.env().features().hw_dirty {
            // As a write fault maps: dirty, so the next store does not fault for it.
            self.tables
                .make_writable(base, n)
                .expect("the block is mapped whole: nothing to split");
        }
        Ok(())
    }
}
