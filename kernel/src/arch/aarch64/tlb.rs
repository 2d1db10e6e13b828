//! TLB maintenance instructions, broadcast to the Inner Shareable domain and tagged
//! with the ASID (Arm ARM D8.13 "TLB maintenance instructions"; ranges: FEAT_TLBIRANGE,
//! "TLBI RVALE1IS"). The page-table layer counts and checks every call; these only
//! encode the operands and issue the instruction. A DSB ISH completes them.

/// The page of the operands: the VA-based ones hold VA[55:12] whatever the granule,
/// and the range ones count pages of the granule their TG field names (0b01: 4 KiB).
/// The kernel's granule is this one (`mm::addr` asserts it).
pub const OPERAND_PAGE_SHIFT: u64 = 12;

/// Operand of TLBI VA-based instructions: ASID in [63:48], VA[55:12] in [43:0].
pub const fn va_operand(asid: u16, va: u64) -> u64 {
    ((asid as u64) << 48) | ((va >> OPERAND_PAGE_SHIFT) & ((1 << 44) - 1))
}

/// Operand of TLBI RVA*: ASID [63:48], TG [47:46] (01: 4 KiB), SCALE [45:44],
/// NUM [43:39], TTL [38:37] (0: any level), BaseADDR [36:0] (VA >> 12).
/// The range covers (NUM + 1) << (5 * SCALE + 1) pages.
pub const fn range_operand(asid: u16, va: u64, scale: u64, num: u64) -> u64 {
    ((asid as u64) << 48)
        | (1 << 46)
        | (scale << 44)
        | (num << 39)
        | ((va >> OPERAND_PAGE_SHIFT) & ((1 << 37) - 1))
}

/// One step of a range invalidation: a range instruction or a single page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Range {
        first_page: u64,
        scale: u64,
        num: u64,
    },
    Page {
        page: u64,
    },
}

/// The most pages [`range_steps`] covers: an odd page by itself, then NUM + 1 of up to
/// 31 units of 2^(5 * SCALE + 1) pages for each SCALE 0..=3: every count below 2^21.
/// Larger ranges are flushed by ASID (the page-table layer decides, `pgtable::ctx`).
pub const MAX_RANGE_PAGES: u64 = (1 << 21) - 1;

/// Split `pages` pages (at most [`MAX_RANGE_PAGES`]) from page number `first` into
/// range steps, as few as the encoding allows (an odd page goes by itself), smallest
/// scale first: at most 5 steps.
pub fn range_steps(first: u64, pages: u64, mut emit: impl FnMut(Step)) {
    assert!(
        pages <= MAX_RANGE_PAGES,
        "{pages} pages: too many for range TLBI (flush the ASID)"
    );
    let (mut page, mut left, mut scale) = (first, pages, 0u64);
    if left % 2 == 1 {
        emit(Step::Page { page });
        page += 1;
        left -= 1;
    }
    while left > 0 {
        let chunk = (left >> (5 * scale + 1)) & 0x1f;
        if chunk > 0 {
            let n = chunk << (5 * scale + 1);
            emit(Step::Range {
                first_page: page,
                scale,
                num: chunk - 1,
            });
            page += n;
            left -= n;
        }
        scale += 1;
    }
}

#[cfg(target_os = "none")]
mod insn {
    use super::*;

    /// TLBI VALE1IS: last-level entry of one page of `asid`.
    pub fn vale1is(asid: u16, va: u64) {
        // SAFETY: TLB invalidation has no memory effect visible to Rust.
        unsafe {
            core::arch::asm!("tlbi vale1is, {}", in(reg) va_operand(asid, va), options(nostack, preserves_flags))
        };
    }

    /// TLBI VAE1IS: all levels (walk caches too) for one page of `asid`.
    pub fn vae1is(asid: u16, va: u64) {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("tlbi vae1is, {}", in(reg) va_operand(asid, va), options(nostack, preserves_flags))
        };
    }

    /// TLBI RVALE1IS over `pages` pages (the CPU must have FEAT_TLBIRANGE).
    pub fn rvale1is(asid: u16, va: u64, pages: u64) {
        range_steps(va >> OPERAND_PAGE_SHIFT, pages, |s| match s {
            Step::Page { page } => vale1is(asid, page << OPERAND_PAGE_SHIFT),
            Step::Range {
                first_page,
                scale,
                num,
            } => {
                let op = range_operand(asid, first_page << OPERAND_PAGE_SHIFT, scale, num);
                // SAFETY: as above; only issued when ID_AA64ISAR0_EL1.TLB says so.
                unsafe {
                    core::arch::asm!(".arch armv8.4-a", "tlbi rvale1is, {}", in(reg) op, options(nostack, preserves_flags))
                };
            }
        });
    }

    /// TLBI ASIDE1IS: everything tagged with `asid`.
    pub fn aside1is(asid: u16) {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("tlbi aside1is, {}", in(reg) (asid as u64) << 48, options(nostack, preserves_flags))
        };
    }

    /// TLBI VMALLE1IS: all EL1&0 entries.
    pub fn vmalle1is() {
        // SAFETY: as above.
        unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack, preserves_flags)) };
    }

    /// DSB ISH: the TLBIs before it have completed on every CPU.
    pub fn dsb_ish() {
        // SAFETY: barrier only.
        unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
    }
}

#[cfg(target_os = "none")]
pub use insn::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(first: u64, pages: u64) -> Vec<Step> {
        let mut steps = Vec::new();
        range_steps(first, pages, |s| steps.push(s));
        let mut next = first;
        for s in &steps {
            match *s {
                Step::Page { page } => {
                    assert_eq!(page, next);
                    next += 1;
                }
                Step::Range {
                    first_page,
                    scale,
                    num,
                } => {
                    assert_eq!(first_page, next);
                    assert!(num <= 30 && scale <= 3);
                    next += (num + 1) << (5 * scale + 1);
                }
            }
        }
        assert_eq!(next, first + pages, "steps cover exactly the range");
        steps
    }

    #[test]
    fn one_contiguous_block_is_one_range_instruction() {
        assert_eq!(
            covered(0x400, 16),
            [Step::Range {
                first_page: 0x400,
                scale: 0,
                num: 7
            }]
        );
    }

    #[test]
    fn every_length_is_covered_exactly() {
        for pages in 0..3000 {
            let steps = covered(0x1000, pages);
            assert!(steps.len() <= 8, "{pages} pages took {} steps", steps.len());
        }
        // 2 MiB: 512 pages, one instruction at scale 1.
        assert_eq!(
            covered(0, 512),
            [Step::Range {
                first_page: 0,
                scale: 1,
                num: 7
            }]
        );
    }

    #[test]
    fn largest_range_is_five_steps() {
        let steps = covered(0x7_0000, MAX_RANGE_PAGES);
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert_eq!(steps[0], Step::Page { page: 0x7_0000 });
    }

    #[test]
    #[should_panic(expected = "too many for range TLBI")]
    fn two_to_the_21_pages_is_refused() {
        // It used to fall through every scale and come out as 2^21 single pages.
        range_steps(0, 1 << 21, |_| {});
    }

    #[test]
    fn operands() {
        assert_eq!(va_operand(5, 0x1234_5000), (5 << 48) | 0x12345);
        let op = range_operand(0xffff, 0x10000, 0, 7);
        assert_eq!(op >> 48, 0xffff);
        assert_eq!((op >> 46) & 3, 1, "TG = 4 KiB");
        assert_eq!((op >> 39) & 0x1f, 7);
        assert_eq!(op & ((1 << 37) - 1), 0x10);
    }
}
