//! Physical and virtual addresses, the sizes of the 4 KiB translation granule, and the
//! linear map between the two.
//!
//! `PhysAddr` and `VirtAddr` are plain newtypes so that a physical address can never be
//! passed where a virtual one is expected. Sizes are in bytes (`usize`); page counts are
//! called `nr` everywhere and turned into bytes with `* PAGE_SIZE` at exactly one place
//! per operation (see `pgtable::range_end`).

use core::fmt;

/// log2 of the translation granule.
pub const PAGE_SHIFT: usize = 12;
/// The translation granule: 4 KiB.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
// TLB maintenance encodes its operands for this granule.
const _: () = assert!(PAGE_SHIFT as u64 == crate::arch::aarch64::tlb::OPERAND_PAGE_SHIFT);
/// Descriptors in one translation table (4 KiB / 8 bytes).
pub const PTRS_PER_TABLE: usize = 512;
/// Level-3 entries in one contiguous block (the Contiguous bit, 4 KiB granule).
pub const CONT_PTES: usize = 16;
/// Bytes mapped by one contiguous block of level-3 entries: 64 KiB.
pub const CONT_SIZE: usize = CONT_PTES * PAGE_SIZE;
/// Bytes mapped by one level-2 entry (a PMD block, or one level-3 table): 2 MiB.
pub const PMD_SIZE: usize = PTRS_PER_TABLE * PAGE_SIZE;
/// Level-2 block entries in one contiguous block (the Contiguous bit, 4 KiB granule).
pub const CONT_PMDS: usize = 16;
/// Bytes mapped by one contiguous block of level-2 entries: 32 MiB.
pub const CONT_PMD_SIZE: usize = CONT_PMDS * PMD_SIZE;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address as a number.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: usize) -> bool {
                assert!(align.is_power_of_two());
                self.0 & (align as u64 - 1) == 0
            }

            /// The greatest multiple of `align` (a power of two) not above the address.
            pub const fn align_down(self, align: usize) -> Self {
                assert!(align.is_power_of_two());
                Self(self.0 & !(align as u64 - 1))
            }

            /// The least multiple of `align` (a power of two) not below the address.
            pub const fn align_up(self, align: usize) -> Self {
                assert!(align.is_power_of_two());
                match self.0.checked_add(align as u64 - 1) {
                    Some(v) => Self(v & !(align as u64 - 1)),
                    None => panic!("address overflow in align_up"),
                }
            }

            /// The address `bytes` further on; panics on overflow.
            pub const fn add(self, bytes: usize) -> Self {
                match self.0.checked_add(bytes as u64) {
                    Some(v) => Self(v),
                    None => panic!("address overflow in add"),
                }
            }

            /// Bytes from `base` up to the address; panics if `base` is above it.
            pub const fn offset_from(self, base: Self) -> usize {
                match self.0.checked_sub(base.0) {
                    Some(v) => v as usize,
                    None => panic!("offset_from: base above address"),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", stringify!($name), self.0)
            }
        }
    };
}

address_type!(
    /// A physical (output) address.
    PhysAddr
);
address_type!(
    /// A virtual (input) address: user (TTBR0_EL1) or kernel (TTBR1_EL1, linear map).
    VirtAddr
);

impl PhysAddr {
    pub const fn new(a: u64) -> Self {
        Self(a)
    }

    /// Page frame number.
    pub const fn pfn(self) -> usize {
        (self.0 >> PAGE_SHIFT) as usize
    }

    pub const fn from_pfn(pfn: usize) -> Self {
        Self((pfn as u64) << PAGE_SHIFT)
    }
}

impl VirtAddr {
    pub const fn new(a: u64) -> Self {
        Self(a)
    }

    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    pub fn as_ptr<T>(self) -> *mut T {
        self.0 as usize as *mut T
    }
}

/// Offset of the linear map and of the kernel image (the address map in `mm`'s module
/// doc): VA = PA + KERNEL_VA_OFFSET.
pub const KERNEL_VA_OFFSET: u64 = 0xffff_0000_0000_0000;

/// Linear-map address of a physical address.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(pa.as_u64() + KERNEL_VA_OFFSET)
}

/// Physical address of a linear-map (or kernel image) address.
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    debug_assert!(va.as_u64() >= KERNEL_VA_OFFSET);
    PhysAddr::new(va.as_u64() - KERNEL_VA_OFFSET)
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        let va = VirtAddr(0x1_2345);
        assert_eq!(va.align_down(PAGE_SIZE), VirtAddr(0x1_2000));
        assert_eq!(va.align_up(CONT_SIZE), VirtAddr(0x2_0000));
        assert!(VirtAddr(0x20_0000).is_aligned(PMD_SIZE));
        assert!(!va.is_aligned(PAGE_SIZE));
        assert_eq!(va.add(PAGE_SIZE).offset_from(va), PAGE_SIZE);
        assert_eq!(
            format!("{:?}", PhysAddr(0x4000_0000)),
            "PhysAddr(0x40000000)"
        );
        assert_eq!(CONT_SIZE, 64 * 1024);
        assert_eq!(PMD_SIZE, 2 * 1024 * 1024);
    }
}
