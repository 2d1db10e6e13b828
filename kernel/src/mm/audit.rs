//! The folio accounting audit: every anonymous folio's per-page map counts, total map
//! count and reference count must equal what the page tables say (bug 9 of the notes:
//! accounting drift). It counts the entries of the given address spaces, which must be
//! all the live ones, and compares with the metadata of every allocated folio.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use super::aspace::Mm;
use super::folio::Folio;
use super::frame::{flags, frames};
use super::{PhysAddr, PAGE_SIZE};

/// Check every anonymous folio against the mappings of `mms`; returns how many folios
/// were checked, or the first disagreement.
pub fn check<'a>(mms: impl Iterator<Item = &'a Mm>) -> Result<usize, String> {
    let mut mapped: BTreeMap<PhysAddr, i32> = BTreeMap::new();
    for mm in mms {
        for vma in mm.vmas.iter() {
            mm.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let pages = if leaf.level == 2 { 512 } else { 1 };
                for k in 0..pages {
                    *mapped.entry(leaf.pa_of(va).add(k * PAGE_SIZE)).or_default() += 1;
                }
            });
        }
    }
    let mut checked = 0;
    let mut err = None;
    frames().for_each_block(|head, order| {
        if err.is_some() || !frames().meta(head).test(flags::ANON) {
            return;
        }
        let f = Folio::of(head);
        let mut total = 0;
        for i in 0..1usize << order {
            let want = mapped.remove(&f.page(i)).unwrap_or(0);
            if f.mapcount(i) != want {
                err = Some(format!("folio {head} (order {order}) page {i}: map count {} but {want} entries map it", f.mapcount(i)));
                return;
            }
            total += want;
        }
        if f.total_mapcount() != total || f.refcount() != total as u32 {
            err = Some(format!("folio {head} (order {order}): total map count {}, refcount {}, but {total} entries map it", f.total_mapcount(), f.refcount()));
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
