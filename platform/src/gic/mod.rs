//! The Generic Interrupt Controller, version 2 or 3, behind one enum.
//!
//! QEMU `virt` has either a GICv2 (the TCG default) or a GICv3 (`gic-version=3`);
//! the device tree says which ([`GicInfo`], in [`crate::fdt::BoardInfo::gic`]). Both
//! are programmed the same way: every interrupt in Group 1, every priority 0xa0, the
//! priority mask fully open, EOI doing priority drop and deactivation together. With
//! QEMU's default (no Security Extensions, or GICD_CTLR.DS = 1 on v3) the kernel is
//! the only software using the GIC.
//!
//! INTIDs 0-15 are SGIs and 16-31 PPIs: private to one CPU, so their registers are
//! banked (v2, reachable only from that CPU) or live in that CPU's redistributor (v3).
//! INTIDs from 32 up are SPIs, shared through the distributor.
//!
//! The drivers touch CPU system registers (GICv3) and are built for aarch64 only; the
//! register encodings are plain functions, unit-tested on the host.

#[cfg(target_arch = "aarch64")]
use tock_registers::{interfaces::Writeable, registers::WriteOnly};

mod v2;
mod v3;

#[cfg(target_arch = "aarch64")]
pub use v2::GicV2;
#[cfg(target_arch = "aarch64")]
pub use v3::GicV3;

/// The interrupt controller found in the device tree.
#[cfg(target_arch = "aarch64")]
pub enum Gic {
    V2(GicV2),
    V3(GicV3),
}

#[cfg(target_arch = "aarch64")]
impl Gic {
    /// # Safety
    /// The bases in `info` must be virtual addresses at which the GIC's frames are
    /// mapped as Device memory, for as long as this value is used (the kernel maps the
    /// physical addresses from [`crate::fdt::BoardInfo::gic`] and passes
    /// [`GicInfo::map_bases`]'s result).
    pub unsafe fn new(info: &GicInfo) -> Self {
        match *info {
            GicInfo::V2 {
                dist_base,
                cpu_base,
            } => Gic::V2(
                // SAFETY: forwarded from this function's contract.
                unsafe { GicV2::new(dist_base as usize, cpu_base as usize) },
            ),
            GicInfo::V3 {
                dist_base,
                redist_base,
                redist_size,
            } => Gic::V3(
                // SAFETY: forwarded from this function's contract.
                unsafe {
                    GicV3::new(
                        dist_base as usize,
                        redist_base as usize,
                        redist_size as usize,
                    )
                },
            ),
        }
    }

    /// Resets and enables the distributor. Once, on the boot CPU, before any
    /// `init_cpu`.
    pub fn init_distributor(&self) {
        match self {
            Gic::V2(gic) => gic.init_distributor(),
            Gic::V3(gic) => gic.init_distributor(),
        }
    }

    /// Brings up the calling CPU's interface; `mpidr` is the caller's own MPIDR_EL1.
    pub fn init_cpu(&self, mpidr: u64) {
        match self {
            Gic::V2(gic) => gic.init_cpu(),
            Gic::V3(gic) => gic.init_cpu(mpidr),
        }
    }

    /// Enables `intid`. An SPI is routed to the CPU `mpidr`; an SGI or PPI is enabled
    /// on that CPU only (on GICv2 only the CPU itself can do that: call it there).
    pub fn enable_irq(&self, intid: u32, mpidr: u64) {
        assert!(intid < MAX_LINES, "no INTID {intid}");
        match self {
            Gic::V2(gic) => gic.enable_irq(intid, mpidr),
            Gic::V3(gic) => gic.enable_irq(intid, mpidr),
        }
    }

    /// Disables `intid` (for an SGI or PPI: on the CPU `mpidr`, as for `enable_irq`).
    pub fn disable_irq(&self, intid: u32, mpidr: u64) {
        assert!(intid < MAX_LINES, "no INTID {intid}");
        match self {
            Gic::V2(gic) => gic.disable_irq(intid),
            Gic::V3(gic) => gic.disable_irq(intid, mpidr),
        }
    }

