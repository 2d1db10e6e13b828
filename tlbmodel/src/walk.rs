//! The stage-1 translation-table walk of the EL1&0 regime with the 4 KiB granule
//! (Arm ARM, "Translation process"), as the plugin runs it on an L2 TLB miss over
//! guest memory: which TTBR (VA bit 55), the start level from TxSZ (level -1 for the
//! 52-bit VAs of FEAT_LPA2, which Debian's Linux uses on `-cpu max`), one descriptor
//! load per level, the leaf's nG and Contiguous bits. Output addresses are taken from
//! bits 49:12 (valid with and without TCR.DS; guest RAM lies far below 2^48). Other
//! granules are not modelled (the walk says so, and the plugin counts the access as
//! unmodelled).

use crate::model::Walk;

/// The registers a walk reads, as last written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regime {
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
}

/// TCR_EL1 fields (Arm ARM, "TCR_EL1, Translation Control Register (EL1)").
mod tcr {
    pub const T0SZ_SHIFT: u32 = 0;
    pub const EPD0: u64 = 1 << 7;
    pub const TG0_SHIFT: u32 = 14;
    pub const TG0_4K: u64 = 0;
    pub const T1SZ_SHIFT: u32 = 16;
    pub const A1: u64 = 1 << 22;
    pub const EPD1: u64 = 1 << 23;
    pub const TG1_SHIFT: u32 = 30;
    pub const TG1_4K: u64 = 2;
    pub const AS: u64 = 1 << 36;
    pub const DS: u64 = 1 << 59;
}

/// Descriptor fields (Arm ARM, "Translation table descriptor formats").
mod desc {
    pub const VALID: u64 = 1;
    pub const TABLE_OR_PAGE: u64 = 2;
    pub const NG: u64 = 1 << 11;
    pub const CONTIGUOUS: u64 = 1 << 52;
    /// Output address bits 49:12 (bits 49:48 are RES0 without TCR.DS).
    pub const ADDR: u64 = 0x0003_ffff_ffff_f000;
    /// TTBR's BADDR (bit 0 is CnP).
    pub const TTBR_BADDR: u64 = 0x0000_ffff_ffff_fffe;
}

/// Why a walk gave no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// A translation fault (or a walk disabled by EPDn, or a VA out of range).
    Fault,
    /// A granule or a descriptor read this model does not handle.
    Unmodelled,
}

/// A translation: what the TLB caches and where the VA lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub walk: Walk,
    pub pa: u64,
}

impl Regime {
    /// The ASID the current accesses are tagged with (TCR.A1 says which TTBR holds it;
    /// TCR.AS whether it has 16 bits or 8).
    pub fn asid(&self) -> u16 {
        let ttbr = if self.tcr & tcr::A1 != 0 {
            self.ttbr1
        } else {
            self.ttbr0
        };
        let asid = (ttbr >> 48) as u16;
        if self.tcr & tcr::AS != 0 {
            asid
        } else {
            asid & 0xff
        }
    }

    /// FEAT_LPA2's descriptor and TLBI operand formats are in use (TCR_EL1.DS).
    pub fn lpa2(&self) -> bool {
        self.tcr & tcr::DS != 0
    }

