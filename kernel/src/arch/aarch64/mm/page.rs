//! Frames through the linear map: the only place the kernel touches the contents of
//! RAM it hands out (page-table frames, folios, the kernel's own tables). Each function
//! is safe to call because of one rule `mm` keeps, which the type system cannot see:
//! a frame of RAM belongs to whoever the frame allocator (`mm::frame`) handed it to,
//! and that owner alone writes it (or shares it read-only, as copy-on-write does).
//! The functions take frames of RAM only (the linear map covers all of RAM:
//! `arch::aarch64::mm::kmap`), page-aligned where they take pages.
//!
//! Pages are zeroed (new folios, new tables, the kernel's tables) with `DC ZVA` at the
//! block size DCZID_EL0.BS gives, read at boot, and with ordinary stores where
//! DCZID_EL0.DZP prohibits it (Arm ARM D7.4.9 "DC ZVA"). DC ZVA counts as a store to
//! every byte of its block for ordering, so the barriers that publish a page after
//! plain stores publish it after DC ZVA too (Linux's `clear_page` relies on the same).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::aarch64::regs::read_sysreg;
use crate::mm::frame;
use crate::mm::machine::check_page_access;
use crate::mm::pgtable::TableEntries;
use crate::mm::{phys_to_virt, PhysAddr, PAGE_SIZE};

/// Bytes one `DC ZVA` zeroes, 0 where it is prohibited (DCZID_EL0, read at boot).
static ZVA_BLOCK: AtomicUsize = AtomicUsize::new(0);

/// Read the `DC ZVA` block size (boot CPU, once, before the kernel's tables are built;
/// until then zeroing uses plain stores).
pub fn init() {
    ZVA_BLOCK.store(zva_block(read_sysreg!(dczid_el0)), Ordering::Relaxed);
}

/// DCZID_EL0 -> the bytes `DC ZVA` zeroes: 4 << BS (BS, bits 3:0, is log2 of the
/// block in 4-byte words), 0 if DZP (bit 4) prohibits the instruction or the block
/// does not divide a page.
fn zva_block(dczid: u64) -> usize {
    const DZP: u64 = 1 << 4;
    let block = 4usize << (dczid & 0xf);
    if dczid & DZP != 0 || block > PAGE_SIZE {
        0
    } else {
        block
    }
}

/// Zero `n` pages from `pa`.
///
/// # Safety
/// The pages are RAM in the linear map and only the caller holds them.
unsafe fn zero(pa: PhysAddr, n: usize) {
    let va = phys_to_virt(pa).as_ptr::<u8>();
    let len = n * PAGE_SIZE;
    let block = ZVA_BLOCK.load(Ordering::Relaxed);
    if block == 0 {
        // SAFETY: as the caller promises: RAM in the linear map, held only by it.
        unsafe { core::ptr::write_bytes(va, 0, len) };
        return;
    }
    // Pages are aligned to the block (a power of two no larger than a page). Eight
    // blocks per iteration where they tile the pages (QEMU's 64-byte block: 512 bytes),
    // so the loop costs about one instruction per block beyond the DC ZVA itself.
    let chunk = block * 8;
    if len.is_multiple_of(chunk) {
        for off in (0..len).step_by(chunk) {
            // SAFETY: zeroes eight consecutive blocks inside the caller's pages.
            unsafe {
                core::arch::asm!(
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    p = inout(reg) va.wrapping_add(off) => _,
                    b = in(reg) block,
                    options(nostack, preserves_flags)
                )
            };
        }
        return;
    }
    for off in (0..len).step_by(block) {
        // SAFETY: zeroes one block inside the caller's pages (aligned, see above).
        unsafe {
            core::arch::asm!("dc zva, {}", in(reg) va.wrapping_add(off), options(nostack, preserves_flags))
        };
    }
}

