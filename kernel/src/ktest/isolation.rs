//! Isolation, as the MMU sees it (the Isolation promise; user/src/bin/isolation.rs
//! is the same from EL0): no kernel mapping is reachable from EL0, and no kernel
//! memory that can be written can be executed.
//!
//! - Every kind of kernel mapping (image text, rodata, data, bss and heap, the boot
//!   stack, the linear map at both ends of RAM, the device map) is asked of the
//!   hardware walker with `AT S1E0R` and `AT S1E0W`: both fault (AP[1] clear in every
//!   TTBR1 entry; with TCR_EL1.E0PD1 they would fault even earlier).
//! - `mov x0, #7; ret` written into .data and into a frame of the linear map faults
//!   at its fetch (PXN); the heap (.bss) and text are `mm::kmap_w_xor_x`'s.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, Ordering};

use super::arch::{exec_probe_fixup, ktest_exec_probe};
use super::TestResult;
use crate::arch::aarch64::mm::kmap::ImageLayout;
use crate::arch::aarch64::mmu::{translate, Access, Translation};
use crate::kassert;
use crate::mm::frame::frames;
use crate::mm::{phys_to_virt, PhysAddr, KERNEL_VA_OFFSET, PAGE_SIZE};

/// `mov x0, #7; ret`, in .data (a mutable static with a non-zero value).
static DATA_CODE: [AtomicU32; 2] = [AtomicU32::new(0xd280_00e0), AtomicU32::new(0xd65f_03c0)];

pub fn el0_reaches_no_kernel_mapping() -> TestResult {
    let img = ImageLayout::current();
    let va = |pa: u64| (pa + KERNEL_VA_OFFSET) as usize;
    let heap = Box::new(0u64);
    let stack = 0u64;
    let ram_last =
        PhysAddr::new(0x4000_0000 + (frames().managed_frames() as u64 - 1) * PAGE_SIZE as u64);
    let probes = [
        ("text", va(img.start)),
        ("rodata", va(img.text_end)),
        ("data", va(img.rodata_end)),
        (".data static", DATA_CODE.as_ptr() as usize),
        ("heap", &*heap as *const u64 as usize),
        ("stack", &stack as *const u64 as usize),
        ("linear map, first RAM page", va(0x4000_0000)),
        (
            "linear map, last RAM page",
            phys_to_virt(ram_last).as_usize(),
        ),
        ("device map (PL011)", va(0x0900_0000)),
    ];
    for (what, at) in probes {
        for access in [Access::El0Read, Access::El0Write] {
            let t = translate(at, access);
            kassert!(
                matches!(t, Translation::Fault { .. }),
                "{what} at {at:#x}: EL0 {} translates: {t:?}",
                if access == Access::El0Read {
                    "read"
                } else {
                    "write"
                }
            );
        }
    }
    Ok(())
}

pub fn kernel_data_is_not_executable() -> TestResult {
    let data = DATA_CODE.as_ptr() as usize;
    exec_probe_fixup(data);
    // SAFETY: the call faults (PXN) and the fix-up resumes in ktest_exec_probe.
    let ran = unsafe { ktest_exec_probe(data) };
    kassert!(ran == u64::MAX, ".data executed");
    let pa = frames().alloc(0).ok_or("no frame")?;
    let code = phys_to_virt(pa).as_ptr::<u32>();
    // SAFETY: the frame is ours, mapped by the linear map.
    unsafe {
        code.write_volatile(DATA_CODE[0].load(Ordering::Relaxed));
        code.add(1)
            .write_volatile(DATA_CODE[1].load(Ordering::Relaxed));
    }
    exec_probe_fixup(code as usize);
    // SAFETY: as above.
    let ran = unsafe { ktest_exec_probe(code as usize) };
    frames().free(pa, 0);
    kassert!(ran == u64::MAX, "the linear map executed");
    Ok(())
}
