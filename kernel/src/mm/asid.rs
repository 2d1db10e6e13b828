//! Address-space identifiers. Each user address space owns one ASID for its life, so
//! TLB entries of different address spaces never alias and a context switch needs no
//! TLB flush (Arm ARM D8.14 "Translation Lookaside Buffers", ASIDs). ASID 0 is the
//! kernel's (TTBR0 empty). A freed ASID is invalidated (TLBI ASIDE1IS) before reuse, by
//! the caller that tears the address space down.

use alloc::vec;
use alloc::vec::Vec;

use crate::sync::IrqSpinLock;

pub struct AsidAllocator {
    inner: IrqSpinLock<Bitmap>,
}

struct Bitmap {
    words: Vec<u64>,
    limit: usize,
    next: usize,
}

impl AsidAllocator {
    /// ASIDs 1..2^bits (8 or 16 bits, from ID_AA64MMFR0_EL1.ASIDBits).
    pub fn new(bits: u8) -> Self {
        let limit = 1usize << bits;
        let mut words = vec![0u64; limit.div_ceil(64)];
        words[0] = 1; // ASID 0 is reserved for the kernel
        Self {
            inner: IrqSpinLock::new(Bitmap {
                words,
                limit,
                next: 1,
            }),
        }
    }

    /// A free ASID, or `None` when all are in use.
    pub fn alloc(&self) -> Option<u16> {
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

    pub fn free(&self, asid: u16) {
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
    fn eight_bit_asids_run_out_and_come_back() {
        let a = AsidAllocator::new(8);
        let got: Vec<u16> = (0..255).map(|_| a.alloc().unwrap()).collect();
        assert!(!got.contains(&0));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.in_use(), 255);
        a.free(got[10]);
        assert_eq!(a.alloc(), Some(got[10]));
    }

    #[test]
    fn reuse_is_delayed_round_robin() {
        let a = AsidAllocator::new(16);
        let x = a.alloc().unwrap();
        a.free(x);
        assert_ne!(
            a.alloc().unwrap(),
            x,
            "a just-freed ASID is not handed out first"
        );
    }

    #[test]
    #[should_panic(expected = "not allocated")]
    fn double_free_panics() {
        let a = AsidAllocator::new(8);
        let x = a.alloc().unwrap();
        a.free(x);
        a.free(x);
    }
}
