//! The kernel's own translation tables (TTBR1), built once at boot to replace the
//! 1 GiB-block boot map of `boot.s`:
//! - the linear map of all RAM, read-write and never executable, with 2 MiB blocks;
//!   aligned 32 MiB runs of 16 blocks carry the Contiguous bit (static: never split);
//! - the kernel image (inside the linear map) with 4 KiB pages and W^X: text RX,
//!   rodata R, data/bss RW, an unmapped guard page under the boot stack;
//! - device memory (Device-nGnRE, never executable) for the first GiB of the
//!   physical map, where QEMU virt puts the GIC, the PL011 and the rest.
//!
//! These tables never change after boot, so they need no break-before-make of their
//! own; replacing the boot map does (see `replace_ttbr1_idmap` in boot.s).

use core::sync::atomic::{AtomicBool, Ordering};

use platform::gic::{Gic, GicInfo};
use platform::pl011::Pl011;

use super::page::alloc_zeroed;
use crate::mm::addr::{CONT_PMDS, PMD_SIZE};
use crate::mm::pgtable::{KernelProt, Kind, Pte};
use crate::mm::{phys_to_virt, virt_to_phys, PhysAddr, VirtAddr, KERNEL_VA_OFFSET, PAGE_SIZE};

const L1_SIZE: u64 = 1 << 30;
const L2_SIZE: u64 = PMD_SIZE as u64;
/// Entries in a contiguous run at level 2 (16 x 2 MiB = 32 MiB).
const CONT_L2: u64 = CONT_PMDS as u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Text,
    RoData,
    Data,
    Guard,
}

impl Part {
    fn prot(self) -> Option<KernelProt> {
        match self {
            Part::Text => Some(KernelProt::Text),
            Part::RoData => Some(KernelProt::ReadOnly),
            Part::Data => Some(KernelProt::ReadWrite),
            Part::Guard => None,
        }
    }
}

/// Physical extent of the kernel image and its parts, from the linker script.
pub struct ImageLayout {
    pub start: u64,
    pub text_end: u64,
    pub rodata_end: u64,
    pub guard: u64,
    pub guard_end: u64,
    pub end: u64,
}

impl ImageLayout {
    pub fn current() -> Self {
        extern "C" {
            static __kernel_start: u8;
            static __text_end: u8;
            static __rodata_end: u8;
            static __boot_stack_guard: u8;
            static __boot_stack_bottom: u8;
            static __kernel_end: u8;
        }
        let pa = |p: *const u8| virt_to_phys(VirtAddr::new(p as u64)).as_u64();
        Self {
            start: pa(core::ptr::addr_of!(__kernel_start)),
            text_end: pa(core::ptr::addr_of!(__text_end)),
            rodata_end: pa(core::ptr::addr_of!(__rodata_end)),
            guard: pa(core::ptr::addr_of!(__boot_stack_guard)),
            guard_end: pa(core::ptr::addr_of!(__boot_stack_bottom)),
            end: pa(core::ptr::addr_of!(__kernel_end)),
        }
    }

