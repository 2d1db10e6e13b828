//! Tests of frames, the heap and the kernel map.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::arch::{exec_probe_fixup, ktest_exec_probe};
use super::TestResult;
use crate::arch::aarch64::mm::heap;
use crate::arch::aarch64::mm::kmap::ImageLayout;
use crate::arch::aarch64::mmu::{translate_el1, Translation};
use crate::mm::frame::{self, MAX_ORDER};
use crate::mm::{phys_to_virt, PhysAddr, KERNEL_VA_OFFSET, PAGE_SIZE};
use crate::{kassert, kassert_eq};

pub fn frame_orders_aligned_and_returned() -> TestResult {
    let f = frame::frames();
    let before = f.free_frames();
    let mut blocks = Vec::new();
    for order in 0..=MAX_ORDER {
        let pa = f.alloc(order).ok_or("allocation failed")?;
        kassert!(
            pa.pfn() % (1 << order) == 0,
            "order {order} block at {pa} not aligned"
        );
        kassert_eq!(f.meta(pa).order(), order);
        // The block is usable memory through the linear map.
        let words = (PAGE_SIZE << order) / 8;
        let p = phys_to_virt(pa).as_ptr::<u64>();
        // SAFETY: the block is ours and mapped by the linear map.
        unsafe {
            p.write_volatile(pa.as_u64());
            p.add(words - 1).write_volatile(!pa.as_u64());
            kassert_eq!(p.read_volatile(), pa.as_u64());
            kassert_eq!(p.add(words - 1).read_volatile(), !pa.as_u64());
        }
        blocks.push((pa, order));
    }
    kassert_eq!(before - f.free_frames(), (1usize << (MAX_ORDER + 1)) - 1);
    for (pa, order) in blocks {
        f.free(pa, order);
    }
    kassert_eq!(f.free_frames(), before);
    Ok(())
}

pub fn frame_exhaustion_and_recovery() -> TestResult {
    let f = frame::frames();
    let before = f.free_frames();
    let fails = f.stats.failures[9].load(core::sync::atomic::Ordering::Relaxed);
    let mut got = Vec::new();
    while let Some(pa) = f.alloc(9) {
        got.push(pa);
    }
    kassert!(!got.is_empty(), "no order-9 block at all");
    kassert_eq!(
        f.stats.failures[9].load(core::sync::atomic::Ordering::Relaxed),
        fails + 1
    );
    kassert!(
        f.free_frames() < before - got.len() * 511,
        "order-9 blocks not counted"
    );
    for pa in got {
        f.free(pa, 9);
    }
    kassert_eq!(f.free_frames(), before);
    kassert!(
        f.alloc(9).map(|pa| f.free(pa, 9)).is_some(),
        "buddies did not merge back"
    );
    Ok(())
}

pub fn heap_alloc_and_free() -> TestResult {
    let before = heap::bytes_in_use();
    {
        let v: Vec<u64> = (0..(1 << 17)).collect();
        let b = Box::new([7u8; 4096]);
        kassert_eq!(v[(1 << 17) - 1], (1 << 17) - 1);
        kassert_eq!(b[4095], 7);
        kassert!(heap::bytes_in_use() >= before + (1 << 20));
    }
    kassert_eq!(heap::bytes_in_use(), before);
    Ok(())
}

fn va(pa: u64) -> usize {
    (pa + KERNEL_VA_OFFSET) as usize
}

pub fn kmap_w_xor_x() -> TestResult {
    let img = ImageLayout::current();
    let text = va(img.start);
    kassert!(
        matches!(translate_el1(text, false), Translation::Mapped { .. }),
        "text not readable"
    );
    kassert!(
        matches!(translate_el1(text, true), Translation::Fault { .. }),
        "text is writable"
    );
    kassert!(
        matches!(
            translate_el1(va(img.text_end), true),
            Translation::Fault { .. }
        ),
        "rodata is writable"
    );
    kassert!(
        matches!(
            translate_el1(va(img.rodata_end), true),
            Translation::Mapped { .. }
        ),
        "data not writable"
    );
    match translate_el1(va(img.guard), false) {
        Translation::Fault { fsc } => kassert!(
            fsc & 0x3c == 0x04,
            "guard page: fault {fsc:#x} is not a translation fault"
        ),
        Translation::Mapped { .. } => return Err("stack guard page is mapped".into()),
    }
    // Data is never executable: copy `mov x0, #7; ret` into a heap buffer and call it.
    let code = Box::new([0xd280_00e0_u32, 0xd65f_03c0]);
    let target = code.as_ptr() as usize;
    exec_probe_fixup(target);
    // SAFETY: the call faults (PXN) and the fix-up resumes in ktest_exec_probe.
    kassert_eq!(unsafe { ktest_exec_probe(target) }, u64::MAX);
    Ok(())
}

