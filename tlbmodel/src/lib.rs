//! tlbmodel: a modelled arm64 TLB that honours the Contiguous bit, and the QEMU TCG
//! plugin that feeds it every data access of a guest (docs/tlb.md).
//!
//! - [`model`]: the TLB itself (L1 D-TLB, L2, walk cache, TLBI), host-tested.
//! - [`walk`]: the guest's stage-1 table walk, host-tested.
//! - [`decode`]: the instructions the plugin watches, host-tested.
//! - `plugin` (not in tests): QEMU's callbacks, guest memory, the per-phase report.
//!
//! GPL-2.0-only, as any QEMU plugin; nothing in the kernel links it.

pub mod decode;
pub mod model;
pub mod walk;

// The plugin's symbols resolve against QEMU when it loads the library: not in tests.
#[cfg(not(test))]
mod plugin;
