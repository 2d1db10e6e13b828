//! Board support for QEMU's `virt` machine (AArch64): everything contkernel needs to
//! know about the hardware around the CPU, and nothing about the kernel.
//!
//! - [`fdt`]: the device tree QEMU passes, read into a heap-free [`fdt::BoardInfo`].
//! - [`pl011`]: the UART console.
//! - [`gic`]: the interrupt controller, GICv2 or GICv3.
//! - [`timer`]: the Arm generic timer (EL1 virtual timer).
//! - [`psci`]: firmware calls to start CPUs and power off.
//! - [`semihost`]: QEMU semihosting, for exiting test runs with a status.
//!
//! MMIO drivers take the *virtual* base address the kernel mapped the device at; the
//! device tree gives physical ones. Code that needs an AArch64 CPU (system registers,
//! HVC/SMC/HLT) is built for `target_arch = "aarch64"` only; the rest also builds on
//! the host, where its unit tests run against real QEMU DTBs.

#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), no_std)]
// On the host only the pure parts are exercised (by the tests); helpers used solely by
// the AArch64 drivers would show up as dead there. The AArch64 build checks dead code.
#![cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]

pub mod fdt;
pub mod gic;
pub mod pl011;
pub mod psci;
pub mod semihost;
pub mod timer;
