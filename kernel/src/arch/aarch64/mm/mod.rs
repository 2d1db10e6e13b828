//! The target machine under `mm` (the rpi tutorials' `_arch` mirror): everything in
//! `mm/` runs on the host against the software model, and what it needs of the real
//! machine is here: `machine` (`KernelMachine`, the page-table layer's and the address
//! space's machine: tables through the linear map, broadcast TLBIs, ASIDs, the boot
//! options), `page` (frames' contents through the linear map: the one zeroing and
//! copying path), `kmap` (the kernel's own translation tables) and `heap` (the kernel
//! heap).

pub mod heap;
pub mod kmap;
pub mod machine;
pub mod page;
