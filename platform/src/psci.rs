//! PSCI, the firmware interface for starting CPUs and powering the machine off.
//!
//! Calls follow the SMC Calling Convention: function ID in x0, arguments in x1-x3,
//! result in x0, made with `hvc #0` or `smc #0` as the device tree's `/psci` `method`
//! says ([`Conduit`]). On QEMU `virt` QEMU itself is the firmware: HVC by default, SMC
//! with `virtualization=on` (the kernel then runs at EL2 and HVC would trap to itself).

use core::fmt;

/// How PSCI calls reach the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    /// The conduit named by a `/psci` node's `method` property.
    pub fn from_method(method: &str) -> Option<Conduit> {
        match method {
            "hvc" => Some(Conduit::Hvc),
            "smc" => Some(Conduit::Smc),
            _ => None,
        }
    }
}

/// A PSCI error return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciError {
    NotSupported,
    InvalidParameters,
    Denied,
    AlreadyOn,
    OnPending,
    InternalFailure,
    NotPresent,
    Disabled,
    InvalidAddress,
    /// A code this PSCI version does not define.
    Unknown(i32),
}

impl fmt::Display for PsciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PsciError::NotSupported => f.write_str("PSCI: not supported"),
            PsciError::InvalidParameters => f.write_str("PSCI: invalid parameters"),
            PsciError::Denied => f.write_str("PSCI: denied"),
            PsciError::AlreadyOn => f.write_str("PSCI: CPU already on"),
            PsciError::OnPending => f.write_str("PSCI: CPU_ON already pending"),
            PsciError::InternalFailure => f.write_str("PSCI: internal failure"),
            PsciError::NotPresent => f.write_str("PSCI: not present"),
            PsciError::Disabled => f.write_str("PSCI: disabled"),
            PsciError::InvalidAddress => f.write_str("PSCI: invalid address"),
            PsciError::Unknown(code) => write!(f, "PSCI: unknown error {code}"),
        }
    }
}

/// Function IDs (PSCI 0.2+; the 0xC4... ones are the SMC64 forms taking 64-bit
/// arguments).
const PSCI_VERSION: u32 = 0x8400_0000;
const CPU_ON_64: u32 = 0xC400_0003;
const SYSTEM_OFF: u32 = 0x8400_0008;
const SYSTEM_RESET: u32 = 0x8400_0009;

/// Maps a PSCI return value (a signed 32-bit code in x0) to a `Result`.
fn result(ret: u64) -> Result<(), PsciError> {
    Err(match ret as i32 {
        0 => return Ok(()),
        -1 => PsciError::NotSupported,
        -2 => PsciError::InvalidParameters,
        -3 => PsciError::Denied,
        -4 => PsciError::AlreadyOn,
        -5 => PsciError::OnPending,
        -6 => PsciError::InternalFailure,
        -7 => PsciError::NotPresent,
        -8 => PsciError::Disabled,
        -9 => PsciError::InvalidAddress,
        code => PsciError::Unknown(code),
    })
}

/// Splits PSCI_VERSION's result into (major, minor).
fn split_version(ret: u64) -> (u16, u16) {
    ((ret >> 16) as u16, ret as u16)
}

#[cfg(target_arch = "aarch64")]
pub use imp::{cpu_on, system_off, system_reset, version};

#[cfg(target_arch = "aarch64")]
mod imp {
    use super::*;

    /// One SMCCC call with up to three arguments.
    fn call(conduit: Conduit, function: u32, a1: u64, a2: u64, a3: u64) -> u64 {
        macro_rules! smccc {
            ($instr:literal) => {{
                let ret;
                // SAFETY: the firmware reads only the argument registers and, per
                // SMCCC 1.0, may clobber x0-x17 (declared); it touches no memory of ours.
                unsafe {
                    core::arch::asm!(
                        $instr,
                        inlateout("x0") u64::from(function) => ret,
                        inlateout("x1") a1 => _,
                        inlateout("x2") a2 => _,
                        inlateout("x3") a3 => _,
                        out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                        out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                        out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                        out("x16") _, out("x17") _,
                        options(nostack),
                    );
                }
                ret
            }};
        }
        match conduit {
            Conduit::Hvc => smccc!("hvc #0"),
            Conduit::Smc => smccc!("smc #0"),
        }
    }

    /// The firmware's PSCI version as (major, minor); QEMU 7.2 reports 1.1.
    pub fn version(conduit: Conduit) -> (u16, u16) {
        split_version(call(conduit, PSCI_VERSION, 0, 0, 0))
    }

    /// Starts the CPU `target_mpidr` at physical address `entry_pa`, MMU off, at the
    /// kernel's EL, with `context_id` in x0.
    ///
    /// # Safety
    /// `entry_pa` must be code that is correct to run there in that state: the new CPU
    /// shares all of memory with the caller.
    pub unsafe fn cpu_on(
        conduit: Conduit,
        target_mpidr: u64,
        entry_pa: u64,
        context_id: u64,
    ) -> Result<(), PsciError> {
        result(call(conduit, CPU_ON_64, target_mpidr, entry_pa, context_id))
    }

    /// Powers the machine off (QEMU exits with status 0).
    pub fn system_off(conduit: Conduit) -> ! {
        call(conduit, SYSTEM_OFF, 0, 0, 0);
        park()
    }

    /// Resets the machine (QEMU exits instead if run with `-no-reboot`).
    pub fn system_reset(conduit: Conduit) -> ! {
        call(conduit, SYSTEM_RESET, 0, 0, 0);
        park()
    }

    /// Where a CPU goes if SYSTEM_OFF or SYSTEM_RESET returns, which PSCI forbids.
    fn park() -> ! {
        loop {
            aarch64_cpu::asm::wfi();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names() {
        assert_eq!(Conduit::from_method("hvc"), Some(Conduit::Hvc));
        assert_eq!(Conduit::from_method("smc"), Some(Conduit::Smc));
        assert_eq!(Conduit::from_method("HVC"), None);
        assert_eq!(Conduit::from_method(""), None);
    }

    #[test]
    fn return_codes() {
        assert_eq!(result(0), Ok(()));
        // x0 holds the 32-bit code sign-extended (QEMU) or zero-extended: both map.
        assert_eq!(result(-1i64 as u64), Err(PsciError::NotSupported));
        assert_eq!(result(0xffff_fffe), Err(PsciError::InvalidParameters));
        assert_eq!(result(-3i64 as u64), Err(PsciError::Denied));
        assert_eq!(result(-4i64 as u64), Err(PsciError::AlreadyOn));
        assert_eq!(result(-5i64 as u64), Err(PsciError::OnPending));
        assert_eq!(result(-6i64 as u64), Err(PsciError::InternalFailure));
        assert_eq!(result(-7i64 as u64), Err(PsciError::NotPresent));
        assert_eq!(result(-8i64 as u64), Err(PsciError::Disabled));
        assert_eq!(result(-9i64 as u64), Err(PsciError::InvalidAddress));
        assert_eq!(result(-10i64 as u64), Err(PsciError::Unknown(-10)));
        assert_eq!(result(7), Err(PsciError::Unknown(7)));
    }

    #[test]
    fn version_halves() {
        assert_eq!(split_version(0x0001_0001), (1, 1));
        assert_eq!(split_version(0x0000_0002), (0, 2));
    }

    #[test]
    fn error_messages() {
        assert_eq!(PsciError::AlreadyOn.to_string(), "PSCI: CPU already on");
        assert_eq!(
            PsciError::Unknown(-12).to_string(),
            "PSCI: unknown error -12"
        );
    }
}
