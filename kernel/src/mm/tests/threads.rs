//! Threads of one process (`mm/mod.rs`, "Threads and the hardware"): the `Mm` lock
//! serialises the software, but the walkers of the CPUs that run the other threads
//! set AF and dirty in the entries meanwhile. Here a `std::thread` plays such a CPU:
//! it writes through the model's translation, which sets the dirty state in the
//! descriptor as FEAT_HAFDBS does (an atomic update of the entry), and takes the
//! `Mm` lock only to resolve a fault, as a thread's fault does; this thread meanwhile
//! unfolds and refolds blocks (mprotect of a block's last page and back), marks
//! blocks lazyfree and pages them out. Every byte the CPU wrote must survive, unless
//! a MADV_FREE of its block overlapped or followed the write: a dirty state lost in a
//! convert, or read before lazyfree's write-protect, shows as a zeroed page.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use super::collapse::{all_back, only, pattern, region, write_pages, HW};
use super::*;
use crate::mm::addr::CONT_SIZE;
use crate::mm::lazyfree;
use crate::mm::PhysAddr;

const BLOCKS: usize = 8;
const PAGES: usize = BLOCKS * 16;
/// Rounds of shape changes while the CPU keeps writing (see the test).
const ROUNDS: usize = 200;

/// Per block: MADV_FREE calls begun and returned (the C program's rule,
/// `user/c/contpte_threads.c`).
struct Frees {
    begun: [AtomicU64; BLOCKS],
    done: [AtomicU64; BLOCKS],
}

/// The last write to a page: its byte and the block's MADV_FREE counts before it.
#[derive(Clone, Copy, Default)]
struct Written {
    byte: u8,
    begun: u64,
    done: u64,
}

impl Written {
    /// A page read `got` after this write, with `begun_now` MADV_FREE calls begun on
    /// its block by then: the byte, or 0 if a MADV_FREE overlapped or followed it.
    fn check(&self, got: u8, begun_now: u64, when: core::fmt::Arguments<'_>) {
        let raced = self.begun != self.done || begun_now != self.begun;
        assert!(
            got == self.byte || (got == 0 && raced),
            "{when}: read {got:#x}, written {:#x} (MADV_FREE of its block: {} begun, {} done \
             before the write, {begun_now} begun now)",
            self.byte,
            self.begun,
            self.done,
        );
    }
}

/// One access of `kind` at `va` by a "CPU" running a thread of `mm`: translated (AF
/// and dirty set in the entry by the model, as the hardware does), or, on a fault,
/// resolved under the `Mm` lock and tried again. Returns the frame's address.
fn cpu_access(
    mm: &Mutex<Mm<HostMachine>>,
    env: &HostMachine,
    root: PhysAddr,
    va: VirtAddr,
    kind: AccessKind,
) -> PhysAddr {
    let access = model::Access { el: El::El0, kind };
    let fault = if kind == AccessKind::Write {
        Access::Write
    } else {
        Access::Read
    };
    loop {
        match model::translate(env, root, va, access) {
            Ok(w) => return w.pa,
            Err(_) => mm
                .lock()
                .unwrap()
                .handle_fault(va, fault)
                .expect("a fault in a read-write mapping"),
        }
    }
}

