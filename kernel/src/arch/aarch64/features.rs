//! CPU features the memory-management code depends on, read from the ID registers at
//! boot and never assumed (Arm ARM D24.2 "ID_AA64MMFR0_EL1" .. "ID_AA64ISAR0_EL1").

use core::fmt;

/// FEAT_HAFDBS: hardware management of the Access flag and dirty state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hafdbs {
    None,
    AccessFlag,
    AccessFlagDirty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    pub hafdbs: Hafdbs,
    /// FEAT_BBM level (ID_AA64MMFR2_EL1.BBM): 2 allows changing the block size (and the
    /// Contiguous bit) of a live mapping without break-before-make.
    pub bbm_level: u8,
    /// FEAT_TLBIRANGE: TLBI RVA* by address range.
    pub tlbi_range: bool,
    /// FEAT_PAN: privileged access never.
    pub pan: bool,
    pub asid_bits: u8,
    pub pa_bits: u8,
    /// ID_AA64DFR0_EL1.PMUVer (0: no PMUv3).
    pub pmu_version: u8,
    /// FEAT_LSE2 (ID_AA64MMFR2_EL1.AT): load-acquire and store-release accesses that
    /// stay inside one aligned 16-byte quantity need no alignment (Linux's HWCAP_USCAT).
    pub lse2: bool,
}

/// Linux's AT_HWCAP bits this kernel reports: FP, ASIMD, USCAT.
const HWCAP_FP: u64 = 1 << 0;
const HWCAP_ASIMD: u64 = 1 << 1;
const HWCAP_USCAT: u64 = 1 << 25;

fn field(reg: u64, shift: u32) -> u8 {
    ((reg >> shift) & 0xf) as u8
}

impl CpuFeatures {
    pub fn decode(mmfr0: u64, mmfr1: u64, mmfr2: u64, isar0: u64, dfr0: u64) -> Self {
        let hafdbs = match field(mmfr1, 0) {
            0 => Hafdbs::None,
            1 => Hafdbs::AccessFlag,
            _ => Hafdbs::AccessFlagDirty,
        };
        let pa_bits = match field(mmfr0, 0) {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        };
        Self {
            hafdbs,
            bbm_level: field(mmfr2, 52),
            tlbi_range: field(isar0, 56) >= 2,
            pan: field(mmfr1, 20) != 0,
            asid_bits: if field(mmfr0, 4) == 2 { 16 } else { 8 },
            pa_bits,
            pmu_version: match field(dfr0, 8) {
                0xf => 0, // IMPLEMENTATION DEFINED PMU: not PMUv3
                v => v,
            },
            lse2: field(mmfr2, 32) != 0,
        }
    }

    /// AT_HWCAP for user programs, as Linux computes it from the same fields (glibc
    /// reads it; a program tells from HWCAP_USCAT whether an unaligned LDAR faults).
    pub fn linux_hwcap(&self) -> u64 {
        HWCAP_FP | HWCAP_ASIMD | if self.lse2 { HWCAP_USCAT } else { 0 }
    }

    #[cfg(target_os = "none")]
    pub fn read() -> Self {
        use super::regs::read_sysreg;
        Self::decode(
            read_sysreg!(id_aa64mmfr0_el1),
            read_sysreg!(id_aa64mmfr1_el1),
            read_sysreg!(id_aa64mmfr2_el1),
            read_sysreg!(id_aa64isar0_el1),
            read_sysreg!(id_aa64dfr0_el1),
        )
    }

    pub fn hw_access_flag(&self) -> bool {
        self.hafdbs != Hafdbs::None
    }

    pub fn hw_dirty(&self) -> bool {
        self.hafdbs == Hafdbs::AccessFlagDirty
    }
}

/// The boot line: `hafdbs=af+dirty bbm=2 tlbi_range=yes pan=yes asid_bits=16 pmu=v3p5`.
impl fmt::Display for CpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let hafdbs = match self.hafdbs {
            Hafdbs::None => "none",
            Hafdbs::AccessFlag => "af",
            Hafdbs::AccessFlagDirty => "af+dirty",
        };
        let pmu = match self.pmu_version {
            0 => "none",
            1 => "v3",
            4 => "v3p1",
            5 => "v3p4",
            6 => "v3p5",
            7 => "v3p7",
            8 => "v3p8",
            _ => "v3p9+",
        };
        write!(
            f,
            "hafdbs={hafdbs} bbm={} tlbi_range={} pan={} asid_bits={} pmu={pmu}",
            self.bbm_level,
            yn(self.tlbi_range),
            yn(self.pan),
            self.asid_bits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cortex_a72_has_none_of_them() {
        // Values QEMU's cortex-a72 model reports.
        let f = CpuFeatures::decode(0x1124, 0, 0, 0x0001_1120, 0x1030_5106);
        assert_eq!(f.hafdbs, Hafdbs::None);
        assert_eq!((f.bbm_level, f.tlbi_range, f.pan), (0, false, false));
        assert_eq!(f.asid_bits, 16);
        assert_eq!(f.pa_bits, 44);
        assert_eq!(
            f.to_string(),
            "hafdbs=none bbm=0 tlbi_range=no pan=no asid_bits=16 pmu=v3"
        );
    }

    #[test]
    fn max_like_cpu() {
        let mmfr1 = 2 | (3 << 20);
        let mmfr2 = 2u64 << 52;
        let isar0 = 2u64 << 56;
        let f = CpuFeatures::decode(0x5, mmfr1, mmfr2, isar0, 6 << 8);
        assert!(f.hw_access_flag() && f.hw_dirty());
        assert_eq!(
            f.to_string(),
            "hafdbs=af+dirty bbm=2 tlbi_range=yes pan=yes asid_bits=8 pmu=v3p5"
        );
        assert!(
            !CpuFeatures::decode(0, 1, 0, 1 << 56, 0).tlbi_range,
            "TLB=1 is outer-shareable only"
        );
    }

    #[test]
    fn lse2_is_reported_as_hwcap_uscat() {
        let without = CpuFeatures::decode(0x5, 0, 0, 0, 0);
        assert_eq!(without.linux_hwcap(), 0b11);
        let with = CpuFeatures::decode(0x5, 0, 1 << 32, 0, 0);
        assert!(with.lse2);
        assert_eq!(with.linux_hwcap(), 0b11 | 1 << 25);
    }
}

#[cfg(target_os = "none")]
static FEATURES: spin::Once<CpuFeatures> = spin::Once::new();

/// Read this machine's features from the ID registers (boot CPU, once; the
/// secondaries are the same model under QEMU and are configured from this record).
#[cfg(target_os = "none")]
pub fn read_once() -> &'static CpuFeatures {
    FEATURES.call_once(CpuFeatures::read)
}

/// The features read at boot.
#[cfg(target_os = "none")]
pub fn features() -> &'static CpuFeatures {
    FEATURES.get().expect("features read at boot")
}
