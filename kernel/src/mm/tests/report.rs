//! What /proc/self/pagemap, /proc/kpageflags and smaps say of a 2 MiB folio before and
//! after fork (`report`): the entries Linux's selftests read to find present pages,
//! their frames, exclusivity and the folio's head and tail.

use super::collapse::{env, leaf, only, region, write_pages};
use super::*;
use crate::mm::addr::PMD_SIZE;
use crate::mm::kpageflags;

const PRESENT: u64 = 1 << 63;
const EXCLUSIVE: u64 = 1 << 56;
const PFN: u64 = (1 << 55) - 1;
const HEAD: u64 = 1 << 15;
const TAIL: u64 = 1 << 16;
const THP: u64 = 1 << 22;

/// The smaps field `name` (kB) of the first VMA in `smaps`.
fn smaps_kb(smaps: &str, name: &str) -> u64 {
    smaps
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{smaps}"))
}

#[test]
fn pagemap_kpageflags_and_smaps_of_a_2m_folio_across_fork() {
    let _m = host::machine();
    only(&[9]);
    let mut parent = Mm::new_in(&env()).unwrap();
    let va = region(&mut parent, PMD_SIZE, PMD_SIZE);
    write_pages(&mut parent, va, 0..1);
    let pa = leaf(&parent, va).pa_of(va);
    // One entry past the folio: unmapped, 0.
    let mut e = [0u64; 513];
    parent.pagemap(va, &mut e);
    assert_eq!(e[0], PRESENT | EXCLUSIVE | (pa.pfn() as u64));
    assert_eq!(
        e[511] & PFN,
        pa.pfn() as u64 + 511,
        "one entry per page of the block"
    );
    assert_eq!(e[512], 0);
    let want = THP | (1 << 11) | (1 << 12);
    assert_eq!(kpageflags(pa.pfn()) & (want | HEAD | TAIL), want | HEAD);
    assert_eq!(kpageflags(pa.pfn() + 1) & (want | HEAD | TAIL), want | TAIL);
    assert_eq!(smaps_kb(&parent.smaps(), "AnonHugePages"), 2048);
    assert_eq!(smaps_kb(&parent.smaps(), "Pss"), 2048);

    let child = parent.fork().unwrap();
    let mut c = [0u64; 1];
    child.pagemap(va.add(4096), &mut c);
    assert_eq!(
        c[0],
        PRESENT | (pa.pfn() as u64 + 1),
        "shared: not exclusive"
    );
    parent.pagemap(va, &mut e[..1]);
    assert_eq!(e[0] & EXCLUSIVE, 0);
    let smaps = child.smaps();
    assert_eq!(
        smaps_kb(&smaps, "Pss"),
        1024,
        "half of a block mapped twice"
    );
    assert_eq!(
        smaps_kb(&smaps, "Private_Clean") + smaps_kb(&smaps, "Private_Dirty"),
        0
    );
    drop(child);
}
