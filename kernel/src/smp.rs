//! The start of secondary CPUs with PSCI CPU_ON (their data is `percpu`). A secondary enters `_secondary_start` (boot.s) with the physical address
//! of its `BootRecord`, turns its MMU on with the kernel's final TTBR1, and arrives in
//! `secondary_main` on its own stack.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::aarch64::regs::mpidr;
use crate::mm::{frame, phys_to_virt, virt_to_phys, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::percpu::{self, PerCpu, MAX_CPUS};

/// Kernel stack of a secondary CPU: 2^STACK_ORDER frames.
const STACK_ORDER: usize = 4;

/// What `_secondary_start` reads: TTBR1 (PA), stack top (VA), &PerCpu (VA).
#[repr(C, align(64))]
struct BootRecord {
    ttbr1: AtomicU64,
    stack_top: AtomicU64,
    percpu: AtomicU64,
}

static BOOT_RECORDS: [BootRecord; MAX_CPUS] = [const {
    BootRecord {
        ttbr1: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
        percpu: AtomicU64::new(0),
    }
}; MAX_CPUS];

extern "C" {
    fn _secondary_start();
}

/// Start every CPU in `mpidrs` other than this one; returns how many came online.
pub fn start_secondaries(mpidrs: &[u64], ttbr1: PhysAddr) -> usize {
    percpu::set_possible(mpidrs.len().min(MAX_CPUS));
    let me = mpidr();
    let entry = virt_to_phys(VirtAddr::new(_secondary_start as *const () as u64));
    for (index, &target) in (1..).zip(mpidrs.iter().filter(|&&m| m != me).take(MAX_CPUS - 1)) {
        let stack = frame::frames()
            .alloc(STACK_ORDER)
            .expect("no memory for a CPU stack");
        let rec = &BOOT_RECORDS[index];
        rec.ttbr1.store(ttbr1.as_u64(), Ordering::Relaxed);
        rec.stack_top.store(
            phys_to_virt(stack).as_u64() + (PAGE_SIZE << STACK_ORDER) as u64,
            Ordering::Relaxed,
        );
        rec.percpu.store(
            percpu::cpu(index) as *const PerCpu as u64,
            Ordering::Relaxed,
        );
        let rec_va = rec as *const BootRecord as u64;
        // SAFETY: the secondary reads the record with its MMU (and caches) off, so it
        // is cleaned to the point of coherency first.
        unsafe {
            core::arch::asm!("dc civac, {}", "dsb sy", in(reg) rec_va, options(nostack, preserves_flags))
        };
        let rec_pa = virt_to_phys(VirtAddr::new(rec_va));
        // SAFETY: entry is _secondary_start's physical address and the record is
        // initialised and visible: what the new CPU needs to reach secondary_main.
        match unsafe {
            platform::psci::cpu_on(
                crate::power::conduit(),
                target,
                entry.as_u64(),
                rec_pa.as_u64(),
            )
        } {
            Ok(()) => {
                if !wait_online(percpu::cpu(index)) {
                    log::error!("cpu{index} (mpidr {target:#x}) did not come online");
                }
            }
            Err(e) => log::error!("PSCI CPU_ON of mpidr {target:#x} failed: {e:?}"),
        }
    }
    percpu::online()
}

fn wait_online(c: &PerCpu) -> bool {
    let deadline = crate::time::uptime_ns() + 2_000_000_000;
    while crate::time::uptime_ns() < deadline {
        if c.online.load(Ordering::Acquire) {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

#[no_mangle]
extern "C" fn secondary_main(c: &'static PerCpu) -> ! {
    percpu::enter(c);
    crate::arch::aarch64::mm::kmap::drop_identity_map();
    crate::arch::aarch64::mmu::configure(crate::arch::aarch64::features::features());
    crate::interrupts::init_cpu();
    crate::time::start_tick();
    crate::interrupts::enable_timer();
    crate::profile::start_cpu();
    c.online.store(true, Ordering::Release);
    log::debug!("online, mpidr {:#x}", c.mpidr.load(Ordering::Relaxed));
    crate::arch::irq::enable();
    crate::proc::sched::idle_loop()
}