pub fn kmap_linear_map_covers_ram() -> TestResult {
    let f = frame::frames();
    // Every 16 MiB of managed RAM (and its last page) translates to itself.
    let first = PhysAddr::new(0x4000_0000);
    let last = PhysAddr::new(0x4000_0000 + (f.managed_frames() as u64 - 1) * PAGE_SIZE as u64);
    let mut pa = first;
    while pa <= last {
        match translate_el1(phys_to_virt(pa).as_usize(), true) {
            Translation::Mapped { pa: got } => kassert_eq!(got, pa.as_u64()),
            Translation::Fault { fsc } => {
                return Err(alloc::format!("linear map hole at {pa}: fsc {fsc:#x}"))
            }
        }
        pa = pa.add(16 << 20);
    }
    kassert!(matches!(
        translate_el1(phys_to_virt(last).as_usize(), false),
        Translation::Mapped { .. }
    ));
    // Devices: the PL011 of QEMU virt.
    kassert_eq!(
        translate_el1(va(0x0900_0000), false),
        Translation::Mapped { pa: 0x0900_0000 }
    );
    Ok(())
}

/// `KernelMachine::zero_pages` clears exactly its pages: of four frames filled with 0xa5,
/// the middle two come back zero and their neighbours untouched. QEMU permits DC ZVA
/// on both models (DCZID_EL0.DZP clear), so this runs the DC ZVA path.
pub fn zero_pages_clears_exactly_its_pages() -> TestResult {
    use crate::arch::aarch64::mm::machine::KernelMachine;
    use crate::arch::aarch64::mm::page::zva_block_bytes;
    use crate::mm::machine::MmMachine;

    let block = zva_block_bytes();
    kassert!(
        block.is_power_of_two() && block <= PAGE_SIZE,
        "DC ZVA block {block}: QEMU offers DC ZVA, DCZID_EL0 should say so"
    );
    let pa = frame::frames().alloc(2).ok_or("no frames")?;
    // SAFETY: four frames just allocated to this test, in the linear map.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(phys_to_virt(pa).as_ptr::<u8>(), 4 * PAGE_SIZE) };
    bytes.fill(0xa5);
    KernelMachine.zero_pages(pa.add(PAGE_SIZE), 2);
    let (head, rest) = bytes.split_at(PAGE_SIZE);
    let (middle, tail) = rest.split_at(2 * PAGE_SIZE);
    let ok = head.iter().chain(tail).all(|&b| b == 0xa5) && middle.iter().all(|&b| b == 0);
    frame::frames().free(pa, 2);
    kassert!(
        ok,
        "zero_pages cleared the wrong bytes (DC ZVA block {block})"
    );
    Ok(())
}

/// Every per-size counter `mm::mthp` keeps is a file under
/// `hugepages-<N>kB/stats/` of every size (a counter the sysfs list forgot is
/// invisible to users and to the tests that read it).
pub fn every_mthp_stat_is_a_sysfs_file() -> TestResult {
    for order in crate::mm::mthp::MTHP_ORDERS {
        for name in crate::mm::mthp::STAT_NAMES {
            let path = alloc::format!(
                "/sys/kernel/mm/transparent_hugepage/hugepages-{}kB/stats/{name}",
                (PAGE_SIZE << order) / 1024
            );
            kassert!(crate::fs::lookup(&path).is_some(), "no file {path}");
        }
    }
    Ok(())
}