#[test]
fn hardware_dirty_state_from_other_cpus_survives_converts_and_lazyfree() {
    // Not `contpte=naive`: there a lazyfree 64 KiB folio is never clean (lazyfree.rs).
    for mode in [ContMode::On, ContMode::Off] {
        let _m = host::machine();
        let env = HostMachine { features: HW, mode };
        only(&[4]);
        let mut mm = Mm::new_in(&env).unwrap();
        // One block more than the CPU writes, never freed: the table never empties
        // (the model's walker would find it freed under it).
        let va = region(&mut mm, (BLOCKS + 1) * CONT_SIZE, CONT_SIZE);
        write_pages(&mut mm, va, 0..PAGES + 16);
        let root = mm.tables.root();
        let mm = Arc::new(Mutex::new(mm));
        let frees = Arc::new(Frees {
            begun: Default::default(),
            done: Default::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        // The block the CPU writes now: the one this thread is changing.
        let target = Arc::new(AtomicU64::new(0));
        let cpu = {
            let (mm, frees, stop, target) =
                (mm.clone(), frees.clone(), stop.clone(), target.clone());
            std::thread::spawn(move || {
                let mut last = [Written::default(); PAGES];
                let mut n = 0usize;
                while n < PAGES || !stop.load(Ordering::SeqCst) {
                    // Every page once first, then the target block over and over.
                    // Sparse writes (a page, then a pause), so that a block is mostly
                    // clean when it is paged out and the writes race the discard.
                    let i = if n < PAGES {
                        n
                    } else {
                        for _ in 0..500 {
                            std::hint::spin_loop();
                        }
                        target.load(Ordering::SeqCst) as usize * 16 + n * 7 % 16
                    };
                    let b = i / 16;
                    let w = Written {
                        byte: (n % 250 + 1) as u8,
                        begun: frees.begun[b].load(Ordering::SeqCst),
                        done: frees.done[b].load(Ordering::SeqCst),
                    };
                    let at = va.add(i * PAGE_SIZE);
                    host::write_byte(cpu_access(&mm, &env, root, at, AccessKind::Write), w.byte);
                    // Read it back at once: a later write would hide a lost one.
                    let got = host::read_byte(cpu_access(&mm, &env, root, at, AccessKind::Read));
                    w.check(
                        got,
                        frees.begun[b].load(Ordering::SeqCst),
                        format_args!("page {i} right after the write"),
                    );
                    last[i] = w;
                    n += 1;
                }
                last
            })
        };
        let freed_before = lazyfree::STATS.pglazyfreed.load(Ordering::Relaxed);
        for round in 0..ROUNDS {
            // Mark one block lazyfree, then convert it twice (unfold for one page's
            // mprotect, refold on the restore) while the CPU writes it dirty again,
            // then page it out: only pages written before the MADV_FREE returned may go.
            let b = round % BLOCKS;
            let blk = va.add(b * CONT_SIZE);
            let last = blk.add(15 * PAGE_SIZE);
            target.store(b as u64, Ordering::SeqCst);
            frees.begun[b].fetch_add(1, Ordering::SeqCst);
            mm.lock()
                .unwrap()
                .madvise(blk, blk.add(CONT_SIZE), MADV_FREE)
                .unwrap();
            frees.done[b].fetch_add(1, Ordering::SeqCst);
            // Every other round straight to the page-out, the others through two
            // converts first.
            for prot in [VmProt::new(true, true, true), VmProt::READ_WRITE]
                .into_iter()
                .filter(|_| round % 2 == 1)
            {
                mm.lock()
                    .unwrap()
                    .mprotect(last, last.add(PAGE_SIZE), prot)
                    .unwrap();
            }
            mm.lock()
                .unwrap()
                .madvise(blk, blk.add(CONT_SIZE), MADV_PAGEOUT)
                .unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        let last = cpu.join().expect("the CPU thread");
        // The discard path ran: clean pages went while the CPU wrote others.
        let freed = lazyfree::STATS.pglazyfreed.load(Ordering::Relaxed) - freed_before;
        assert!(freed > 0, "{mode:?}: nothing discarded");
        let mm = Arc::try_unwrap(mm).ok().unwrap().into_inner().unwrap();
        for (i, w) in last.iter().enumerate() {
            let at = va.add(i * PAGE_SIZE);
            let got = mm
                .tables
                .get(at)
                .map_or(0, |l| host::read_byte(l.pa_of(at)));
            w.check(
                got,
                frees.begun[i / 16].load(Ordering::SeqCst),
                format_args!("{mode:?}: page {i} at the end"),
            );
        }
        audit::check([&mm].into_iter()).expect("folio audit");
        all_back([mm]);
    }
}

/// The folio protocol (`folio`, rules 1 and 4) between CPUs that do not share an `Mm`
/// lock: after fork, a parent and a child, each on its own `std::thread` with its own
/// lock, write the same 64 KiB folios (copy-on-write: a page copied, or the whole
/// folio reused once the other side has unmapped it) while the child unmaps blocks
/// and half blocks (map counts drop; half-mapped folios queue for deferred split) and
/// a third thread runs the deferred-split shrinker over and over, splitting the
/// folios the other two are still reusing, copying and unmapping. Each side's bytes
/// must be its own, the audit must agree with both address spaces after every round,
/// and every frame must be back at the end.
#[test]
fn split_against_unmap_against_reuse_across_address_spaces() {
    const BLOCKS: usize = 16;
    const PAGES: usize = BLOCKS * 16;
    let _m = host::machine();
    only(&[4]);
    let reused = mthp::stats(4).cow_reuse.load(Ordering::Relaxed);
    let mut split = 0;
    for round in 0..8 {
        let mut parent = Mm::new_in(&HostMachine {
            features: HW,
            mode: ContMode::On,
        })
        .unwrap();
        let va = region(&mut parent, PAGES * PAGE_SIZE, CONT_SIZE);
        write_pages(&mut parent, va, 0..PAGES);
        let child = parent.fork().unwrap();
        let (parent, child) = (Arc::new(Mutex::new(parent)), Arc::new(Mutex::new(child)));
        let stop = Arc::new(AtomicBool::new(false));
        let shrinker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut split = 0;
                while !stop.load(Ordering::SeqCst) {
                    split += folio::shrink_deferred();
                    std::thread::yield_now();
                }
                split
            })
        };
        // The child: per block, one page written (a copy), then the whole block
        // unmapped (even blocks) or its second half (odd blocks).
        let child_side = {
            let child = child.clone();
            std::thread::spawn(move || {
                for b in 0..BLOCKS {
                    let page = b * 16 + (b + round) % 16;
                    store(&child, va.add(page * PAGE_SIZE), 0xc0);
                    let (from, n) = if b % 2 == 0 { (0, 16) } else { (8, 8) };
                    let at = va.add((b * 16 + from) * PAGE_SIZE);
                    child
                        .lock()
                        .unwrap()
                        .munmap(at, at.add(n * PAGE_SIZE))
                        .expect("munmap");
                    std::thread::yield_now();
                }
            })
        };
        // The parent: every page of every block written, in a round-dependent order,
        // racing the child's copy and unmap of the same folio.
        for k in 0..PAGES {
            let page = (k * 7 + round * 13) % PAGES;
            store(&parent, va.add(page * PAGE_SIZE), 0xa0);
        }
        child_side.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        split += shrinker.join().unwrap();
        let (parent, child) = (
            Arc::try_unwrap(parent).ok().unwrap().into_inner().unwrap(),
            Arc::try_unwrap(child).ok().unwrap().into_inner().unwrap(),
        );
        for i in 0..PAGES {
            let at = va.add(i * PAGE_SIZE);
            let b = i / 16;
            let read =
                |mm: &Mm<HostMachine>| mm.tables.get(at).map(|l| host::read_byte(l.pa_of(at)));
            assert_eq!(
                read(&parent),
                Some(0xa0),
                "round {round}: parent's page {i}"
            );
            let unmapped = if b % 2 == 0 { true } else { i % 16 >= 8 };
            let want = if unmapped {
                None
            } else if i == b * 16 + (b + round) % 16 {
                Some(0xc0)
            } else {
                Some(pattern(i))
            };
            assert_eq!(read(&child), want, "round {round}: child's page {i}");
        }
        audit::check([&parent, &child].into_iter()).expect("folio audit");
        all_back([parent, child]);
    }
    // Both races happened: whole folios reused after the child's unmap, half-mapped
    // folios split under the writers.
    assert!(
        mthp::stats(4).cow_reuse.load(Ordering::Relaxed) > reused,
        "no reuse"
    );
    assert!(split > 0, "the shrinker split nothing");
}

/// A store of `byte` at `va` by a thread of `mm`: faulted writable first (copy-on-write
/// or reuse) under its lock, then written at the frame the entry maps.
fn store(mm: &Mutex<Mm<HostMachine>>, va: VirtAddr, byte: u8) {
    let mut mm = mm.lock().unwrap();
    if mm.tables.get(va).is_none_or(|l| !l.pte.is_writable()) {
        mm.handle_fault(va, Access::Write).expect("fault");
    }
    let pa = mm.tables.get(va).unwrap().pa_of(va);
    host::write_byte(pa, byte);
}
