//! What an address space needs from the machine beyond what its page tables need
//! (`pgtable::PtMachine`): the seam that lets `Mm` run on the real machine
//! (`arch::aarch64::mm::machine`) and on the host's simulated RAM (`host`).

use core::ops::DerefMut;

use super::pgtable::{MapError, PageTable, PtMachine};
use super::{PhysAddr, PAGE_SIZE};

/// What an address space needs from the machine beyond what its page tables need
/// (`PtMachine`): tables that own their ASID, and the contents of pages, which `mm` only
/// ever zeroes, copies, fills (exec) and reads or writes for a debugger
/// (/proc/self/mem) through these. Frames and folios come from the
/// global frame allocator in both environments (`frame::frames`), so one physical
/// address space holds tables and folios.
pub trait MmMachine: PtMachine + Clone {
    /// The page tables of one address space (the kernel's hold an ASID).
    type Tables: DerefMut<Target = PageTable<Self>>;

    /// Empty tables, in the contiguous mode and with the checker as configured.
    fn new_tables(&self) -> Result<Self::Tables, MapError>;
    /// Zero the `n` pages from `pa` (a block just allocated, only the caller holds).
    fn zero_pages(&self, pa: PhysAddr, n: usize);
    /// Copy `n` pages from `from` (only read) to `to` (a new folio only the caller holds).
    fn copy_pages(&self, from: PhysAddr, to: PhysAddr, n: usize);
    /// Store `data` at `pa`, inside one page the caller maps.
    fn write_page(&self, pa: PhysAddr, data: &[u8]);
    /// Load `buf` from `pa`, inside one page the caller maps.
    fn read_page(&self, pa: PhysAddr, buf: &mut [u8]);
}

/// What both machines check before `write_page` / `read_page` touch RAM: the bytes lie
/// inside one page, and nothing writes the shared zero page.
pub fn check_page_access(pa: PhysAddr, len: usize, write: bool) {
    assert!(
        !write || !super::zero::is_zero(pa),
        "a write to the zero page"
    );
    assert!(
        pa.offset_from(pa.align_down(PAGE_SIZE)) + len <= PAGE_SIZE,
        "{} crosses a page",
        if write { "write_page" } else { "read_page" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_inside_one_page_passes() {
        check_page_access(PhysAddr::new(0x4000_1000 + 96), PAGE_SIZE - 96, false);
    }

    #[test]
    #[should_panic(expected = "read_page crosses a page")]
    fn an_access_across_a_page_boundary_panics() {
        check_page_access(PhysAddr::new(0x4000_1000 + 96), PAGE_SIZE - 95, false);
    }
}