    /// Walks `va` with `read` loading a descriptor from a physical address.
    pub fn walk(
        &self,
        va: u64,
        mut read: impl FnMut(u64) -> Option<u64>,
    ) -> Result<Translation, Miss> {
        let upper = va >> 55 & 1 == 1;
        let (ttbr, tsz, disabled, granule_4k) = if upper {
            let tg1 = self.tcr >> tcr::TG1_SHIFT & 3;
            (
                self.ttbr1,
                self.tcr >> tcr::T1SZ_SHIFT & 63,
                self.tcr & tcr::EPD1 != 0,
                tg1 == tcr::TG1_4K,
            )
        } else {
            let tg0 = self.tcr >> tcr::TG0_SHIFT & 3;
            (
                self.ttbr0,
                self.tcr >> tcr::T0SZ_SHIFT & 63,
                self.tcr & tcr::EPD0 != 0,
                tg0 == tcr::TG0_4K,
            )
        };
        if !granule_4k {
            return Err(Miss::Unmodelled);
        }
        // VA bits 55:ia must all equal bit 55 (the top byte is left to TBI, not checked).
        let ia = 64 - tsz as u32;
        if disabled || !(16..=52).contains(&ia) {
            return Err(Miss::Fault);
        }
        let high = (va << 8) as i64 >> (ia + 8);
        if high != if upper { -1 } else { 0 } {
            return Err(Miss::Fault);
        }
        // Each level resolves 9 bits (the start level what is left of ia); level 3
        // resolves bits 20:12.
        let mut level = 4 - (ia as i32 - 12 + 8) / 9;
        let mut table = ttbr & desc::TTBR_BADDR;
        let mut loads = 0u8;
        loop {
            let shift = (12 + 9 * (3 - level)) as u32;
            let index = (va >> shift) & ((1 << (ia - shift).min(9)) - 1);
            let d = read(table + index * 8).ok_or(Miss::Unmodelled)?;
            loads += 1;
            // Invalid, a reserved level-3 encoding, or a block at level 0 or -1 (only
            // FEAT_LPA2 has level-0 blocks, which no kernel here uses).
            let table_bit = d & desc::TABLE_OR_PAGE != 0;
            if d & desc::VALID == 0 || (level == 3 && !table_bit) || (level <= 0 && !table_bit) {
                return Err(Miss::Fault);
            }
            if level < 3 && d & desc::TABLE_OR_PAGE != 0 {
                table = d & desc::ADDR;
                level += 1;
                continue;
            }
            let size = 1u64 << shift;
            return Ok(Translation {
                walk: Walk {
                    shift: shift as u8,
                    contiguous: d & desc::CONTIGUOUS != 0,
                    global: d & desc::NG == 0,
                    loads,
                },
                pa: (d & desc::ADDR & !(size - 1)) | (va & (size - 1)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Tables in a map from physical address to descriptor.
    struct Mem(HashMap<u64, u64>);

    impl Mem {
        fn set(&mut self, table: u64, index: u64, d: u64) {
            self.0.insert(table + index * 8, d);
        }
    }

    /// T0SZ = T1SZ = 16 (48-bit VAs, 4 levels), TG1 4 KiB, A1, 16-bit ASIDs.
    const TCR: u64 = 16 | 16 << 16 | 2 << 30 | 1 << 22 | 1 << 36;

    #[test]
    fn walks_four_levels_to_a_contiguous_page_and_three_to_a_block() {
        let mut m = Mem(HashMap::new());
        let va = 0x0000_0000_4001_3123u64;
        // L0 index 0, L1 index 1, L2 index 0, L3 index 0x13
        m.set(0x1000, 0, 0x2000 | 3);
        m.set(0x2000, 1, 0x3000 | 3);
        m.set(0x3000, 0, 0x4000 | 3);
        m.set(
            0x4000,
            0x13,
            0x8_0013_0000 | desc::CONTIGUOUS | desc::NG | 0x403,
        );
        // A 2 MiB block at L2 index 1, global.
        m.set(0x3000, 1, 0x9_0000_0000 | 0x401);
        let r = Regime {
            ttbr0: 0x1000,
            ttbr1: 5 << 48 | 0x7000,
            tcr: TCR,
        };
        assert_eq!(r.asid(), 5);
        let t = r.walk(va, |pa| m.0.get(&pa).copied()).unwrap();
        assert_eq!(t.pa, 0x8_0013_0123);
        assert_eq!(
            t.walk,
            Walk {
                shift: 12,
                contiguous: true,
                global: false,
                loads: 4
            }
        );
        let t = r
            .walk(0x0000_0000_4020_0040, |pa| m.0.get(&pa).copied())
            .unwrap();
        assert_eq!(t.pa, 0x9_0000_0040);
        assert_eq!(
            t.walk,
            Walk {
                shift: 21,
                contiguous: false,
                global: true,
                loads: 3
            }
        );
        // An empty slot faults; so does a VA above the 48-bit range of TTBR0.
        assert_eq!(
            r.walk(0x0000_0000_4040_0000, |pa| Some(
                m.0.get(&pa).copied().unwrap_or(0)
            )),
            Err(Miss::Fault)
        );
        assert_eq!(
            r.walk(0x0001_0000_0000_0000, |_| unreachable!()),
            Err(Miss::Fault)
        );
        // A 64 KiB granule is not modelled.
        let r64 = Regime {
            tcr: TCR | 1 << 14,
            ..r
        };
        assert_eq!(r64.walk(va, |_| unreachable!()), Err(Miss::Unmodelled));
    }

    /// FEAT_LPA2's 52-bit VAs (T1SZ = 12): level -1 resolves VA bits 51:48.
    #[test]
    fn a_52_bit_regime_starts_at_level_minus_1() {
        let mut m = Mem(HashMap::new());
        let tcr = 12 | 12 << 16 | 2 << 30 | 1 << 59;
        let va = 0xfff0_0000_4020_1000u64;
        m.set(0x1000, 0, 0x2000 | 3);
        m.set(0x2000, 0, 0x3000 | 3);
        m.set(0x3000, 1, 0x4000 | 3);
        m.set(0x4000, 1, 0x5000 | 3);
        m.set(0x5000, 1, 0x4020_1000 | 0x403);
        let r = Regime {
            ttbr0: 0,
            ttbr1: 0x1000,
            tcr,
        };
        let t = r.walk(va, |pa| m.0.get(&pa).copied()).unwrap();
        assert_eq!((t.pa, t.walk.loads), (0x4020_1000, 5));
        // Below the 52-bit upper range.
        assert_eq!(
            r.walk(0xffe0_0000_0000_0000, |_| unreachable!()),
            Err(Miss::Fault)
        );
    }

    #[test]
    fn a_39_bit_regime_starts_at_level_1_in_the_upper_half() {
        let mut m = Mem(HashMap::new());
        let tcr = 25 << 16 | 2 << 30 | 25;
        let va = 0xffff_ff80_4020_1000u64;
        m.set(0x1000, 1, 0x2000 | 3);
        m.set(0x2000, 1, 0x3000 | 3);
        m.set(0x3000, 1, 0x4020_1000 | 0x403);
        let r = Regime {
            ttbr0: 0,
            ttbr1: 0x1000,
            tcr,
        };
        let t = r.walk(va, |pa| m.0.get(&pa).copied()).unwrap();
        assert_eq!((t.pa, t.walk.loads, t.walk.global), (0x4020_1000, 3, true));
        assert_eq!(r.asid(), 0);
    }
}
