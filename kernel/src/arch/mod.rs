//! CPU architecture support: AArch64 only. Decoding of ID registers and syndromes is
//! pure and also builds on the host; everything that touches the CPU is target-only.

pub mod aarch64;

pub use aarch64::irq;
