//! execve: a new address space from a static ELF in the initramfs, as Linux builds it:
//! the PT_LOAD segments with their permissions, the heap (brk) after the last one,
//! and a stack whose top holds argc, argv, envp and the auxiliary vector: a VMA of
//! those pages and 128 KiB below them, which grows down on faults up to 8 MiB
//! (`stack::grow`), as Linux's `setup_arg_pages` leaves it.

use alloc::vec::Vec;

use super::elf;
use super::stack;
use crate::arch::aarch64::mm::machine::Mm;
use crate::mm::aspace::STACK_TOP;
use crate::mm::vma::{HugeHint, VmProt, Vma, VmaFlags, VmaKind};
use crate::mm::{VirtAddr, PAGE_SIZE};
use crate::uapi::Errno;
use crate::uapi::*;

/// What a successful exec hands to the task: its memory and where it starts.
pub struct Image {
    pub mm: Mm,
    pub entry: u64,
    pub sp: u64,
}

/// Build the address space of `path` with these arguments and environment.
pub fn load(path: &str, argv: &[&[u8]], envp: &[&[u8]]) -> Result<Image, Errno> {
    let cpio = crate::fs::root().ok_or(ENOENT)?;
    let file = cpio.find(path).ok_or(ENOENT)?;
    if !file.is_file() {
        return Err(EACCES);
    }
    let elf = elf::parse(file.data).map_err(|e| e.errno())?;
    let mut mm = Mm::new()?;
    let brk = map_segments(&mut mm, &elf)?;
    mm.brk_start = brk;
    mm.brk = brk;

    let mut random = [0u8; 16];
    crate::time::fill_random(&mut random);
    let auxv = auxv(&elf);
    let image =
        stack::build(STACK_TOP, argv, envp, &auxv, random, path.as_bytes()).map_err(|_| E2BIG)?;
    let used = (image.bytes.len() as u64).next_multiple_of(PAGE_SIZE as u64);
    let stack = Vma {
        start: VirtAddr(STACK_TOP - used - stack::EXPAND_AT_EXEC),
        end: VirtAddr(STACK_TOP),
        prot: VmProt::new(true, true, false),
        huge: HugeHint::Default,
        flags: VmaFlags::default(),
        kind: VmaKind::Stack,
    };
    mm.vmas.insert(stack).map_err(|_| ENOMEM)?;
    mm.write_bytes(VirtAddr(STACK_TOP - image.bytes.len() as u64), &image.bytes)
        .map_err(|_| ENOMEM)?;
    Ok(Image {
        mm,
        entry: elf.entry,
        sp: image.sp,
    })
}

/// Map and fill the segments of `elf` in `mm`; returns the end of the last one (where
/// the heap starts).
fn map_segments(mm: &mut Mm, elf: &elf::Elf<'_>) -> Result<VirtAddr, Errno> {
    let mut brk = VirtAddr(0);
    for seg in &elf.segments {
        let mut start = VirtAddr(seg.vaddr).align_down(PAGE_SIZE);
        let end = VirtAddr(seg.vaddr + seg.memsz).align_up(PAGE_SIZE);
        let prot = VmProt::new(seg.flags.read, seg.flags.write, seg.flags.exec);
        // Segments sorted by address may share the page at their boundary: that page
        // gets both segments' permissions (Linux maps the later segment over it).
        if let Some(prev) = mm.vmas.find(start).cloned() {
            let both = VmProt::new(
                prev.prot.read || prot.read,
                prev.prot.write || prot.write,
                prev.prot.exec || prot.exec,
            );
            mm.mprotect(start, start.add(PAGE_SIZE), both)?;
            start = start.add(PAGE_SIZE);
        }
        if start < end {
            mm.vmas
                .insert(Vma {
                    start,
                    end,
                    prot,
                    huge: HugeHint::Default,
                    flags: VmaFlags::default(),
                    kind: VmaKind::Image,
                })
                .map_err(|_| ENOEXEC)?;
        }
        mm.write_bytes(VirtAddr(seg.vaddr), elf.file_bytes(seg))
            .map_err(|_| ENOMEM)?;
        // The rest of the segment (bss) is zero: fresh pages are zero-filled.
        brk = brk.max(end);
    }
    Ok(brk)
}

/// The auxiliary vector glibc reads at startup.
fn auxv(elf: &elf::Elf<'_>) -> Vec<(u64, u64)> {
    [
        (stack::AT_PHDR, elf.phdr_vaddr.unwrap_or(0)),
        (stack::AT_PHENT, elf.phentsize as u64),
        (stack::AT_PHNUM, elf.phnum as u64),
        (stack::AT_PAGESZ, PAGE_SIZE as u64),
        (stack::AT_BASE, 0),
        (stack::AT_FLAGS, 0),
        (stack::AT_ENTRY, elf.entry),
        (stack::AT_UID, 0),
        (stack::AT_EUID, 0),
        (stack::AT_GID, 0),
        (stack::AT_EGID, 0),
        (
            stack::AT_HWCAP,
            crate::arch::aarch64::features::features().linux_hwcap(),
        ),
        (stack::AT_HWCAP2, 0),
        (stack::AT_CLKTCK, crate::time::TICK_HZ),
        (stack::AT_SECURE, 0),
    ]
    .into()
}