    /// Acknowledges the highest-priority pending interrupt; `None` if it was
    /// spurious (INTID 1020-1023), which needs no EOI.
    pub fn ack(&self) -> Option<u32> {
        let intid = match self {
            Gic::V2(gic) => gic.ack(),
            Gic::V3(gic) => gic.ack(),
        };
        (!is_spurious(intid)).then_some(intid)
    }

    /// Ends the interrupt `ack` returned, on the same CPU.
    pub fn eoi(&self, intid: u32) {
        match self {
            Gic::V2(gic) => gic.eoi(intid),
            Gic::V3(gic) => gic.eoi(intid),
        }
    }

    /// Sends SGI `intid` (0-15) to the CPU `target_mpidr`. Stores made before the
    /// call are visible to the target when it takes the interrupt.
    pub fn send_sgi(&self, intid: u32, target_mpidr: u64) {
        assert!(intid < SGI_COUNT, "SGI INTIDs are 0-15, got {intid}");
        match self {
            Gic::V2(gic) => gic.send_sgi(intid, target_mpidr),
            Gic::V3(gic) => gic.send_sgi(intid, target_mpidr),
        }
    }
}

/// Where the GIC's frames are (physical addresses in [`crate::fdt::BoardInfo`];
/// virtual ones when handed to `Gic::new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicInfo {
    V2 {
        /// Distributor (GICD), 64 KiB on `virt`.
        dist_base: u64,
        /// CPU interface (GICC), 64 KiB on `virt`.
        cpu_base: u64,
    },
    V3 {
        /// Distributor (GICD), 64 KiB on `virt`.
        dist_base: u64,
        /// First redistributor region: one frame pair per CPU.
        redist_base: u64,
        /// Size of that region in bytes.
        redist_size: u64,
    },
}

impl GicInfo {
    /// 2 or 3.
    pub fn version(&self) -> u8 {
        match self {
            GicInfo::V2 { .. } => 2,
            GicInfo::V3 { .. } => 3,
        }
    }

    /// The same GIC with every base address passed through `f`, e.g. physical to
    /// the virtual address the kernel mapped it at.
    pub fn map_bases(&self, f: impl Fn(u64) -> u64) -> GicInfo {
        match *self {
            GicInfo::V2 {
                dist_base,
                cpu_base,
            } => GicInfo::V2 {
                dist_base: f(dist_base),
                cpu_base: f(cpu_base),
            },
            GicInfo::V3 {
                dist_base,
                redist_base,
                redist_size,
            } => GicInfo::V3 {
                dist_base: f(dist_base),
                redist_base: f(redist_base),
                redist_size,
            },
        }
    }
}

/// SGIs are INTIDs 0-15.
const SGI_COUNT: u32 = 16;
/// SGIs and PPIs (0-31) are private to a CPU; SPIs start here.
const SPI_BASE: u32 = 32;
/// The architectural maximum INTID + 1 below the special range.
const MAX_LINES: u32 = 1020;
/// One priority for everything: no preemption between the kernel's own interrupts,
/// and well below the 0xff mask so all of them are signalled.
const DEFAULT_PRIORITY: u8 = 0xa0;
/// `DEFAULT_PRIORITY` in each byte of a 4-INTID priority register.
const DEFAULT_PRIORITY_WORD: u32 = u32::from_ne_bytes([DEFAULT_PRIORITY; 4]);
/// Lowest priority: the mask lets every priority through.
const PRIORITY_MASK_OPEN: u8 = 0xff;
const _: () = assert!(
    DEFAULT_PRIORITY < PRIORITY_MASK_OPEN,
    "interrupts must pass the mask"
);

