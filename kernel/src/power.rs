//! Leaving the machine: through semihosting when QEMU runs with `-semihosting` (the
//! exit status reaches the host: tests), by PSCI SYSTEM_OFF otherwise (status 0).

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use platform::psci::Conduit;

use crate::arch::aarch64::trap::semihosting_answers;

static SEMIHOSTING: AtomicBool = AtomicBool::new(false);
/// 0: HVC, 1: SMC (from the DTB).
static CONDUIT: AtomicU8 = AtomicU8::new(0);

pub fn set_conduit(c: Conduit) {
    CONDUIT.store(matches!(c, Conduit::Smc) as u8, Ordering::Release);
}

pub fn conduit() -> Conduit {
    if CONDUIT.load(Ordering::Acquire) == 1 {
        Conduit::Smc
    } else {
        Conduit::Hvc
    }
}

/// Find out whether semihosting is on (`trap::semihosting_answers`).
pub fn probe_semihosting() -> bool {
    let on = semihosting_answers();
    SEMIHOSTING.store(on, Ordering::Release);
    on
}

pub fn semihosting() -> bool {
    SEMIHOSTING.load(Ordering::Acquire)
}

/// Stop the machine with `status` (0: success), after the profile dump if one runs.
pub fn exit(status: u32) -> ! {
    crate::profile::dump();
    if semihosting() {
        platform::semihost::exit(status)
    }
    if status != 0 {
        crate::console::emergency_print(format_args!(
            "contkernel: exit status {status} (no semihosting: powering off)\n"
        ));
    }
    platform::psci::system_off(conduit())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::arch::irq::save_and_disable();
    let cpu = crate::percpu::this_cpu().index;
    crate::console::emergency_print(format_args!("panic on cpu{cpu}: {info}\n"));
    exit(101)
}
