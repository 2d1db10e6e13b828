//! fork: the child's copy of an address space. Each VMA is copied in 64 MiB batches
//! (`aspace::WIDE_BATCH_PAGES`, as mprotect: fork collects nothing), one page-table
//! call per batch (`pgtable/fork.rs`): one walk of the parent write-protects its
//! entries and maps the same frames read-only in the child, 2 MiB blocks as blocks,
//! contiguous blocks folded; every page mapped in both is shared (not exclusive),
//! a whole folio in one step (`folio`: entire map count, `ALL_SHARED`). Batches keep
//! what one call costs bounded whatever the VMA's length: the test build's checker
//! keeps state per 64 KiB block an operation touches, and a 256 MiB VMA copied in one
//! operation ran the kernel heap out. A lazyfree folio's new mapping gets its entry on
//! the lazyfree list (`lazyfree`'s fork), batch by batch.
//!
//! The VMA flags, as Linux's `dup_mmap`: a MADV_DONTFORK VMA is not copied (the child
//! has a hole there), so a folio in it is never shared and the parent's next write
//! fault finds it still exclusive; a MADV_WIPEONFORK VMA is copied without its pages
//! (the child reads zeros and faults in frames of its own) and keeps the flag; the
//! child inherits no lock (VM_LOCKED and VM_LOCKONFAULT are cleared, and the address
//! space's `def_flags` start empty).

use super::aspace::{batches_of, pages, pte_attrs, Errno, Mm, MmEnv, WIDE_BATCH_PAGES};
use super::vma::{VmProt, Vma, VmaFlags, VmaKind};
use super::{folio, zero};
use super::{PhysAddr, VirtAddr};
use crate::uapi::{EINVAL, ENOMEM, MADV_DOFORK, MADV_DONTFORK, MADV_KEEPONFORK, MADV_WIPEONFORK};

impl<E: MmEnv> Mm<E> {
    /// The child's copy at fork: the same VMAs, the same folios mapped read-only in
    /// both. Every parent entry is write-protected whatever its VMA's flags say (an
    /// entry may allow more than its VMA while a block is being split: what counts is
    /// what the entries allow) before the child maps its frame, so no page is shared
    /// while an entry can still write it.
    pub fn fork(&mut self) -> Result<Mm<E>, Errno> {
        let mut child = Mm::new_in(self.env())?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        let mut next = VirtAddr(0);
        while let Some(vma) = self.vmas.next_from(next).cloned() {
            next = vma.end;
            if vma.flags.dontcopy {
                continue;
            }
            let flags = VmaFlags {
                locked: false,
                lockonfault: false,
                ..vma.flags
            };
            child
                .vmas
                .insert(Vma {
                    flags,
                    kind: vma.kind.forked(),
                    ..vma.clone()
                })
                .expect("parent VMAs do not overlap");
            // A shared file mapping's pages are the file's: the child faults them in
            // from its page cache, as Linux copies no entries of a shared mapping.
            if vma.flags.wipeonfork || vma.is_shared() {
                continue;
            }
            if vma
                .hugetlb()
                .is_some_and(|h| h.size.bytes() > super::addr::PMD_SIZE)
            {
                self.hugetlb_fork(&mut child, &vma)?;
                continue;
            }
            let attrs = pte_attrs(VmProt {
                write: false,
                ..vma.prot
            });
            for (a, b) in batches_of(vma.start, vma.end, WIDE_BATCH_PAGES) {
                let mut lazyfree = false;
                let r =
                    self.tables
                        .fork_range(&mut child.tables, a, pages(a, b), attrs, |pa, n| {
                            lazyfree |= share(pa, n)
                        });
                // After a failure the child is dropped with what it maps.
                r.map_err(|_| ENOMEM)?;
                if lazyfree {
                    self.fork_lazyfree(&mut child, a, b);
                }
            }
        }
        Ok(child)
    }
}

impl<E: MmEnv> Mm<E> {
    /// madvise MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK or MADV_KEEPONFORK of
    /// `[start, end)`, a piece of `vma`: Linux's `madvise_vma_behavior`. Wipe-on-fork
    /// is for private anonymous memory only: a file mapping (the executable's is one
    /// on Linux) is EINVAL.
    pub(super) fn madvise_fork(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        vma: &Vma,
        advice: u64,
    ) -> Result<(), Errno> {
        if advice == MADV_WIPEONFORK && (vma.kind == VmaKind::Image || vma.file().is_some()) {
            return Err(EINVAL);
        }
        self.change_flags(start, end, |f| match advice {
            MADV_DONTFORK => f.dontcopy = true,
            MADV_DOFORK => f.dontcopy = false,
            MADV_WIPEONFORK => f.wipeonfork = true,
            MADV_KEEPONFORK => f.wipeonfork = false,
            _ => unreachable!("madvise passes the fork advice only"),
        })
    }
}

/// Account `n` more mappings of the consecutive pages from `pa` (fork), which are now
/// shared: not exclusive to either address space. Whether a folio among them is
/// lazyfree (its new mapping needs an entry: `lazyfree`'s fork). The zero page is no
/// folio: its entries are copied and nothing is accounted (`zero`).
fn share(pa: PhysAddr, n: usize) -> bool {
    let mut lazyfree = false;
    zero::account(pa, n, true, |pa, n| {
        folio::for_each_folio(pa, n, |f, first, m| lazyfree |= f.share(first, m))
    });
    lazyfree
}
