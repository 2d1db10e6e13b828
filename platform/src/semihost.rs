//! Arm semihosting: requests to the debugger or emulator, here QEMU's `-semihosting`.
//!
//! A request is `hlt #0xf000` with the operation in x0 and a pointer to its parameter
//! block in x1; the result comes back in x0. It exists only for test runs: the kernel
//! uses it to exit QEMU with a chosen status.
//!
//! Without `-semihosting` the HLT is an undefined instruction and traps. The call is
//! one assembly function, `platform_semihost_call`, whose HLT sits at the global label
//! `platform_semihost_hlt` (`hlt_address()`), so the kernel can recognise exactly
//! that trap, answer it (x0 = `u64::MAX`, skip the instruction) and so probe whether
//! semihosting is on. Every function here assumes the caller knows it is.

/// SYS_EXIT_EXTENDED: exit with a reason and a status ([`exit`]).
const SYS_EXIT_EXTENDED: u64 = 0x20;
/// ADP_Stopped_ApplicationExit: the program finished; QEMU exits with the status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// The SYS_EXIT_EXTENDED parameter block for a normal exit with `status`.
fn exit_block(status: u32) -> [u64; 2] {
    [ADP_STOPPED_APPLICATION_EXIT, status.into()]
}

#[cfg(target_arch = "aarch64")]
pub use imp::{call, exit, hlt_address};

#[cfg(target_arch = "aarch64")]
mod imp {
    use super::*;

    core::arch::global_asm!(
        ".section .text.platform_semihost_call, \"ax\"",
        ".global platform_semihost_call",
        ".type platform_semihost_call, %function",
        ".balign 4",
        "platform_semihost_call:",
        ".global platform_semihost_hlt",
        "platform_semihost_hlt:",
        "    hlt #0xf000",
        "    ret",
        ".size platform_semihost_call, . - platform_semihost_call",
    );

    extern "C" {
        fn platform_semihost_call(op: u64, param: u64) -> u64;
        static platform_semihost_hlt: u8;
    }

    /// Makes semihosting request `op` with parameter `param` (usually a pointer to
    /// the operation's block) and returns x0.
    ///
    /// # Safety
    /// Semihosting must be enabled (or the kernel must handle the trap at
    /// [`hlt_address`]), and `param` must be what `op` expects: the host reads and
    /// may write memory through it.
    pub unsafe fn call(op: u64, param: u64) -> u64 {
        // SAFETY: forwarded from this function's contract; the assembly function
        // follows the AAPCS64 (it changes only x0).
        unsafe { platform_semihost_call(op, param) }
    }

    /// The address (as the kernel runs it) of the semihosting HLT instruction.
    pub fn hlt_address() -> usize {
        // Only the symbol's address is taken; the byte behind it is never read.
        core::ptr::addr_of!(platform_semihost_hlt) as usize
    }

    /// Ends the QEMU run with exit status `status`. Semihosting must be enabled; if
    /// the request returns anyway, the CPU parks.
    pub fn exit(status: u32) -> ! {
        let block = exit_block(status);
        // SAFETY: the block is a valid SYS_EXIT_EXTENDED parameter block that lives
        // across the call, and the host only reads it.
        unsafe { call(SYS_EXIT_EXTENDED, block.as_ptr() as u64) };
        loop {
            aarch64_cpu::asm::wfi();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_block_layout() {
        assert_eq!(exit_block(3), [0x20026, 3]);
        assert_eq!(exit_block(u32::MAX), [0x20026, 0xffff_ffff]);
    }
}
