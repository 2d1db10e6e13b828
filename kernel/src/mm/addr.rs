//! Physical and virtual addresses as distinct types, and the page-size constants.

use core::fmt;

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u64);

macro_rules! addr_common {
    ($t:ident) => {
        impl $t {
            pub const fn new(a: u64) -> Self {
                Self(a)
            }
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            pub const fn as_usize(self) -> usize {
                self.0 as usize
            }
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            pub const fn align_up(self, align: u64) -> Self {
                Self((self.0 + align - 1) & !(align - 1))
            }
            pub const fn add(self, bytes: u64) -> Self {
                Self(self.0 + bytes)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

addr_common!(PhysAddr);
addr_common!(VirtAddr);

impl PhysAddr {
    /// Page frame number.
    pub const fn pfn(self) -> usize {
        (self.0 >> PAGE_SHIFT) as usize
    }
    pub const fn from_pfn(pfn: usize) -> Self {
        Self((pfn as u64) << PAGE_SHIFT)
    }
}

impl VirtAddr {
    pub fn as_ptr<T>(self) -> *mut T {
        self.0 as usize as *mut T
    }
}
