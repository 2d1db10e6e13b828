//! The folio accounting audit: every anonymous folio's per-page map counts, total map
//! count and reference count must equal what the page tables say (bug 9 of the notes:
//! accounting drift; a folio on the deferred-split queue holds one reference more).
//! It counts the entries of the given address spaces, which must be all the live ones,
//! and compares with the metadata of every allocated folio. It also checks who may
//! write a page: a writable (or DBM) user entry must map pages that are anon-exclusive
//! and mapped once (the mprotect-after-fork leak broke exactly this). Lazyfree: the
//! mark is only on the head of an anonymous folio, and a marked folio that is exclusive
//! to one mapping has its entry (head, owner, address) on the lazyfree list, so that
//! reclaim can find it (`lazyfree`'s reverse map); the list holds no more entries than
//! there are frames.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::aspace::{Mm, MmEnv};
use super::folio::{self, Folio};
use super::frame::{flags, frames};
use super::{PhysAddr, PAGE_SIZE};

/// Check every anonymous folio against the mappings of `mms`; returns how many folios
/// were checked, or the first disagreement.
pub fn check<'a, E: MmEnv + 'a>(mms: impl Iterator<Item = &'a Mm<E>>) -> Result<usize, String> {
    let mut mapped: BTreeMap<PhysAddr, i32> = BTreeMap::new();
    let mut writable = Vec::new();
    let mut writable_shared = None;
    for mm in mms {
        for vma in mm.vmas.iter() {
            mm.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let pages = if leaf.level == 2 { 512 } else { 1 };
                for k in 0..pages {
                    let pa = leaf.pa_of(va).add(k * PAGE_SIZE);
                    *mapped.entry(pa).or_default() += 1;
                    if leaf.pte.is_writable() && !folio::pages_exclusive(pa, 1) {
                        writable_shared.get_or_insert((va, pa));
                    }
                    if leaf.pte.is_writable() {
                        writable.push(pa);
                    }
                }
            });
        }
    }
    if let Some((va, pa)) = writable_shared {
        return Err(format!(
            "{va:?} maps {pa} writable, but the page is not anon-exclusive"
        ));
    }
    if let Some(pa) = writable.iter().find(|&&pa| mapped[&pa] != 1) {
        return Err(format!("{pa} is writable in one mapping of {}", mapped[pa]));
    }
    let mut checked = 0;
    let mut err = None;
    let listed = super::lazyfree::list_heads();
    if listed.len() > frames().managed_frames() {
        return Err(format!(
            "lazyfree list: {} entries, more than frames",
            listed.len()
        ));
    }
    frames().for_each_block(|head, order| {
        if err.is_some() {
            return;
        }
        let m = frames().meta(head);
        if m.test(flags::LAZYFREE) && !m.test(flags::ANON) {
            err = Some(format!("folio {head} (order {order}) is lazyfree but not anonymous"));
            return;
        }
        if !m.test(flags::ANON) {
            return;
        }
        let f = Folio::of(head);
        let both = flags::ALL_EXCLUSIVE | flags::ALL_SHARED;
        if m.flags() & both == both || (order == 0 && m.flags() & both != 0) {
            err = Some(format!("folio {head} (order {order}): exclusivity override {:#x}", m.flags() & both));
            return;
        }
        if f.entire_mapcount() < 0 || (0..1usize << order).any(|i| frames().meta(f.page(i)).mapcount.load(Ordering::Relaxed) < 0) {
            err = Some(format!("folio {head} (order {order}): negative map count (entire {})", f.entire_mapcount()));
            return;
        }
        let mut total = 0;
        for i in 0..1usize << order {
            let want = mapped.remove(&f.page(i)).unwrap_or(0);
            if f.mapcount(i) != want {
                err = Some(format!("folio {head} (order {order}) page {i}: map count {} but {want} entries map it", f.mapcount(i)));
                return;
            }
            total += want;
        }
        let queued = f.is_deferred() as u32;
        let exclusive = (0..1usize << order).all(|i| f.mapcount(i) == 1 && f.is_exclusive(i));
        if f.is_lazyfree() && exclusive && !queued_once(&listed, head) {
            err = Some(format!("folio {head} (order {order}) is lazyfree and exclusive but not on the lazyfree list"));
            return;
        }
        if f.total_mapcount() != total || f.refcount() != total as u32 + queued {
            err = Some(format!("folio {head} (order {order}): total map count {}, refcount {} (queued: {queued}), but {total} entries map it", f.total_mapcount(), f.refcount()));
        }
        checked += 1;
    });
    if let Some(e) = err {
        return Err(e);
    }
    match mapped.keys().next() {
        Some(pa) => Err(format!("{pa} is mapped but belongs to no anonymous folio")),
        None => Ok(checked),
    }
}

/// Whether `head` is among the (sorted) heads of the lazyfree list.
fn queued_once(listed: &[PhysAddr], head: PhysAddr) -> bool {
    listed.binary_search(&head).is_ok()
}
