//! Interrupt dispatch: the GIC (v2 or v3, from the DTB) acknowledges, the handler for
//! the INTID runs, the GIC is told it is done. Used INTIDs: the virtual timer PPI
//! (tick) and SGI 1 (IPI ping, tests).

use core::sync::atomic::{AtomicU32, Ordering};

use platform::gic::{Gic, GicInfo};

use crate::arch::aarch64::regs::mpidr;
use crate::mm::KERNEL_VA_OFFSET;

/// SGI used to poke another CPU.
pub const IPI_PING: u32 = 1;

static GIC: spin::Once<Gic> = spin::Once::new();
static TIMER_INTID: AtomicU32 = AtomicU32::new(platform::timer::VIRT_TIMER_INTID);

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before interrupts::init")
}

/// Boot CPU: bring up the distributor and this CPU's interface.
pub fn init(info: &GicInfo, timer_intid: u32) {
    let va = info.map_bases(|pa| pa + KERNEL_VA_OFFSET);
    // SAFETY: the kernel map covers the device window (first GiB) as Device-nGnRE.
    GIC.call_once(|| unsafe { Gic::new(&va) });
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

/// Acknowledge, handle and complete every pending interrupt.
pub fn dispatch() {
    while let Some(intid) = gic().ack() {
        match intid {
            IPI_PING => {
                crate::percpu::this_cpu()
                    .ipis
                    .fetch_add(1, Ordering::Relaxed);
            }
            i if i == TIMER_INTID.load(Ordering::Relaxed) => crate::time::on_tick(),
            other => log::warn!("unexpected interrupt {other}"),
        }
        gic().eoi(intid);
    }
}
