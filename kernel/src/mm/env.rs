//! What an address space needs from the machine beyond what its page tables need
//! (`pgtable::PtEnv`): the seam that lets `Mm` run on the real machine (`arch::aarch64::mm::machine`) and
//! on the host's simulated RAM (`host`).

use core::ops::DerefMut;

use super::pgtable::{AddressSpace, MapError, PtEnv};
use super::PhysAddr;

/// What an address space needs from the machine beyond what its page tables need
/// (`PtEnv`): tables that own their ASID, and the contents of pages, which `mm` only
/// ever zeroes, copies, fills (exec) and reads or writes for a debugger
/// (/proc/self/mem) through these. Frames and folios come from the
/// global frame allocator in both environments (`frame::frames`), so one physical
/// address space holds tables and folios.
pub trait MmEnv: PtEnv + Clone {
    /// The page tables of one address space (the kernel's hold an ASID).
    type Tables: DerefMut<Target = AddressSpace<Self>>;

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
