//! The instructions the plugin acts on, decoded from their bytes at translation: the
//! system-register writes that change the translation regime, the TLB maintenance
//! instructions (Arm ARM, "A64 system instructions for TLB maintenance"), and the
//! benchmark's phase markers.
//!
//! The markers are ALU no-ops no compiler emits and Linux never executes at EL0:
//! `orr x27, x27, x27` opens a phase whose id is in x27, `orr x28, x28, x28` closes
//! it (user/src/bench.rs writes them).

use crate::model::Tlbi;

/// `orr x27, x27, x27`: a phase starts; x27 holds its id.
pub const MARK_START: u32 = 0xaa1b_037b;
/// `orr x28, x28, x28`: the phase ends.
pub const MARK_STOP: u32 = 0xaa1c_039c;

/// A register the walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sysreg {
    Ttbr0,
    Ttbr1,
    Tcr,
    Sctlr,
}

/// What a TLBI invalidates, before its operand is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbiKind {
    All,
    Asid,
    /// By VA; `all_asids` for the VAA forms, `last_level` for the L forms.
    Va {
        all_asids: bool,
        last_level: bool,
    },
    /// By range (FEAT_TLBIRANGE), the same flags.
    Range {
        all_asids: bool,
        last_level: bool,
    },
}

/// An instruction the plugin acts on; `rt` is the register operand (31 = XZR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    Msr(Sysreg, u8),
    Tlbi(TlbiKind, u8),
    MarkStart,
    MarkStop,
}

/// `MSR <sysreg>, Xt`: 1101 0101 0001 op0[0] op1 CRn CRm op2 Rt (op0 = 3 here).
const MSR_MASK: u32 = 0xffff_ffe0;
const MSR_TTBR0_EL1: u32 = 0xd518_2000;
const MSR_TTBR1_EL1: u32 = 0xd518_2020;
const MSR_TCR_EL1: u32 = 0xd518_2040;
const MSR_SCTLR_EL1: u32 = 0xd518_1000;

/// `SYS #op1, C8, Cm, #op2, Xt` is TLBI: 1101 0101 0000 1 op1 1000 CRm op2 Rt.
const TLBI_MASK: u32 = 0xfff8_f000;
const TLBI: u32 = 0xd508_8000;

pub fn decode(insn: u32) -> Option<Insn> {
    let rt = (insn & 31) as u8;
    match insn {
        MARK_START => return Some(Insn::MarkStart),
        MARK_STOP => return Some(Insn::MarkStop),
        _ => {}
    }
    let reg = match insn & MSR_MASK {
        MSR_TTBR0_EL1 => Some(Sysreg::Ttbr0),
        MSR_TTBR1_EL1 => Some(Sysreg::Ttbr1),
        MSR_TCR_EL1 => Some(Sysreg::Tcr),
        MSR_SCTLR_EL1 => Some(Sysreg::Sctlr),
        _ => None,
    };
    if let Some(r) = reg {
        return Some(Insn::Msr(r, rt));
    }
    if insn & TLBI_MASK != TLBI {
        return None;
    }
    let op1 = (insn >> 16) & 7;
    let crm = (insn >> 8) & 15;
    let op2 = (insn >> 5) & 7;
    let flags = |op2: u32| (op2 == 3 || op2 == 7, op2 >= 5);
    let kind = match (op1, crm, op2) {
        // Outer shareable (1), inner shareable (3), this CPU (7).
        (0, 1 | 3 | 7, 0) => TlbiKind::All,
        (0, 1 | 3 | 7, 2) => TlbiKind::Asid,
        (0, 1 | 3 | 7, 1 | 3 | 5 | 7) => {
            let (all_asids, last_level) = flags(op2);
            TlbiKind::Va {
                all_asids,
                last_level,
            }
        }
        // Range forms: inner shareable (2), outer shareable (5), this CPU (6).
        (0, 2 | 5 | 6, 1 | 3 | 5 | 7) => {
            let (all_asids, last_level) = flags(op2);
            TlbiKind::Range {
                all_asids,
                last_level,
            }
        }
        // From EL2: ALLE1 and VMALLS12E1 remove every EL1 entry too.
        (4, 3 | 7, 4 | 6) => TlbiKind::All,
        _ => return None,
    };
    Some(Insn::Tlbi(kind, rt))
}

/// The maintenance a TLBI with operand `xt` performs (Arm ARM, "TLBI VAE1" etc.):
/// ASID in bits 63:48; by VA, VA[55:12] in bits 43:0; by range, BaseADDR in bits 36:0
/// in granules of TG (bits 47:46), or in 64 KiB units when `lpa2` (TCR_EL1.DS = 1:
/// BaseADDR is VA[52:16]), (NUM + 1) << (5 * SCALE + 1) granules, the upper VA bits
/// copied from the top bit BaseADDR holds. A reserved TG removes nothing, as the Arm
/// ARM allows.
pub fn tlbi(kind: TlbiKind, xt: u64, lpa2: bool) -> Option<Tlbi> {
    let asid = (xt >> 48) as u16;
    let pick = |all: bool| (!all).then_some(asid);
    Some(match kind {
        TlbiKind::All => Tlbi::All,
        TlbiKind::Asid => Tlbi::Asid(asid),
        TlbiKind::Va {
            all_asids,
            last_level,
        } => Tlbi::Va {
            va: sign_extend(xt << 12, 55),
            asid: pick(all_asids),
            last_level,
        },
        TlbiKind::Range {
            all_asids,
            last_level,
        } => {
            let granule = match (xt >> 46) & 3 {
                1 => 12,
                2 => 14,
                3 => 16,
                _ => return None,
            };
            let scale = (xt >> 44) & 3;
            let num = (xt >> 39) & 31;
            let base_shift = if lpa2 { 16 } else { granule };
            Tlbi::Range {
                va: sign_extend((xt & ((1 << 37) - 1)) << base_shift, 36 + base_shift),
                len: (num + 1) << (5 * scale + 1) << granule,
                asid: pick(all_asids),
                last_level,
            }
        }
    })
}