    fn part(&self, pa: u64) -> Option<Part> {
        match pa {
            p if p < self.start || p >= self.end => None,
            p if p < self.text_end => Some(Part::Text),
            p if p < self.rodata_end => Some(Part::RoData),
            p if p >= self.guard && p < self.guard_end => Some(Part::Guard),
            _ => Some(Part::Data),
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        start < self.end && self.start < end
    }
}

/// The devices of the first GiB of the physical map (QEMU virt's GIC, PL011, ...):
/// both the boot map (boot.s, L1[0]) and the kernel map (`build`) map that GiB as
/// Device-nGnRE at `pa + KERNEL_VA_OFFSET`, for ever. A device outside it is refused.
fn device_va(pa: u64) -> u64 {
    assert!(pa < L1_SIZE, "device at {pa:#x} outside the device window");
    pa + KERNEL_VA_OFFSET
}

/// The PL011 at physical address `pa`, reached through the device window. Safe because
/// the window is mapped as device memory for ever and the console is its one user
/// (`console::init` builds it once; a second call panics).
pub fn pl011(pa: u64) -> Pl011 {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    assert!(!TAKEN.swap(true, Ordering::AcqRel), "a second PL011 driver");
    // SAFETY: a PL011's register frame in the device window (above), driven only by
    // the one value this returns.
    unsafe { Pl011::new(device_va(pa) as usize) }
}

/// The GIC whose frames `info` gives (physical addresses), reached through the device
/// window. Safe as `pl011`: mapped for ever, built once (`interrupts::init`).
pub fn gic(info: &GicInfo) -> Gic {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    assert!(!TAKEN.swap(true, Ordering::AcqRel), "a second GIC driver");
    let va = info.map_bases(device_va);
    // SAFETY: the GIC's frames in the device window (above), driven only by the one
    // value this returns.
    unsafe { Gic::new(&va) }
}

fn table(pa: PhysAddr) -> &'static mut [u64; 512] {
    // SAFETY: table frames come from alloc_zeroed, are owned by the kernel map for
    // ever, and are reached through the linear (boot) map.
    unsafe { &mut *phys_to_virt(pa).as_ptr::<[u64; 512]>() }
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

/// The next-level table under `entry`, allocated on first use.
fn next_table(entry: &mut u64, level: usize) -> PhysAddr {
    if let Kind::Table(pa) = Pte::from_raw(*entry).kind(level) {
        return pa;
    }
    let pa = alloc_zeroed(0).expect("out of memory building the kernel map");
    *entry = Pte::table(pa).raw();
    pa
}

fn l2_table(root: PhysAddr, va: u64) -> PhysAddr {
    let l1 = next_table(&mut table(root)[index(va, 0)], 0);
    next_table(&mut table(l1)[index(va, 1)], 1)
}

/// Build the final kernel map for the RAM ranges `[base, end)` and return its root.
pub fn build(ram: impl Iterator<Item = (u64, u64)> + Clone, image: &ImageLayout) -> PhysAddr {
    let root = alloc_zeroed(0).expect("out of memory building the kernel map");

    let l1 = next_table(&mut table(root)[index(KERNEL_VA_OFFSET, 0)], 0);
    table(l1)[index(KERNEL_VA_OFFSET, 1)] =
        Pte::kernel(PhysAddr::new(0), 1, KernelProt::Device).raw();

    for (base, end) in ram.clone() {
        assert!(
            base >= L1_SIZE,
            "RAM below 1 GiB overlaps the device window"
        );
        let mut pa = base & !(L2_SIZE - 1);
        while pa < end {
            let va = pa + KERNEL_VA_OFFSET;
            let l2 = l2_table(root, va);
            let chunk_end = pa + L2_SIZE;
            if pa >= base && chunk_end <= end && !image.overlaps(pa, chunk_end) {
                let run = pa & !(CONT_L2 * L2_SIZE - 1);
                let run_end = run + CONT_L2 * L2_SIZE;
                // "The Contiguous bit": all 16 entries, aligned, same attributes.
                let cont = run >= base && run_end <= end && !image.overlaps(run, run_end);
                table(l2)[index(va, 2)] = Pte::kernel(PhysAddr::new(pa), 2, KernelProt::ReadWrite)
                    .with_cont(cont)
                    .raw();
            } else {
                let l3 = next_table(&mut table(l2)[index(va, 2)], 2);
                for p in (pa..chunk_end)
                    .step_by(PAGE_SIZE)
                    .filter(|p| (base..end).contains(p))
                {
                    if let Some(prot) = image.part(p).unwrap_or(Part::Data).prot() {
                        table(l3)[index(p + KERNEL_VA_OFFSET, 3)] =
                            Pte::kernel(PhysAddr::new(p), 3, prot).raw();
                    }
                }
            }
            pa = chunk_end;
        }
    }
    // SAFETY: the table writes above must be visible to the walker before TTBR1 points at them.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    root
}

extern "C" {
    fn replace_ttbr1_idmap(root: u64);
    static zero_table: u8;
}

/// Switch TTBR1 to `root`, running the switch from the identity map (boot.s).
pub fn install(root: PhysAddr) {
    let f = virt_to_phys(VirtAddr::new(replace_ttbr1_idmap as *const () as u64)).as_u64();
    // SAFETY: replace_ttbr1_idmap is position-independent, touches no memory, and its
    // physical address is identity-mapped by TTBR0 (the boot idmap) at this point.
    let f: extern "C" fn(u64) = unsafe { core::mem::transmute(f as usize) };
    f(root.as_u64());
}

/// TTBR0 value with no user mappings (an empty table, ASID 0): kernel threads and idle.
pub fn empty_ttbr0() -> u64 {
    virt_to_phys(VirtAddr::new(core::ptr::addr_of!(zero_table) as u64)).as_u64()
}

/// Point TTBR0 at an empty table: the identity map is needed only while a CPU turns
/// its MMU on; afterwards TTBR0 belongs to user address spaces. Its global entries
/// are flushed from this CPU's TLB.
pub fn drop_identity_map() {
    let zero = PhysAddr::new(empty_ttbr0());
    // SAFETY: the kernel runs from TTBR1 only; no live reference points into TTBR0.
    unsafe {
        core::arch::asm!(
            "msr ttbr0_el1, {}", "isb", "tlbi vmalle1", "dsb nsh", "isb",
            in(reg) zero.as_u64(), options(nostack, preserves_flags)
        )
    };
}
