//! Interrupt dispatch: the GIC (v2 or v3, from the DTB) acknowledges, the handler for
//! the INTID runs, the GIC is told it is done. Used INTIDs: the virtual timer PPI
//! (tick), SGI 1 (IPI ping, tests) and, while the profiler runs, the physical timer
//! PPI (its handler is registered once at boot, before any CPU enables the PPI).

use core::sync::atomic::{AtomicU32, Ordering};

use platform::gic::{Gic, GicInfo};

use crate::arch::aarch64::regs::mpidr;
use crate::arch::aarch64::trap::TrapFrame;

/// SGI used to poke another CPU.
pub const IPI_PING: u32 = 1;

static GIC: spin::Once<Gic> = spin::Once::new();
static TIMER_INTID: AtomicU32 = AtomicU32::new(platform::timer::VIRT_TIMER_INTID);

/// The profiler's timer PPI and its handler (given the interrupted context).
struct ProfileHandler {
    intid: u32,
    handler: fn(&TrapFrame),
}

static PROFILE: spin::Once<ProfileHandler> = spin::Once::new();

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before interrupts::init")
}

/// Boot CPU: bring up the distributor and this CPU's interface.
pub fn init(info: &GicInfo, timer_intid: u32) {
    GIC.call_once(|| crate::arch::aarch64::mm::kmap::gic(info));
    TIMER_INTID.store(timer_intid, Ordering::Release);
    gic().init_distributor();
    init_cpu();
}

/// Per CPU: its GIC interface and the IPI.
pub fn init_cpu() {
    gic().init_cpu(mpidr());
    gic().enable_irq(IPI_PING, mpidr());
}

pub fn enable_timer() {
    gic().enable_irq(TIMER_INTID.load(Ordering::Acquire), mpidr());
}

/// Register the profiler's handler of the PPI `intid` (once, boot CPU).
pub fn set_profile_handler(intid: u32, handler: fn(&TrapFrame)) {
    PROFILE.call_once(|| ProfileHandler { intid, handler });
}

/// Enable the profiler's PPI on this CPU.
pub fn enable_profile_timer() {
    if let Some(p) = PROFILE.get() {
        gic().enable_irq(p.intid, mpidr());
    }
}

pub fn gic_version() -> u8 {
    match gic() {
        Gic::V2(_) => 2,
        Gic::V3(_) => 3,
    }
}

/// Send the ping SGI to the CPU with this MPIDR.
pub fn ping(target_mpidr: u64) {
    gic().send_sgi(IPI_PING, target_mpidr);
}

/// Acknowledge, handle and complete every pending interrupt; `frame` is the interrupted
/// context.
pub fn dispatch(frame: &TrapFrame) {
    while let Some(intid) = gic().ack() {
        match intid {
            IPI_PING => {
                crate::percpu::this_cpu()
                    .ipis
                    .fetch_add(1, Ordering::Relaxed);
            }
            i if i == TIMER_INTID.load(Ordering::Relaxed) => crate::time::on_tick(),
            other => match PROFILE.get() {
                Some(p) if p.intid == other => (p.handler)(frame),
                _ => log::warn!("unexpected interrupt {other}"),
            },
        }
        gic().eoi(intid);
    }
}