/// Puts the SPIs (INTIDs 32 up to `lines`) in Group 1 at the default priority,
/// disabled, in a distributor's one-bit and one-byte-per-INTID banks (same layout in
/// v2 and v3).
#[cfg(target_arch = "aarch64")]
fn reset_spis(
    igroupr: &[WriteOnly<u32>],
    icenabler: &[WriteOnly<u32>],
    ipriorityr: &[WriteOnly<u32>],
    lines: u32,
) {
    let one_bit = (SPI_BASE / 32) as usize..(lines / 32) as usize;
    for (group, disable) in igroupr[one_bit.clone()].iter().zip(&icenabler[one_bit]) {
        group.set(u32::MAX);
        disable.set(u32::MAX);
    }
    for priority in &ipriorityr[(SPI_BASE / 4) as usize..(lines / 4) as usize] {
        priority.set(DEFAULT_PRIORITY_WORD);
    }
}

/// Puts one CPU's SGIs and PPIs (INTIDs 0-31) in Group 1 at the default priority:
/// GICv2's banked distributor registers or GICv3's redistributor SGI frame.
#[cfg(target_arch = "aarch64")]
fn reset_private(igroupr0: &WriteOnly<u32>, ipriorityr: &[WriteOnly<u32>]) {
    igroupr0.set(u32::MAX);
    for reg in &ipriorityr[..(SPI_BASE / 4) as usize] {
        reg.set(DEFAULT_PRIORITY_WORD);
    }
}

/// INTIDs 1020-1023 are special: nothing to handle and nothing to EOI.
fn is_spurious(intid: u32) -> bool {
    (1020..=1023).contains(&intid)
}

/// The 32-bit register and bit for `intid` in the one-bit-per-INTID banks
/// (IGROUPR, ISENABLER, ICENABLER).
fn bank_bit(intid: u32) -> (usize, u32) {
    ((intid / 32) as usize, 1 << (intid % 32))
}

/// Number of INTIDs the distributor implements, from GICD_TYPER.ITLinesNumber
/// (the same field in v2 and v3).
fn implemented_lines(it_lines_number: u32) -> u32 {
    (32 * (it_lines_number + 1)).min(MAX_LINES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spurious_range() {
        assert!(!is_spurious(1019));
        assert!(is_spurious(1020));
        assert!(is_spurious(1023));
        assert!(!is_spurious(27));
    }

    #[test]
    fn gic_info_version_and_mapping() {
        let v3 = GicInfo::V3 {
            dist_base: 0x800_0000,
            redist_base: 0x80a_0000,
            redist_size: 0xf6_0000,
        };
        assert_eq!(v3.version(), 3);
        let high = v3.map_bases(|pa| pa + 0xffff_0000_0000_0000);
        assert_eq!(
            high,
            GicInfo::V3 {
                dist_base: 0xffff_0000_0800_0000,
                redist_base: 0xffff_0000_080a_0000,
                redist_size: 0xf6_0000,
            }
        );
        let v2 = GicInfo::V2 {
            dist_base: 0x800_0000,
            cpu_base: 0x801_0000,
        };
        assert_eq!(v2.version(), 2);
        assert_eq!(
            v2.map_bases(|pa| pa + 1),
            GicInfo::V2 {
                dist_base: 0x800_0001,
                cpu_base: 0x801_0001
            }
        );
    }

    #[test]
    fn bank_bits() {
        assert_eq!(bank_bit(0), (0, 1));
        assert_eq!(bank_bit(27), (0, 1 << 27));
        assert_eq!(bank_bit(33), (1, 1 << 1));
        assert_eq!(bank_bit(1019), (31, 1 << 27));
    }

    #[test]
    fn lines_from_typer() {
        // QEMU virt: 256 interrupts, ITLinesNumber = 7.
        assert_eq!(implemented_lines(7), 256);
        // The field's maximum would describe 1024, but 1020-1023 are special.
        assert_eq!(implemented_lines(31), MAX_LINES);
    }

    #[test]
    fn default_priority_fills_every_byte() {
        assert_eq!(DEFAULT_PRIORITY_WORD, 0xa0a0_a0a0);
    }
}
