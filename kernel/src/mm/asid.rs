//! Address-space identifiers. Each user address space owns one ASID for its life, so
//! TLB entries of different address spaces never alias and a context switch needs no
//! TLB flush (Arm ARM D8.14 "Translation Lookaside Buffers", ASIDs). ASID 0 is the
//! kernel's (TTBR0 empty). A freed ASID is invalidated (TLBI ASIDE1IS) before reuse, by
//! the caller that tears the address space down.
//!
//! The last ASID is never handed out alone: when every other one is in use (255 live
//! processes with 8-bit ASIDs), new address spaces share it, and every switch to one
//! of them flushes this CPU's entries of it first (`arch::aarch64::mm::machine::install_ttbr0`), so no
//! process sees another's translations. Broadcast TLBIs one of them issues for its own
//! pages also drop the others' entries at those addresses: more misses, never a stale
//! hit. Linux instead rolls over to a new generation of ASIDs; this keeps the
//! allocator a bitmap at the price of a local flush per switch while it is exhausted.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::IrqSpinLock;

pub struct AsidAllocator {
    inner: IrqSpinLock<Bitmap>,
    shared: u16,
    shared_handouts: AtomicUsize,
}

struct Bitmap {
    words: Vec<u64>,
    limit: usize,
    next: usize,
}

impl AsidAllocator {
    /// ASIDs 1..2^bits - 1 for one address space each, 2^bits - 1 shared (8 or 16
    /// bits, from ID_AA64MMFR0_EL1.ASIDBits or the `asid_bits=8` boot option).
    pub fn new(bits: u8) -> Self {
        let limit = (1usize << bits) - 1;
        let mut words = vec![0u64; limit.div_ceil(64)];
        words[0] = 1; // ASID 0 is reserved for the kernel
        Self {
            inner: IrqSpinLock::new(Bitmap {
                words,
                limit,
                next: 1,
            }),
            shared: limit as u16,
            shared_handouts: AtomicUsize::new(0),
        }
    }

    /// A free ASID of its own, or the shared one when all are in use.
    pub fn alloc(&self) -> u16 {
        self.alloc_own().unwrap_or_else(|| {
            self.shared_handouts.fetch_add(1, Ordering::Relaxed);
            self.shared()
        })
    }

    /// The ASID address spaces share when there are more than ASIDs.
    pub fn shared(&self) -> u16 {
        self.shared
    }

    /// How many address spaces were given the shared ASID so far.
    pub fn shared_handouts(&self) -> usize {
        self.shared_handouts.load(Ordering::Relaxed)
    }

    /// A free ASID of its own, or `None` when all are in use.
    fn alloc_own(&self) -> Option<u16> {
        let mut b = self.inner.lock();
        let limit = b.limit;
        let start = b.next;
        for k in 0..limit {
            let a = (start + k) % limit;
            let (w, bit) = (a / 64, a % 64);
            if b.words[w] & (1 << bit) == 0 {
                b.words[w] |= 1 << bit;
                b.next = (a + 1) % limit;
                return Some(a as u16);
            }
        }
        None
    }

    /// Gives `asid` back (the shared one stays).
    pub fn free(&self, asid: u16) {
        if asid == self.shared {
            return;
        }
        let mut b = self.inner.lock();
        let (w, bit) = (asid as usize / 64, asid as usize % 64);
        assert!(
            asid != 0 && b.words[w] & (1 << bit) != 0,
            "free of ASID {asid} that is not allocated"
        );
        b.words[w] &= !(1 << bit);
    }

    pub fn in_use(&self) -> usize {
        self.inner
            .lock()
            .words
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bit_asids_run_out_then_share_the_last() {
        let a = AsidAllocator::new(8);
        let got: Vec<u16> = (0..254).map(|_| a.alloc()).collect();
        assert!(!got.contains(&0) && !got.contains(&255));
        assert_eq!(a.in_use(), 254);
        assert_eq!((a.alloc(), a.alloc()), (255, 255));
        assert_eq!(a.shared_handouts(), 2);
        a.free(255);
        a.free(got[10]);
        assert_eq!(a.alloc(), got[10]);
        assert_eq!(a.in_use(), 254);
    }

    #[test]
    fn reuse_is_delayed_round_robin() {
        let a = AsidAllocator::new(16);
        let x = a.alloc();
        a.free(x);
        assert_ne!(a.alloc(), x, "a just-freed ASID is not handed out first");
    }

    #[test]
    #[should_panic(expected = "not allocated")]
    fn double_free_panics() {
        let a = AsidAllocator::new(8);
        let x = a.alloc();
        a.free(x);
        a.free(x);
    }
}
