//! The folio accounting audit: every anonymous folio's per-page map counts, total map
//! count and reference count must equal what the page tables say (bug 9 of the notes:
//! accounting drift; a folio on the deferred-split queue holds one reference more).
//! It counts the entries of the given address spaces, which must be all the live ones,
//! and compares with the metadata of every allocated folio. It also checks who may
//! write a page: a writable (or DBM) user entry must map pages that are anon-exclusive
//! and mapped once (the mprotect-after-fork leak broke exactly this), or, for a file's
//! page-cache folio (`shmem`), be mapped by a shared mapping of it; a file folio's
//! references are its entries plus its cache's while cached. Pins (`pin`): each is
//! a reference, the head's `PINNED` is set exactly while a page has one, a pinned
//! folio is never lazyfree. Lazyfree: the
//! mark is only on the head of an anonymous folio, and every mapping of a marked
//! folio's first page has its entry (head, that address space, that address) on the
//! lazyfree list, so that reclaim can reach the folio through every current mapper
//! (`lazyfree`'s reverse map and its invariant); the list holds no more entries than
//! there are frames. The owners' `Mm` locks are held and no reclaim pass is running
//! on them (an entry in a pass's hands is off the list for that moment).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::aspace::Mm;
use super::env::MmEnv;
use super::folio::{self, Folio};
use super::frame::{flags, frames};
use super::lazyfree::Entry;
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Check every anonymous folio against the mappings of `mms`; returns how many folios
/// were checked, or the first disagreement.
pub fn check<'a, E: MmEnv + 'a>(mms: impl Iterator<Item = &'a Mm<E>>) -> Result<usize, String> {
    let mut mapped: BTreeMap<PhysAddr, i32> = BTreeMap::new();
    let mut writable = Vec::new();
    let mut writable_shared = None;
    let mut writable_file = None;
    let mut zero_writable = None;
    let listed = super::lazyfree::list_entries();
    if listed.len() > frames().managed_frames() {
        return Err(format!(
            "lazyfree list: {} entries, more than frames",
            listed.len()
        ));
    }
    let mut unlisted = None;
    for mm in mms {
        let owner = mm.tables.root();
        for vma in mm.vmas.iter() {
            let shared = vma.is_shared();
            mm.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let pages = if leaf.level == 2 { 512 } else { 1 };
                for k in 0..pages {
                    let pa = leaf.pa_of(va).add(k * PAGE_SIZE);
                    let at = va.add(k * PAGE_SIZE);
                    if zero::is_zero(pa) {
                        // No folio to account; never written.
                        if leaf.pte.is_writable() {
                            zero_writable.get_or_insert(at);
                        }
                        continue;
                    }
                    *mapped.entry(pa).or_default() += 1;
                    if heads_marked_folio(pa) && !is_listed(&listed, pa, owner, at) {
                        unlisted.get_or_insert((at, pa, owner));
                    }
                    let file = Folio::of(pa).is_file();
                    if file != shared && leaf.pte.is_writable() && (shared || file) {
                        // A file's page writable in a private mapping, or an
                        // anonymous page in a shared one.
                        writable_file.get_or_insert((va, pa, shared));
                    } else if file {
                        // Written by every mapper of the file: no exclusivity.
                    } else if leaf.pte.is_writable() && !folio::pages_exclusive(pa, 1) {
                        writable_shared.get_or_insert((va, pa));
                    } else if leaf.pte.is_writable() {
                        writable.push(pa);
                    }
                }
            });
        }
    }
    if let Some(va) = zero_writable {
        return Err(format!("{va:?} maps the zero page writable"));
    }
    if let Some((va, pa)) = writable_shared {
        return Err(format!(
            "{va:?} maps {pa} writable, but the page is not anon-exclusive"
        ));
    }
    if let Some((va, pa, shared)) = writable_file {
        return Err(format!(
            "{va:?} maps {pa} writable in a {} mapping, but the page is {}",
            if shared { "shared" } else { "private" },
            if shared { "anonymous" } else { "a file's" }
        ));
    }
    if let Some(pa) = writable.iter().find(|&&pa| mapped[&pa] != 1) {
        return Err(format!("{pa} is writable in one mapping of {}", mapped[pa]));
    }
    if let Some((va, pa, owner)) = unlisted {
        return Err(format!(
            "lazyfree folio {pa} is mapped at {va:?} by {owner}, but no lazyfree entry names that mapping"
        ));
    }
    let mut checked = 0;
    let mut err = None;
    frames().for_each_block(|head, order| {
        if err.is_some() {
            return;
        }
        let m = frames().meta(head);
        if m.test(flags::LAZYFREE) && !m.test(flags::ANON) {
            err = Some(format!("folio {head} (order {order}) is lazyfree but not anonymous"));
            return;
        }
        let file = m.test(flags::FILE);
        if !m.test(flags::ANON) && !file {
            return;
        }
        let f = Folio::of(head);
        let both = flags::ALL_EXCLUSIVE | flags::ALL_SHARED;
        let exclusive = (0..1usize << order).any(|i| frames().meta(f.page(i)).test(flags::ANON_EXCLUSIVE));
        if file && (m.flags() & (both | flags::DEFERRED | flags::LAZYFREE) != 0 || exclusive) {
            err = Some(format!("file folio {head} (order {order}) has anonymous state {:#x}", m.flags()));
            return;
        }
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
            if !file && want > 0 && f.pins(i) > 0 && (want > 1 || !f.is_exclusive(i)) {
                err = Some(format!("folio {head} (order {order}) page {i}: pinned, mapped {want} times, exclusive: {}", f.is_exclusive(i)));
                return;
            }
            total += want;
        }
        let queued = f.is_deferred() as u32;
        let cached = m.test(flags::CACHED) as u32;
        let pins: u32 = (0..1usize << order).map(|i| f.pins(i) as u32).sum();
        if f.is_pinned() != (pins > 0) || (pins > 0 && f.is_lazyfree()) {
            err = Some(format!("folio {head} (order {order}): {pins} pins, flags {:#x}", m.flags()));
            return;
        }
        if f.total_mapcount() != total || f.refcount() != total as u32 + queued + cached + pins {
            err = Some(format!("folio {head} (order {order}): total map count {}, refcount {} (queued: {queued}, cached: {cached}, pins: {pins}), but {total} entries map it", f.total_mapcount(), f.refcount()));
        }
        checked += 1;
    });
    if let Some(e) = err {
        return Err(e);
    }
    match mapped.keys().next() {
        Some(pa) => Err(format!(
            "{pa} is mapped but belongs to no anonymous or file folio"
        )),
        None => Ok(checked),
    }
}

/// Whether `pa` is the head of a lazyfree folio.
fn heads_marked_folio(pa: PhysAddr) -> bool {
    let m = frames().meta(pa);
    m.test(flags::HEAD) && m.test(flags::LAZYFREE)
}

/// Whether the (sorted) lazyfree list has the entry of `owner`'s mapping of `head` at
/// `va`.
fn is_listed(listed: &[Entry], head: PhysAddr, owner: PhysAddr, va: VirtAddr) -> bool {
    listed.binary_search(&Entry { head, owner, va }).is_ok()
}
