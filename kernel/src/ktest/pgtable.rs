//! The page-table layer on the real (emulated) MMU: what the layer programs is what the
//! hardware walker translates. Every mapped page is checked with `AT S1E0R/W` (PAR_EL1)
//! against the expected output address and permission; Access-flag and
//! writable-clean faults that a CPU without FEAT_HAFDBS reports are resolved through
//! the layer's fault helpers, as the fault handler will.

use alloc::vec::Vec;
use alloc::{format, string::String};

use super::TestResult;
use crate::arch::aarch64::mm::kmap;
use crate::arch::aarch64::mm::machine::{self, KernelMachine, UserTables};
use crate::arch::aarch64::mmu::{self, Access, Translation};
use crate::mm::frame::frames;
use crate::mm::pgtable::{ContMode, FaultFix, Kind, Prot, PtMachine, Pte, PteAttrs};
use crate::mm::{MemType, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::{kassert, kassert_eq};

fn attrs(write: bool) -> PteAttrs {
    PteAttrs {
        prot: Prot::user(write, false),
        mem: MemType::Normal,
    }
}

/// Run `body` with `t` live in TTBR0 on this CPU (for AT), then leave TTBR0 empty.
fn with_tables<R>(t: &mut UserTables, body: impl FnOnce(&mut UserTables) -> R) -> R {
    mmu::set_ttbr0(t.root().as_u64(), t.asid());
    let r = body(t);
    kmap::drop_identity_map();
    r
}

fn is_translation(fsc: u8) -> bool {
    fsc & 0x3c == 0x04
}
fn is_access_flag(fsc: u8) -> bool {
    fsc & 0x3c == 0x08
}
fn is_permission(fsc: u8) -> bool {
    fsc & 0x3c == 0x0c
}

/// Check one page against what it should be: unmapped, or mapped to `pa`, writable or
/// not. Faults that only mean "old" or "writable-clean" go through the layer's fault
/// helpers first (bug 3 of `docs/notes/contpte.md`: a helper that makes no progress loops for ever,
/// here it fails the test).
fn check_page(
    t: &mut UserTables,
    va: VirtAddr,
    expect: Option<(PhysAddr, bool)>,
) -> Result<(), String> {
    let Some((pa, writable)) = expect else {
        return match mmu::translate(va.as_usize(), Access::El0Read) {
            Translation::Fault { fsc } if is_translation(fsc) => Ok(()),
            other => Err(format!("{va}: expected unmapped, AT says {other:?}")),
        };
    };
    let hw_af = machine::config().features.hw_af;
    for access in [Access::El0Read, Access::El0Write] {
        let want_ok = access == Access::El0Read || writable;
        let mut fixes = 0;
        loop {
            match mmu::translate(va.as_usize(), access) {
                Translation::Mapped { pa: got } if want_ok => {
                    if got != pa.as_u64() {
                        return Err(format!("{va}: maps {got:#x}, expected {pa}"));
                    }
                    break;
                }
                Translation::Fault { fsc } if is_access_flag(fsc) && !hw_af => {
                    if t.access_flag_fault(va) != FaultFix::Fixed {
                        return Err(format!("{va}: access-flag fault not fixed"));
                    }
                }
                Translation::Fault { fsc } if is_permission(fsc) && access == Access::El0Write => {
                    let fix = t.write_fault(va);
                    match (writable, fix) {
                        (false, FaultFix::NotWritable(_)) => break,
                        (true, FaultFix::Fixed) => {}
                        _ => {
                            return Err(format!(
                                "{va}: write fault (writable {writable}) gave {fix:?}"
                            ))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "{va}: {access:?} expected {}, AT says {other:?}",
                        if want_ok { "success" } else { "a fault" }
                    ))
                }
            }
            fixes += 1;
            if fixes > 2 {
                return Err(format!("{va}: {access:?} still faults after {fixes} fixes"));
            }
        }
    }
    Ok(())
}

pub fn fold_is_what_the_walker_sees() -> TestResult {
    let mut t = UserTables::new().map_err(|e| format!("{e:?}"))?;
    let folio = frames().alloc(4).ok_or("no 64 KiB folio")?;
    let va = VirtAddr::new(0x10_0000);
    let before = machine::counters().snapshot();
    t.map(va, folio, 16, attrs(true))
        .map_err(|e| format!("{e:?}"))?;
    let d = machine::counters().snapshot() - before;
    let cont = t.get(va).ok_or("nothing mapped")?.pte.is_cont();
    kassert_eq!(cont, t.mode() != ContMode::Off);
    // On: written contiguous directly; naive: 16 single entries, then a fold.
    kassert_eq!(d.cont_maps + d.folds, (t.mode() != ContMode::Off) as u64);
    let r = with_tables(&mut t, |t| {
        (0..16).try_for_each(|i| {
            check_page(
                t,
                va.add(i * PAGE_SIZE),
                Some((folio.add(i * PAGE_SIZE), true)),
            )
        })
    });
    // Write-protect the whole block (fork): one batched call, the block stays folded.
    let before = machine::counters().snapshot();
    t.wrprotect(va, 16).map_err(|e| format!("{e:?}"))?;
    let d = machine::counters().snapshot() - before;
    if t.mode() == ContMode::On {
        kassert_eq!((d.unfolds, d.folds), (0, 0));
        kassert!(
            t.get(va.add(5 * PAGE_SIZE)).unwrap().pte.is_cont(),
            "block unfolded by a whole-block write-protect"
        );
    }
    let r2 = with_tables(&mut t, |t| {
        check_page(
            t,
            va.add(7 * PAGE_SIZE),
            Some((folio.add(7 * PAGE_SIZE), false)),
        )
    });
    let unmapped = t.unmap(va, 16).map_err(|e| format!("{e:?}"))?;
    kassert_eq!(unmapped.iter().map(|u| u.pages).sum::<usize>(), 16);
    frames().free(folio, 4);
    r?;
    r2
}

pub fn pmd_block_splits_into_contiguous_blocks() -> TestResult {
    let mut t = UserTables::new().map_err(|e| format!("{e:?}"))?;
    let folio = frames().alloc(9).ok_or("no 2 MiB folio")?;
    let va = VirtAddr::new(0x4000_0000);
    t.map_pmd(va, folio, attrs(true))
        .map_err(|e| format!("{e:?}"))?;
    kassert_eq!(t.get(va).unwrap().level, 2);
    let before = machine::counters().snapshot();
    // mprotect of one page: the block becomes 512 entries, only its own 64 KiB unfolds.
    t.protect(va.add(100 * PAGE_SIZE), 1, Prot::user(false, false))
        .map_err(|e| format!("{e:?}"))?;
    let d = machine::counters().snapshot() - before;
    kassert_eq!(d.pmd_splits, 1);
    kassert_eq!(t.get(va).unwrap().level, 3);
    if t.mode() == ContMode::On {
        kassert!(
            t.get(va).unwrap().pte.is_cont(),
            "untouched blocks of a split PMD are contiguous"
        );
        kassert!(!t.get(va.add(100 * PAGE_SIZE)).unwrap().pte.is_cont());
    }
    let r = with_tables(&mut t, |t| {
        (0..512).try_for_each(|i| {
            let write = i != 100;
            check_page(
                t,
                va.add(i * PAGE_SIZE),
                Some((folio.add(i * PAGE_SIZE), write)),
            )
        })
    });
    t.unmap(va, 512).map_err(|e| format!("{e:?}"))?;
    frames().free(folio, 9);
    r
}

/// xorshift64*: a small deterministic generator (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A window of 4 MiB straddling the 1 GiB boundary (a level-1 and a level-2 table edge).
const WINDOW: u64 = 0x3fe0_0000;
const WINDOW_PAGES: usize = 1024;

struct Folio {
    pa: PhysAddr,
    order: usize,
    mapped: usize,
}

/// The tables under test, the folios they map, and per page of the window what it
/// should translate to: (folio index, page in folio, writable).
struct Sim {
    t: UserTables,
    folios: Vec<Folio>,
    pages: Vec<Option<(usize, usize, bool)>>,
}

const _: () = assert!(
    WINDOW.is_multiple_of(2 << 20),
    "page-index alignment is VA alignment"
);

fn page_va(i: usize) -> VirtAddr {
    VirtAddr::new(WINDOW + (i * PAGE_SIZE) as u64)
}

fn random_range(rng: &mut Rng) -> (usize, usize) {
    let start = rng.below(WINDOW_PAGES as u64) as usize;
    let len = [1, 7, 16, 40, 300][rng.below(5) as usize];
    (start, len.min(WINDOW_PAGES - start))
}

impl Sim {
    fn expected(&self, i: usize) -> Option<(PhysAddr, bool)> {
        self.pages[i].map(|(f, p, w)| (self.folios[f].pa.add(p * PAGE_SIZE), w))
    }

    /// Map a new folio of `order` at page `start` (as one PMD block if `pmd`).
    fn map(&mut self, start: usize, order: usize, write: bool, pmd: bool) -> Result<bool, String> {
        let n = 1usize << order;
        if start + n > WINDOW_PAGES || self.pages[start..start + n].iter().any(Option::is_some) {
            return Ok(false);
        }
        let Some(pa) = frames().alloc(order) else {
            return Ok(false);
        };
        let r = if pmd {
            self.t.map_pmd(page_va(start), pa, attrs(write))
        } else {
            self.t.map(page_va(start), pa, n, attrs(write))
        };
        if let Err(e) = r {
            frames().free(pa, order);
            return Err(format!("map: {e:?}"));
        }
        self.folios.push(Folio {
            pa,
            order,
            mapped: n,
        });
        let f = self.folios.len() - 1;
        for (i, slot) in self.pages[start..start + n].iter_mut().enumerate() {
            *slot = Some((f, i, write));
        }
        Ok(true)
    }

    /// Unmap `n` pages from `start`; each record must match the reference, and a folio
    /// goes back to the allocator when its last page is unmapped.
    fn unmap(&mut self, start: usize, n: usize) -> Result<(), String> {
        let records = self
            .t
            .unmap(page_va(start), n)
            .map_err(|e| format!("unmap: {e:?}"))?;
        for u in records {
            for k in 0..u.pages {
                let i = (u.va.as_u64() - WINDOW) as usize / PAGE_SIZE + k;
                let (f, p, _) = self.pages[i]
                    .take()
                    .ok_or(format!("unmap returned page {i}, which was not mapped"))?;
                let folio = &mut self.folios[f];
                if folio.pa.add(p * PAGE_SIZE) != u.pa.add(k * PAGE_SIZE) {
                    return Err(format!(
                        "unmap record for page {i}: {} instead of {}",
                        u.pa.add(k * PAGE_SIZE),
                        folio.pa.add(p * PAGE_SIZE)
                    ));
                }
                folio.mapped -= 1;
                if folio.mapped == 0 {
                    frames().free(folio.pa, folio.order);
                }
            }
        }
        match self.pages[start..start + n]
            .iter()
            .position(Option::is_some)
        {
            Some(i) => Err(format!("unmap left page {} mapped", start + i)),
            None => Ok(()),
        }
    }

    fn set_writable(&mut self, start: usize, n: usize, write: bool) {
        self.pages[start..start + n]
            .iter_mut()
            .flatten()
            .for_each(|e| e.2 = write);
    }

    /// Every page of the window, through the hardware walker.
    fn check_all(&mut self) -> Result<(), String> {
        let expected: Vec<_> = (0..WINDOW_PAGES).map(|i| self.expected(i)).collect();
        with_tables(&mut self.t, |t| {
            (0..WINDOW_PAGES).try_for_each(|i| check_page(t, page_va(i), expected[i]))
        })?;
        if self.t.mode() == ContMode::Off
            && (0..WINDOW_PAGES).any(|i| self.t.get(page_va(i)).is_some_and(|l| l.pte.is_cont()))
        {
            return Err("contpte=off set the Contiguous bit".into());
        }
        Ok(())
    }
}

fn random_step(sim: &mut Sim, rng: &mut Rng, op: u64) -> Result<(), String> {
    let map_err = |e| format!("{e:?}");
    match op {
        0..=2 => {
            let order = [0, 0, 2, 4, 4, 5, 9][rng.below(7) as usize];
            let align = if rng.below(4) == 0 { 1 } else { 1 << order };
            let start = rng.below(WINDOW_PAGES as u64) as usize / align * align;
            let pmd = order == 9 && start.is_multiple_of(512) && rng.below(2) == 0;
            sim.map(start, order, rng.below(3) != 0, pmd)?;
        }
        3 => {
            let (s, n) = random_range(rng);
            sim.unmap(s, n)?;
        }
        4 => {
            let (s, n) = random_range(rng);
            let write = rng.below(2) == 0;
            sim.t
                .protect(page_va(s), n, Prot::user(write, false))
                .map_err(map_err)?;
            sim.set_writable(s, n, write);
        }
        5 => {
            let (s, n) = random_range(rng);
            sim.t.wrprotect(page_va(s), n).map_err(map_err)?;
            sim.set_writable(s, n, false);
        }
        6 => {
            let (s, n) = random_range(rng);
            sim.t.clear_young_dirty(page_va(s), n).map_err(map_err)?;
        }
        _ => {
            let (s, n) = random_range(rng);
            if rng.below(2) == 0 {
                sim.t.make_writable(page_va(s), n).map_err(map_err)?;
                sim.set_writable(s, n, true);
            } else {
                sim.t.test_and_clear_young(page_va(s));
            }
        }
    }
    Ok(())
}

fn random_sequence(seed: u64, steps: usize) -> TestResult {
    let mut rng = Rng(seed);
    let t = UserTables::new().map_err(|e| format!("{e:?}"))?;
    let mut sim = Sim {
        t,
        folios: Vec::new(),
        pages: alloc::vec![None; WINDOW_PAGES],
    };
    for step in 0..steps {
        let op = rng.below(8);
        random_step(&mut sim, &mut rng, op)
            .and_then(|()| sim.check_all())
            .map_err(|e| format!("seed {seed:#x} step {step} (op {op}): {e}"))?;
    }
    sim.unmap(0, WINDOW_PAGES)
        .map_err(|e| format!("seed {seed:#x} final unmap: {e}"))?;
    kassert!(
        sim.folios.iter().all(|f| f.mapped == 0),
        "folios still mapped after the final unmap"
    );
    Ok(())
}

pub fn random_operations_match_the_walker() -> TestResult {
    let before = machine::counters().snapshot();
    for seed in [
        0x9e37_79b9_7f4a_7c15,
        0x1234_5678_9abc_def1,
        0xdead_beef_cafe_f00d,
    ] {
        random_sequence(seed, 60)?;
    }
    let d = machine::counters().snapshot() - before;
    match machine::config().mode {
        ContMode::Off => kassert_eq!(d.folds + d.cont_maps, 0),
        _ => kassert!(
            d.folds + d.cont_maps > 0,
            "no contiguous block was ever made: {d:?}"
        ),
    }
    Ok(())
}

/// `crashtest=ptcheck`: what a stray write into a page table looks like to the checker.
/// Entry 3 of a folded block is made to map entry 4's frame, behind the layer's back;
/// the next operation on the block must stop with the checker's report (test builds
/// have the checker on).
pub fn corrupt_block_then_operate() -> ! {
    let mut t = UserTables::new().expect("page tables");
    let folio = frames().alloc(4).expect("a 64 KiB folio");
    let va = VirtAddr::new(0x10_0000);
    t.map(va, folio, 16, attrs(true)).expect("map");
    assert!(
        t.get(va).unwrap().pte.is_cont(),
        "crashtest=ptcheck needs contpte=on"
    );
    let mut table = t.root();
    for level in 0..3 {
        let entry = Pte::from_raw(
            KernelMachine.table(table)[(va.as_u64() >> (39 - 9 * level)) as usize & 511]
                .load(core::sync::atomic::Ordering::Relaxed),
        );
        let Kind::Table(next) = entry.kind(level) else {
            panic!("no level-{level} table")
        };
        table = next;
    }
    let slot = &KernelMachine.table(table)[(va.as_u64() >> 12) as usize % 512 + 3];
    let bad = Pte::from_raw(slot.load(core::sync::atomic::Ordering::Relaxed))
        .with_output_addr(folio.add(4 * PAGE_SIZE));
    slot.store(bad.raw(), core::sync::atomic::Ordering::Relaxed);
    t.clear_young_dirty(va, 16).expect("clear young");
    panic!("the checker let a misprogrammed contiguous block through");
}

/// The kernel env's anon-exclusive hook (`ptcheck_exclusive=`): off, it knows nothing;
/// on, it reads the frame's `ANON_EXCLUSIVE` flag, and the checker accepts a writable
/// mapping of a page marked exclusive first (the order callers must use).
pub fn anon_exclusive_hook_reads_the_frame_flag() -> TestResult {
    use crate::mm::frame::flags::{ANON, ANON_EXCLUSIVE};
    let was = machine::set_check_exclusive(false);
    let pa = crate::arch::aarch64::mm::page::alloc_zeroed(0).ok_or("no frame")?;
    let result = (|| {
        kassert!(!KernelMachine.tracks_anon_exclusive());
        kassert_eq!(KernelMachine.anon_exclusive(pa), None);
        machine::set_check_exclusive(true);
        kassert_eq!(
            KernelMachine.anon_exclusive(pa),
            None,
            "not an anonymous folio"
        );
        frames().meta(pa).set(ANON, true);
        kassert_eq!(KernelMachine.anon_exclusive(pa), Some(false));
        frames().meta(pa).set(ANON_EXCLUSIVE, true);
        kassert_eq!(KernelMachine.anon_exclusive(pa), Some(true));
        let mut t = UserTables::new().map_err(|e| format!("{e:?}"))?;
        kassert!(t.checker_mut().is_enabled(), "the test build checks");
        let va = VirtAddr(0x5000_0000);
        t.map(va, pa, 1, attrs(true))
            .map_err(|e| format!("{e:?}"))?;
        t.make_writable(va, 1).map_err(|e| format!("{e:?}"))?;
        t.unmap(va, 1).map_err(|e| format!("{e:?}"))?;
        Ok(())
    })();
    machine::set_check_exclusive(was);
    frames().meta(pa).set(ANON_EXCLUSIVE, false);
    frames().meta(pa).set(ANON, false);
    frames().free(pa, 0);
    result
}