/// Copy `n` pages from `from` to `to`, 64 bytes per loop iteration with pairs of
/// 8-byte loads and stores (Linux's `copy_page`; the kernel keeps off the FP/SIMD
/// registers, which hold user state): about 10 instructions per 64 bytes, where the
/// compiler's `memcpy` spent about 3 per 8.
///
/// # Safety
/// Both ranges are RAM in the linear map, page-aligned, not overlapping; only the
/// caller writes `to`.
unsafe fn copy(from: PhysAddr, to: PhysAddr, n: usize) {
    if n == 0 {
        return;
    }
    let src = phys_to_virt(from).as_ptr::<u8>();
    let dst = phys_to_virt(to).as_ptr::<u8>();
    // SAFETY: as the caller promises; the loop moves exactly n pages (a multiple of 64
    // bytes) and leaves the pointers past the end.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{s}]",
            "ldp {c}, {d}, [{s}, #16]",
            "stp {a}, {b}, [{t}]",
            "stp {c}, {d}, [{t}, #16]",
            "ldp {a}, {b}, [{s}, #32]",
            "ldp {c}, {d}, [{s}, #48]",
            "add {s}, {s}, #64",
            "stp {a}, {b}, [{t}, #32]",
            "stp {c}, {d}, [{t}, #48]",
            "add {t}, {t}, #64",
            "subs {k}, {k}, #1",
            "b.ne 2b",
            s = inout(reg) src => _,
            t = inout(reg) dst => _,
            k = inout(reg) n * PAGE_SIZE / 64 => _,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            options(nostack)
        )
    };
}

/// Bytes one `DC ZVA` zeroes here, 0 where zeroing uses plain stores.
pub fn zva_block_bytes() -> usize {
    ZVA_BLOCK.load(Ordering::Relaxed)
}

/// A zeroed block of 2^order frames from the frame allocator.
#[inline]
pub fn alloc_zeroed(order: usize) -> Option<PhysAddr> {
    let pa = frame::frames().alloc(order)?;
    // SAFETY: a block just allocated to us, RAM in the linear map.
    unsafe { zero(pa, 1 << order) };
    Some(pa)
}

/// Zero the `n` pages from `pa`: a block of RAM only the caller holds (see the module
/// doc). A call of its own (as `KernelMachine::zero_pages` was before it moved here), so the
/// folio allocation the fault path inlines stays small: the benchmark suite's counts
/// stay what they were.
#[inline(never)]
pub fn zero_pages(pa: PhysAddr, n: usize) {
    // SAFETY: RAM in the linear map that only the caller holds (the module's rule).
    unsafe { zero(pa, n) };
}

/// Copy the `n` pages from `from` to `to`: RAM, page-aligned, not overlapping; `to` is
/// only the caller's, `from` is only read (its other mappings are read-only). A call
/// of its own, as `zero_pages`.
#[inline(never)]
pub fn copy_pages(from: PhysAddr, to: PhysAddr, n: usize) {
    // SAFETY: as the module's rule gives: both ranges are RAM in the linear map; `to`
    // is held by the caller alone, `from` is not written while shared.
    unsafe { copy(from, to, n) };
}

/// Store `data` at `pa`, inside one page of RAM the caller maps (never the zero page).
#[inline]
pub fn write(pa: PhysAddr, data: &[u8]) {
    check_page_access(pa, data.len(), true);
    // SAFETY: `pa..pa + len` lies in one frame of RAM the caller holds, written
    // through the linear map.
    unsafe {
        core::ptr::copy_nonoverlapping(data.as_ptr(), phys_to_virt(pa).as_ptr::<u8>(), data.len())
    };
}

/// Load `buf` from `pa`, inside one page of RAM the caller maps.
#[inline]
pub fn read(pa: PhysAddr, buf: &mut [u8]) {
    check_page_access(pa, buf.len(), false);
    // SAFETY: `pa..pa + len` lies in one frame of RAM the caller holds, read through
    // the linear map.
    unsafe {
        core::ptr::copy_nonoverlapping(phys_to_virt(pa).as_ptr::<u8>(), buf.as_mut_ptr(), buf.len())
    };
}

/// The page table at `pa`: a 4 KiB frame of RAM the page-table layer allocated and has
/// not freed, which it only ever accesses atomically (so shared references suffice).
#[inline]
pub fn table(pa: PhysAddr) -> &'static TableEntries {
    // SAFETY: as above: a live table frame of RAM in the linear map, only ever accessed
    // through atomics.
    unsafe { &*phys_to_virt(pa).as_ptr::<TableEntries>() }
}