/// `v` with bits above `bit` copies of it.
fn sign_extend(v: u64, bit: u32) -> u64 {
    let s = 63 - bit;
    (((v << s) as i64) >> s) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_registers_the_walk_needs() {
        // msr ttbr0_el1, x1; msr ttbr1_el1, x0; msr tcr_el1, x2; msr sctlr_el1, x19
        assert_eq!(decode(0xd518_2001), Some(Insn::Msr(Sysreg::Ttbr0, 1)));
        assert_eq!(decode(0xd518_2020), Some(Insn::Msr(Sysreg::Ttbr1, 0)));
        assert_eq!(decode(0xd518_2042), Some(Insn::Msr(Sysreg::Tcr, 2)));
        assert_eq!(decode(0xd518_1013), Some(Insn::Msr(Sysreg::Sctlr, 19)));
        // mrs x0, ttbr0_el1 is a read
        assert_eq!(decode(0xd538_2000), None);
    }

    #[test]
    fn decodes_tlbi_forms() {
        let va = |all_asids, last_level| TlbiKind::Va {
            all_asids,
            last_level,
        };
        // tlbi vmalle1is; tlbi vmalle1; tlbi aside1is, x0
        assert_eq!(decode(0xd508_831f), Some(Insn::Tlbi(TlbiKind::All, 31)));
        assert_eq!(decode(0xd508_871f), Some(Insn::Tlbi(TlbiKind::All, 31)));
        assert_eq!(decode(0xd508_8340), Some(Insn::Tlbi(TlbiKind::Asid, 0)));
        // tlbi vae1is, x1; vale1is, x2; vaae1is, x3; vaale1, x4
        assert_eq!(decode(0xd508_8321), Some(Insn::Tlbi(va(false, false), 1)));
        assert_eq!(decode(0xd508_83a2), Some(Insn::Tlbi(va(false, true), 2)));
        assert_eq!(decode(0xd508_8363), Some(Insn::Tlbi(va(true, false), 3)));
        assert_eq!(decode(0xd508_87e4), Some(Insn::Tlbi(va(true, true), 4)));
        // tlbi rvale1is, x5
        assert_eq!(
            decode(0xd508_82a5),
            Some(Insn::Tlbi(
                TlbiKind::Range {
                    all_asids: false,
                    last_level: true
                },
                5
            ))
        );
        // dc civac, x0 is a SYS instruction but no TLBI
        assert_eq!(decode(0xd50b_7e20), None);
        assert_eq!(decode(MARK_START), Some(Insn::MarkStart));
        assert_eq!(decode(MARK_STOP), Some(Insn::MarkStop));
    }

    #[test]
    fn tlbi_operands() {
        const VA: TlbiKind = TlbiKind::Va {
            all_asids: false,
            last_level: true,
        };
        const VAA: TlbiKind = TlbiKind::Va {
            all_asids: true,
            last_level: false,
        };
        const RVA: TlbiKind = TlbiKind::Range {
            all_asids: false,
            last_level: true,
        };
        const RVAA: TlbiKind = TlbiKind::Range {
            all_asids: true,
            last_level: false,
        };
        let user = 0x0000_7f12_3456_0000u64;
        let kernel = 0xffff_8000_4020_0000u64;
        let xt = |va: u64, asid: u64| (asid << 48) | ((va >> 12) & ((1 << 44) - 1));
        let by_va = |va, asid, last_level| {
            Some(Tlbi::Va {
                va,
                asid,
                last_level,
            })
        };
        let range = |va, len, asid, last_level| {
            Some(Tlbi::Range {
                va,
                len,
                asid,
                last_level,
            })
        };
        assert_eq!(tlbi(VA, xt(user, 7), false), by_va(user, Some(7), true));
        assert_eq!(tlbi(VAA, xt(kernel, 7), false), by_va(kernel, None, false));
        // 4 KiB granule (TG 1), SCALE 0, NUM 7: (7 + 1) << 1 = 16 pages = 64 KiB.
        let base = |va: u64, shift: u32| (va >> shift) & ((1 << 37) - 1);
        let xt = (9 << 48) | (1 << 46) | (7 << 39) | base(user, 12);
        assert_eq!(tlbi(RVA, xt, false), range(user, 64 << 10, Some(9), true));
        // SCALE 1, NUM 0 over a kernel address: 64 pages.
        let xt = (1 << 46) | (1 << 44) | base(kernel, 12);
        assert_eq!(tlbi(RVAA, xt, false), range(kernel, 64 << 12, None, false));
        // With TCR_EL1.DS (FEAT_LPA2) BaseADDR counts 64 KiB units: VA[52:16].
        let xt = (1 << 46) | (1 << 44) | base(kernel, 16);
        assert_eq!(tlbi(RVAA, xt, true), range(kernel, 64 << 12, None, false));
        let xt = (1 << 46) | base(user, 16);
        assert_eq!(tlbi(RVA, xt, true), range(user, 2 << 12, Some(0), true));
        // A reserved TG.
        assert_eq!(tlbi(RVAA, 0, false), None);
    }
}
