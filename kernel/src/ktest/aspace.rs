//! Tests of the address space under memory exhaustion, where user space cannot reach:
//! a 2 MiB block that an operation must split when no table can be had.

use alloc::vec::Vec;

use super::TestResult;
use crate::arch::aarch64::mm::machine::Mm;
use crate::mm::fault::Access;
use crate::mm::frame::frames;
use crate::mm::install::FaultError;
use crate::mm::mthp::POLICY;
use crate::mm::vma::VmProt;
use crate::mm::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::ENOMEM;
use crate::{kassert, kassert_eq};

const RW: VmProt = VmProt {
    read: true,
    write: true,
    exec: false,
};
const MIB: usize = 1 << 20;

/// An address space with a 2 MiB folio mapped as a block at the returned address.
fn with_pmd_folio() -> Result<(Mm, VirtAddr), &'static str> {
    let mut mm = Mm::new().map_err(|_| "no address space")?;
    let start = mm
        .mmap(0, 4 << 20, RW, 0)
        .map_err(|_| "mmap of 4 MiB failed")?;
    let saved = POLICY.render_size(9);
    let _ = POLICY.write_size(9, "always");
    let r = mm.handle_fault(start, Access::Write);
    let _ = POLICY.write_size(9, saved.trim());
    r.map_err(|_| "fault failed")?;
    match mm.tables.get(start) {
        Some(leaf) if leaf.level == 2 => Ok((mm, start)),
        _ => Err("not mapped as a 2 MiB block"),
    }
}

/// Every free frame but `keep`, to give back with `release`.
fn hog(keep: usize) -> Vec<PhysAddr> {
    let mut got = Vec::new();
    while let Some(pa) = frames().alloc(0) {
        got.push(pa);
    }
    for _ in 0..keep {
        if let Some(pa) = got.pop() {
            frames().free(pa, 0);
        }
    }
    got
}

fn release(hogged: Vec<PhysAddr>) {
    for pa in hogged {
        frames().free(pa, 0);
    }
}

/// mprotect of 64 KiB inside a 2 MiB block with no table to split it: ENOMEM, and
/// neither the VMA nor the entry changed (all or nothing); with memory, it works.
pub fn mprotect_without_a_table_changes_nothing() -> TestResult {
    let (mut mm, start) = with_pmd_folio()?;
    let (a, b) = (start.add(MIB), start.add(MIB + 64 * 1024));
    let ro = VmProt { write: false, ..RW };
    let hogged = hog(0);
    let r = mm.mprotect(a, b, ro);
    let vma_rw = mm.vmas.find(a).is_some_and(|v| v.prot.write);
    let leaf = mm.tables.get(a);
    release(hogged);
    kassert_eq!(r, Err(ENOMEM));
    kassert!(vma_rw, "the VMA changed although the call failed");
    kassert!(
        leaf.is_some_and(|l| l.level == 2 && l.pte.is_writable()),
        "the block changed although the call failed"
    );
    kassert_eq!(mm.mprotect(a, b, ro), Ok(()));
    kassert!(mm.vmas.find(a).is_some_and(|v| !v.prot.write));
    kassert!(mm.tables.get(a).is_some_and(|l| !l.pte.is_writable()));
    kassert!(mm.tables.get(start).is_some_and(|l| l.pte.is_writable()));
    Ok(())
}

/// A page copy after fork that must split the 2 MiB block and cannot get a table
/// fails with Oom and gives back the page it had allocated for the copy.
pub fn cow_copy_without_a_table_leaks_nothing() -> TestResult {
    let (mut parent, start) = with_pmd_folio()?;
    let mut child = parent.fork().map_err(|_| "fork failed")?;
    let hogged = hog(1);
    let free = frames().free_frames();
    let r = child.handle_fault(start.add(5 * PAGE_SIZE), Access::Write);
    let after = frames().free_frames();
    release(hogged);
    kassert_eq!(r, Err(FaultError::Oom));
    kassert_eq!(after, free, "the page allocated for the copy leaked");
    kassert_eq!(
        child.handle_fault(start.add(5 * PAGE_SIZE), Access::Write),
        Ok(())
    );
    drop(child);
    drop(parent);
    Ok(())
}
