//! Fork's copy of a range into a new address space, in one walk of the parent
//! (Linux's `copy_pte_range` with the contpte batch).
//!
//! The parent's entries are write-protected in place (keeping dirty state; a whole
//! contiguous block in one batched change, a 2 MiB block as one entry) and, table by
//! table, the child gets read-only entries for the same frames: runs of consecutive
//! pages through `set_ptes` (so aligned blocks inside one folio are contiguous in the
//! child too), 2 MiB blocks as blocks. Each run is reported to the caller for the
//! folio accounting once it is mapped in both.
//!
//! Two operations, one per address space, run nested: the child's completes (its
//! checks run) inside the parent's, whose TLBI for the write-protect is issued at its
//! end. Until then the parent is inside fork on this CPU, and no other thread shares
//! its address space (as Linux, which flushes the parent once at the end of
//! `dup_mmap`). Every entry the child gets is read-only, so no page becomes writable
//! in two places at any point.

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_SIZE, PAGE_SIZE};

use super::check::OpKind;
use super::contpte::{self, ContBlock, PteRun};
use super::ctx::{self, Ctx};
use super::cursor::{Cursor, Table};
use super::desc::{Change, Pte, PteAttrs, LAST_LEVEL};
use super::machine::PtMachine;
use super::{pmd, range_end, split_cut_blocks, MapError, PageTable, Segment};

impl<E: PtMachine> PageTable<E> {
    /// Write-protects the mapped pages of `[va, va + nr)` here and maps them read-only
    /// with `attrs` at the same addresses in `child`, whose range must be empty (a new
    /// address space). `shared(va, pa, pages)` is told every run of consecutive frames
    /// now mapped in both (`va` its address). Fails only if the child needs a table and none is left: what was
    /// copied by then stays mapped in both, and accounted.
    #[track_caller]
    pub fn fork_range(
        &mut self,
        child: &mut PageTable<E>,
        va: VirtAddr,
        nr: usize,
        attrs: PteAttrs,
        mut shared: impl FnMut(VirtAddr, PhysAddr, usize),
    ) -> Result<(), MapError> {
        let end = range_end(va, nr);
        self.op(OpKind::Wrprotect, va, end, |pctx, pcur| {
            split_cut_blocks(pctx, pcur, va, end)?;
            child.op(OpKind::Map, va, end, |cctx, ccur| {
                let mut copy = Copy {
                    cctx,
                    ccur,
                    attrs,
                    shared: &mut shared,
                };
                let mut result = Ok(());
                super::for_each_segment(pctx, pcur, va, end, |pctx, seg| {
                    if result.is_ok() {
                        result = match seg {
                            Segment::Ptes(run) => copy.ptes(pctx, run),
                            Segment::Block(slot) => {
                                let old = pmd::change_l2(pctx, slot, Change::Wrprotect);
                                copy.block(slot.va(), old.output_addr())
                            }
                        };
                    }
                });
                result
            })
        })
    }
}

/// The child's side of one `fork_range`.
struct Copy<'c, 'a, E: PtMachine, F: FnMut(VirtAddr, PhysAddr, usize)> {
    cctx: &'c mut Ctx<'a, E>,
    ccur: &'c mut Cursor,
    attrs: PteAttrs,
    shared: &'c mut F,
}

impl<'a, E: PtMachine, F: FnMut(VirtAddr, PhysAddr, usize)> Copy<'_, 'a, E, F> {
    /// A 2 MiB block at `va` mapping `pa`, write-protected in the parent already.
    fn block(&mut self, va: VirtAddr, pa: PhysAddr) -> Result<(), MapError> {
        let slot = ctx::slot_alloc(self.cctx, self.ccur, va, 2)?;
        pmd::map_l2(self.cctx, slot, Pte::block(pa, 2, self.attrs));
        (self.shared)(va, pa, 512);
        Ok(())
    }

    /// The parent's level-3 entries of `run`: write-protected (whole contiguous blocks
    /// in place), then mapped in the child run by run of consecutive frames.
    fn ptes<'p>(&mut self, pctx: &mut Ctx<'p, E>, run: PteRun<'p>) -> Result<(), MapError> {
        contpte::change_ptes(pctx, run, Change::Wrprotect);
        let mut table: Option<Table<'a>> = None;
        // The run of consecutive frames being gathered: first address, frame, pages.
        let mut open: Option<(VirtAddr, PhysAddr, usize)> = None;
        let mut at = run.start;
        while at < run.end {
            let blk = ContBlock::containing(run.table, at.align_down(CONT_SIZE));
            let whole = at == blk.va() && blk.va().add(CONT_SIZE) <= run.end;
            // A contiguous block is 16 consecutive frames (the architecture's rule,
            // which the checker enforces): its first entry says where all are.
            let first = blk.slot(0).load();
            let (pte, pages) = if whole && first.is_cont() {
                (first, CONT_SIZE / PAGE_SIZE)
            } else {
                (run.table.slot_of(at).load(), 1)
            };
            let pa = pte.output_addr();
            match open {
                _ if !pte.is_valid() => self.flush(&mut table, open.take())?,
                Some((s, p, n)) if s.add(n * PAGE_SIZE) == at && p.add(n * PAGE_SIZE) == pa => {
                    open = Some((s, p, n + pages));
                }
                _ => {
                    self.flush(&mut table, open.take())?;
                    open = Some((at, pa, pages));
                }
            }
            at = at.add(pages * PAGE_SIZE);
        }
        self.flush(&mut table, open)
    }

    /// Maps a gathered run in the child (its level-3 table found or made once per
    /// parent table) and reports it.
    fn flush(
        &mut self,
        table: &mut Option<Table<'a>>,
        run: Option<(VirtAddr, PhysAddr, usize)>,
    ) -> Result<(), MapError> {
        let Some((start, pa, pages)) = run else {
            return Ok(());
        };
        let t = match *table {
            Some(t) => t,
            None => *table.insert(ctx::slot_alloc(self.cctx, self.ccur, start, LAST_LEVEL)?.table),
        };
        let end = start.add(pages * PAGE_SIZE);
        debug_assert!(
            (0..pages).all(|i| !t.slot_of(start.add(i * PAGE_SIZE)).load().is_valid()),
            "fork_range into a live child entry"
        );
        contpte::set_ptes(
            self.cctx,
            PteRun {
                table: t,
                start,
                end,
            },
            Pte::page(pa, self.attrs),
        );
        (self.shared)(start, pa, pages);
        Ok(())
    }
}
