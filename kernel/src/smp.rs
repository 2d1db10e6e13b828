//! CPUs: per-CPU data (found through TPIDR_EL1) and the start of secondary CPUs with
//! PSCI CPU_ON. A secondary enters `_secondary_start` (boot.s) with the physical address
//! of its `BootRecord`, turns its MMU on with the kernel's final TTBR1, and arrives in
//! `secondary_main` on its own stack.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::aarch64::regs::{mpidr, read_sysreg, write_sysreg};
use crate::mm::{frame, phys_to_virt, virt_to_phys, PhysAddr, VirtAddr, PAGE_SIZE};

pub const MAX_CPUS: usize = 16;
/// Kernel stack of a secondary CPU: 2^STACK_ORDER frames.
const STACK_ORDER: usize = 4;

pub struct PerCpu {
    pub index: usize,
    pub mpidr: AtomicU64,
    pub online: AtomicBool,
    /// Timer ticks taken on this CPU.
    pub ticks: AtomicU64,
    /// Inter-processor interrupts received.
    pub ipis: AtomicU64,
    /// The tick asks the CPU to reschedule before it returns to EL0.
    pub need_resched: AtomicBool,
    /// The CPU runs its idle loop (a wake-up may poke it with an IPI).
    pub idle: AtomicBool,
}

impl PerCpu {
    const fn new(index: usize) -> Self {
        Self {
            index,
            mpidr: AtomicU64::new(u64::MAX),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            need_resched: AtomicBool::new(false),
            idle: AtomicBool::new(false),
        }
    }
}

static CPUS: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i] = PerCpu::new(i);
        i += 1;
    }
    cpus
};

/// CPUs the DTB describes (online or not).
static POSSIBLE: AtomicUsize = AtomicUsize::new(1);

/// This CPU's data. Before TPIDR_EL1 is set (very early boot) this is CPU 0.
pub fn this_cpu() -> &'static PerCpu {
    let p = read_sysreg!(tpidr_el1) as *const PerCpu;
    if p.is_null() {
        &CPUS[0]
    } else {
        // SAFETY: TPIDR_EL1 only ever holds the address of an element of CPUS.
        unsafe { &*p }
    }
}

pub fn cpu(index: usize) -> &'static PerCpu {
    &CPUS[index]
}

pub fn possible() -> usize {
    POSSIBLE.load(Ordering::Acquire)
}

pub fn online() -> usize {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Acquire))
        .count()
}

fn enter(c: &'static PerCpu) {
    write_sysreg!(tpidr_el1, c as *const PerCpu as u64);
    c.mpidr.store(mpidr(), Ordering::Release);
}

pub fn init_boot_cpu() {
    enter(&CPUS[0]);
    CPUS[0].online.store(true, Ordering::Release);
}

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
    POSSIBLE.store(mpidrs.len().min(MAX_CPUS), Ordering::Release);
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
        rec.percpu
            .store(&CPUS[index] as *const PerCpu as u64, Ordering::Relaxed);
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
                if !wait_online(&CPUS[index]) {
                    log::error!("cpu{index} (mpidr {target:#x}) did not come online");
                }
            }
            Err(e) => log::error!("PSCI CPU_ON of mpidr {target:#x} failed: {e:?}"),
        }
    }
    online()
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
    enter(c);
    crate::mm::kmap::drop_identity_map();
    crate::arch::aarch64::mmu::configure(crate::boot::features());
    crate::interrupts::init_cpu();
    crate::time::start_tick();
    c.online.store(true, Ordering::Release);
    log::debug!("online, mpidr {:#x}", c.mpidr.load(Ordering::Relaxed));
    crate::arch::irq::enable();
    crate::proc::sched::idle_loop()
}
