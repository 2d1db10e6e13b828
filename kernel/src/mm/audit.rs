//! The folio accounting audit: every anonymous folio's per-page map counts, total map
//! count and reference count must equal what the page tables say (bug 9 of `docs/notes/contpte.md`:
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
use super::folio::{self, Folio};
use super::frame::{flags, frames};
use super::lazyfree::Entry;
use super::machine::MmMachine;
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Check every anonymous folio against the mappings of `mms`; returns how many folios
/// were checked, or the first disagreement.
pub fn check<'a, E: MmMachine + 'a>(mms: impl Iterator<Item = &'a Mm<E>>) -> Result<usize, String> {
    let mut mapped = count_mappings(mms)?;
    let mut checked = 0;
    let mut err = None;
    frames().for_each_block(|head, order| {
        if err.is_none() {
            match check_folio(head, order, &mut mapped) {
                Ok(true) => checked += 1,
                Ok(false) => {}
                Err(e) => err = Some(e),
            }
        }
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

/// The entries of `mms` that map each frame, once the rules on single entries hold:
/// who may write a page (anon-exclusive and mapped once, or a file's page in a shared
/// mapping; never the zero page) and lazyfree's reverse map (every mapping of a
/// marked folio's first page is listed).
fn count_mappings<'a, E: MmMachine + 'a>(
    mms: impl Iterator<Item = &'a Mm<E>>,
) -> Result<BTreeMap<PhysAddr, i32>, String> {
    let listed = super::lazyfree::list_entries();
    if listed.len() > frames().managed_frames() {
        return Err(format!(
            "lazyfree list: {} entries, more than frames",
            listed.len()
        ));
    }
    let mut seen = Seen::default();
    for mm in mms {
        let owner = mm.tables.root();
        for vma in mm.vmas.iter() {
            let shared = vma.is_shared();
            mm.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let pages = if leaf.level == 2 { 512 } else { 1 };
                for k in 0..pages {
                    let at = va.add(k * PAGE_SIZE);
                    let pa = leaf.pa_of(va).add(k * PAGE_SIZE);
                    seen.entry(at, pa, leaf.pte.is_writable(), shared);
                    if heads_marked_folio(pa) && !is_listed(&listed, pa, owner, at) {
                        seen.unlisted.get_or_insert((at, pa, owner));
                    }
                }
            });
        }
    }
    seen.verdict()
}

/// What the walk of every entry found: the map count of each frame, and the first
/// entry that breaks each rule.
#[derive(Default)]
struct Seen {
    mapped: BTreeMap<PhysAddr, i32>,
    /// Frames of writable entries of anonymous pages: each must be mapped once.
    writable: Vec<PhysAddr>,
    writable_shared: Option<(VirtAddr, PhysAddr)>,
    writable_file: Option<(VirtAddr, PhysAddr, bool)>,
    zero_writable: Option<VirtAddr>,
    unlisted: Option<(VirtAddr, PhysAddr, PhysAddr)>,
}

impl Seen {
    /// The entry at `va` maps `pa`, writable or not, in a shared mapping or not.
    fn entry(&mut self, va: VirtAddr, pa: PhysAddr, writable: bool, shared: bool) {
        if zero::is_zero(pa) {
            // No folio to account; never written.
            if writable {
                self.zero_writable.get_or_insert(va);
            }
            return;
        }
        *self.mapped.entry(pa).or_default() += 1;
        let file = Folio::of(pa).is_file();
        if file != shared && writable && (shared || file) {
            // A file's page writable in a private mapping, or an anonymous page in a
            // shared one.
            self.writable_file.get_or_insert((va, pa, shared));
        } else if file {
            // Written by every mapper of the file: no exclusivity.
        } else if writable && !folio::pages_exclusive(pa, 1) {
            self.writable_shared.get_or_insert((va, pa));
        } else if writable {
            self.writable.push(pa);
        }
    }

    /// The map counts, or the first rule broken.
    fn verdict(self) -> Result<BTreeMap<PhysAddr, i32>, String> {
        if let Some(va) = self.zero_writable {
            return Err(format!("{va:?} maps the zero page writable"));
        }
        if let Some((va, pa)) = self.writable_shared {
            return Err(format!(
                "{va:?} maps {pa} writable, but the page is not anon-exclusive"
            ));
        }
        if let Some((va, pa, shared)) = self.writable_file {
            return Err(format!(
                "{va:?} maps {pa} writable in a {} mapping, but the page is {}",
                if shared { "shared" } else { "private" },
                if shared { "anonymous" } else { "a file's" }
            ));
        }
        if let Some(pa) = self.writable.iter().find(|&&pa| self.mapped[&pa] != 1) {
            let n = self.mapped[pa];
            return Err(format!("{pa} is writable in one mapping of {n}"));
        }
        if let Some((va, pa, owner)) = self.unlisted {
            return Err(format!(
                "lazyfree folio {pa} is mapped at {va:?} by {owner}, but no lazyfree entry \
                 names that mapping"
            ));
        }
        Ok(self.mapped)
    }
}

/// Check the allocated block at `head` of `order` against `mapped` (the entries that
/// map each frame), taking its frames out of it: its flags, map counts, pins and
/// references. `Ok(false)` if it is no anonymous or file folio.
fn check_folio(
    head: PhysAddr,
    order: usize,
    mapped: &mut BTreeMap<PhysAddr, i32>,
) -> Result<bool, String> {
    let m = frames().meta(head);
    if !m.test(flags::ANON) && !m.test(flags::FILE) {
        if m.test(flags::LAZYFREE) {
            return Err(format!(
                "folio {head} (order {order}) is lazyfree but not anonymous"
            ));
        }
        return Ok(false);
    }
    let f = Folio::of(head);
    let n = 1usize << order;
    let file = m.test(flags::FILE);
    check_flags(f, order)?;
    let mut total = 0;
    for i in 0..n {
        let want = mapped.remove(&f.page(i)).unwrap_or(0);
        if f.mapcount(i) != want {
            return Err(format!(
                "folio {head} (order {order}) page {i}: map count {} but {want} entries map it",
                f.mapcount(i)
            ));
        }
        if !file && want > 0 && f.pins(i) > 0 && (want > 1 || !f.is_exclusive(i)) {
            return Err(format!(
                "folio {head} (order {order}) page {i}: pinned, mapped {want} times, exclusive: {}",
                f.is_exclusive(i)
            ));
        }
        total += want;
    }
    let queued = f.is_deferred() as u32;
    let cached = m.test(flags::CACHED) as u32;
    let pins: u32 = (0..n).map(|i| f.pins(i) as u32).sum();
    if f.is_pinned() != (pins > 0) || (pins > 0 && f.is_lazyfree()) {
        return Err(format!(
            "folio {head} (order {order}): {pins} pins, flags {:#x}",
            m.flags()
        ));
    }
    if f.total_mapcount() != total || f.refcount() != total as u32 + queued + cached + pins {
        return Err(format!("folio {head} (order {order}): total map count {}, refcount {} (queued: {queued}, cached: {cached}, pins: {pins}), but {total} entries map it", f.total_mapcount(), f.refcount()));
    }
    Ok(true)
}

/// The flags of the anonymous or file folio `f` of `order` agree with each other and
/// its map counts are not negative.
fn check_flags(f: Folio, order: usize) -> Result<(), String> {
    let head = f.head();
    let m = frames().meta(head);
    let n = 1usize << order;
    let file = m.test(flags::FILE);
    if m.test(flags::LAZYFREE) && !m.test(flags::ANON) {
        return Err(format!(
            "folio {head} (order {order}) is lazyfree but not anonymous"
        ));
    }
    let both = flags::ALL_EXCLUSIVE | flags::ALL_SHARED;
    let exclusive = (0..n).any(|i| frames().meta(f.page(i)).test(flags::ANON_EXCLUSIVE));
    if file && (m.flags() & (both | flags::DEFERRED | flags::LAZYFREE) != 0 || exclusive) {
        return Err(format!(
            "file folio {head} (order {order}) has anonymous state {:#x}",
            m.flags()
        ));
    }
    if m.flags() & both == both || (order == 0 && m.flags() & both != 0) {
        return Err(format!(
            "folio {head} (order {order}): exclusivity override {:#x}",
            m.flags() & both
        ));
    }
    if f.entire_mapcount() < 0
        || (0..n).any(|i| frames().meta(f.page(i)).mapcount.load(Ordering::Relaxed) < 0)
    {
        return Err(format!(
            "folio {head} (order {order}): negative map count (entire {})",
            f.entire_mapcount()
        ));
    }
    Ok(())
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
