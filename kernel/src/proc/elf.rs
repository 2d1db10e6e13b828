//! Static AArch64 ELF64 executables: the parser and validator `execve` runs before it
//! touches the old address space. Only what a static binary needs is read: the ELF
//! header, and the PT_LOAD segments (what to map where), PT_PHDR and PT_INTERP of the
//! program-header table. Section headers are ignored, as Linux's loader does.
//!
//! Everything the loader later relies on is checked here, so it needs no checks of its
//! own: each segment's file bytes lie inside the file, it fits below 2^48 (the top of
//! the TTBR0 range with 48-bit VAs), its file offset and address agree modulo the page
//! size (so the file can be mapped page by page), and no two segments overlap in memory
//! (two may still share a page at their boundary: the loader maps such a page with the
//! union of their permissions). Any failure is ENOEXEC.

use alloc::vec::Vec;

use crate::mm::PAGE_SIZE;
use crate::uapi::ENOEXEC;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// Segments must end at or below this: the 48-bit user address range.
const USER_VA_END: u64 = 1 << 48;
const PAGE_MASK: u64 = PAGE_SIZE as u64 - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than the ELF header.
    Truncated,
    BadMagic,
    /// Not ELFCLASS64.
    BadClass,
    /// Not little-endian.
    BadEndian,
    BadVersion,
    /// e_machine is not EM_AARCH64.
    NotAarch64,
    /// e_type is not ET_EXEC (a shared object, relocatable or core file).
    NotExecutable,
    /// Has a PT_INTERP: a dynamically linked executable.
    Dynamic,
    /// The program-header table is outside the file or has the wrong entry size.
    BadPhdrs,
    /// No PT_LOAD segment with bytes in memory.
    NoSegments,
    /// A PT_LOAD's file bytes extend beyond the file.
    SegmentOutsideFile,
    /// A PT_LOAD with more bytes in the file than in memory.
    FileszAboveMemsz,
    /// An offset or address computation overflows.
    Overflow,
    /// A PT_LOAD whose address and file offset differ modulo the page size.
    Misaligned,
    /// A PT_LOAD ending above the user address range.
    AboveUserRange,
    /// Two PT_LOADs overlap in memory.
    Overlap,
}

impl ElfError {
    /// Every malformed executable is ENOEXEC to `execve`.
    pub fn errno(self) -> i32 {
        ENOEXEC
    }
}

/// Permissions of a segment (`p_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegFlags {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// One PT_LOAD: `filesz` bytes from `offset` in the file at `vaddr`, then zeros up to
/// `memsz` (the .bss).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub filesz: u64,
    pub offset: u64,
    pub flags: SegFlags,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

/// A validated executable.
#[derive(Debug)]
pub struct Elf<'a> {
    pub entry: u64,
    /// The PT_LOAD segments with bytes in memory, in address order.
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (AT_PHDR), if they are loaded at all.
    pub phdr_vaddr: Option<u64>,
    /// AT_PHNUM, AT_PHENT.
    pub phnum: u16,
    pub phentsize: u16,
    pub data: &'a [u8],
}

impl<'a> Elf<'a> {
    /// The bytes of `seg` in the file (`filesz` of them).
    pub fn file_bytes(&self, seg: &Segment) -> &'a [u8] {
        &self.data[seg.offset as usize..(seg.offset + seg.filesz) as usize]
    }
}

/// A program header, as read from the file.
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and validates `data` as a static AArch64 executable.
pub fn parse(data: &[u8]) -> Result<Elf<'_>, ElfError> {
    check_ident(data)?;
    if u16_at(data, 16) != ET_EXEC {
        return Err(ElfError::NotExecutable);
    }
    if u16_at(data, 18) != EM_AARCH64 {
        return Err(ElfError::NotAarch64);
    }
    if u32_at(data, 20) != EV_CURRENT as u32 {
        return Err(ElfError::BadVersion);
    }
    let entry = u64_at(data, 24);
    let phoff = u64_at(data, 32);
    let phentsize = u16_at(data, 54);
    let phnum = u16_at(data, 56);
    let phdrs = read_phdrs(data, phoff, phentsize, phnum)?;
    if phdrs.iter().any(|p| p.kind == PT_INTERP) {
        return Err(ElfError::Dynamic);
    }
    let mut segments = Vec::new();
    for p in phdrs.iter().filter(|p| p.kind == PT_LOAD && p.memsz != 0) {
        segments.push(check_segment(p, data.len())?);
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    segments.sort_by_key(|s| s.vaddr);
    if segments.windows(2).any(|w| w[0].end() > w[1].vaddr) {
        return Err(ElfError::Overlap);
    }
    let table_len = phnum as u64 * PHDR_SIZE as u64;
    let phdr_vaddr = match phdrs.iter().find(|p| p.kind == PT_PHDR) {
        Some(p) => Some(p.vaddr),
        None => segments
            .iter()
            .find(|s| s.offset <= phoff && phoff + table_len <= s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset)),
    };
    Ok(Elf {
        entry,
        segments,
        phdr_vaddr,
        phnum,
        phentsize,
        data,
    })
}

/// e_ident: magic, 64-bit, little-endian, version 1.
fn check_ident(data: &[u8]) -> Result<(), ElfError> {
    if data.len() < EHDR_SIZE {
        return Err(ElfError::Truncated);
    }
    if data[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    if data[4] != ELFCLASS64 {
        return Err(ElfError::BadClass);
    }
    if data[5] != ELFDATA2LSB {
        return Err(ElfError::BadEndian);
    }
    if data[6] != EV_CURRENT {
        return Err(ElfError::BadVersion);
    }
    Ok(())
}

fn read_phdrs(data: &[u8], phoff: u64, entsize: u16, num: u16) -> Result<Vec<Phdr>, ElfError> {
    if entsize as usize != PHDR_SIZE {
        return Err(ElfError::BadPhdrs);
    }
    let table_end = (num as u64 * PHDR_SIZE as u64)
        .checked_add(phoff)
        .ok_or(ElfError::Overflow)?;
    if table_end > data.len() as u64 {
        return Err(ElfError::BadPhdrs);
    }
    let table = &data[phoff as usize..table_end as usize];
    Ok(table
        .chunks_exact(PHDR_SIZE)
        .map(|p| Phdr {
            kind: u32_at(p, 0),
            flags: u32_at(p, 4),
            offset: u64_at(p, 8),
            vaddr: u64_at(p, 16),
            filesz: u64_at(p, 32),
            memsz: u64_at(p, 40),
        })
        .collect())
}

fn check_segment(p: &Phdr, file_len: usize) -> Result<Segment, ElfError> {
    let file_end = p.offset.checked_add(p.filesz).ok_or(ElfError::Overflow)?;
    if file_end > file_len as u64 {
        return Err(ElfError::SegmentOutsideFile);
    }
    if p.filesz > p.memsz {
        return Err(ElfError::FileszAboveMemsz);
    }
    let end = p.vaddr.checked_add(p.memsz).ok_or(ElfError::Overflow)?;
    if end > USER_VA_END {
        return Err(ElfError::AboveUserRange);
    }
    if p.vaddr & PAGE_MASK != p.offset & PAGE_MASK {
        return Err(ElfError::Misaligned);
    }
    Ok(Segment {
        vaddr: p.vaddr,
        memsz: p.memsz,
        filesz: p.filesz,
        offset: p.offset,
        flags: SegFlags {
            read: p.flags & PF_R != 0,
            write: p.flags & PF_W != 0,
            exec: p.flags & PF_X != 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A static executable linked by GNU ld from four instructions, a word of .data and
    /// 8 KiB of .bss (see testdata/README.md).
    const EXIT0: &[u8] = include_bytes!("testdata/exit0.elf");

    /// A program header for the writer below.
    #[derive(Clone, Copy)]
    struct Ph {
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
    }

    fn load(offset: u64, vaddr: u64, filesz: u64, memsz: u64, flags: u32) -> Ph {
        Ph {
            kind: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
        }
    }

    /// An ELF image: header, program headers at offset 64, then zeros up to `len`.
    fn image(entry: u64, phdrs: &[Ph], len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len.max(EHDR_SIZE + phdrs.len() * PHDR_SIZE)];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2LSB;
        b[6] = EV_CURRENT;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        b[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, p) in phdrs.iter().enumerate() {
            let at = EHDR_SIZE + i * PHDR_SIZE;
            b[at..at + 4].copy_from_slice(&p.kind.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&p.flags.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&p.offset.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&p.vaddr.to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&p.vaddr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&p.filesz.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&p.memsz.to_le_bytes());
            b[at + 48..at + 56].copy_from_slice(&4096u64.to_le_bytes());
        }
        b
    }

    /// Text at 0x400000 (with the headers, as ld lays it out) and data+bss at 0x411000.
    fn two_segments() -> [Ph; 2] {
        [
            load(0, 0x40_0000, 0x1000, 0x1000, PF_R | PF_X),
            load(0x1000, 0x41_1000, 0x800, 0x3000, PF_R | PF_W),
        ]
    }

    #[test]
    fn parses_a_linker_made_executable() {
        let elf = parse(EXIT0).unwrap();
        assert_eq!(elf.entry, 0x40_00b0);
        assert_eq!(elf.phnum, 2);
        assert_eq!(elf.phentsize, 56);
        // No PT_PHDR: the table at file offset 64 lies in the first segment.
        assert_eq!(elf.phdr_vaddr, Some(0x40_0040));
        let [text, data] = elf.segments[..] else {
            panic!("{:?}", elf.segments)
        };
        assert_eq!((text.vaddr, text.offset, text.filesz), (0x40_0000, 0, 0xc0));
        assert_eq!(
            text.flags,
            SegFlags {
                read: true,
                write: false,
                exec: true
            }
        );
        assert_eq!(
            (data.vaddr, data.filesz, data.memsz),
            (0x40_10c0, 8, 0x2008)
        );
        assert_eq!(
            data.flags,
            SegFlags {
                read: true,
                write: true,
                exec: false
            }
        );
        assert_eq!(elf.file_bytes(&data), &[0; 8]);
        assert_eq!(&elf.file_bytes(&text)[..4], b"\x7fELF");
    }

    #[test]
    fn parses_a_built_executable_with_pt_phdr() {
        let phdr = Ph {
            kind: PT_PHDR,
            ..load(64, 0x40_0040, 3 * 56, 3 * 56, PF_R)
        };
        let [text, data] = two_segments();
        let b = image(0x40_0100, &[phdr, data, text], 0x1800);
        let elf = parse(&b).unwrap();
        assert_eq!(elf.entry, 0x40_0100);
        assert_eq!(elf.phdr_vaddr, Some(0x40_0040));
        // Sorted by address.
        assert_eq!(elf.segments[0].vaddr, 0x40_0000);
        assert_eq!(elf.segments[1].end(), 0x41_4000);
        assert_eq!(elf.file_bytes(&elf.segments[1]).len(), 0x800);
    }

    #[test]
    fn phdr_vaddr_absent_when_the_table_is_not_loaded() {
        let b = image(
            0x40_0000,
            &[load(0x1000, 0x40_0000, 0x100, 0x100, PF_R | PF_X)],
            0x1100,
        );
        assert_eq!(parse(&b).unwrap().phdr_vaddr, None);
    }

    #[test]
    fn rejects_bad_identification() {
        let good = image(0x40_0000, &two_segments(), 0x1800);
        let broken = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            parse(&b).unwrap_err()
        };
        assert_eq!(broken(0, 0), ElfError::BadMagic);
        assert_eq!(broken(4, 1), ElfError::BadClass);
        assert_eq!(broken(5, 2), ElfError::BadEndian);
        assert_eq!(broken(6, 0), ElfError::BadVersion);
        assert_eq!(broken(20, 2), ElfError::BadVersion);
        assert_eq!(broken(16, 3), ElfError::NotExecutable); // ET_DYN
        assert_eq!(broken(18, 62), ElfError::NotAarch64); // EM_X86_64
        assert_eq!(broken(54, 32), ElfError::BadPhdrs);
        assert_eq!(parse(&good[..63]).unwrap_err(), ElfError::Truncated);
        assert_eq!(parse(b"").unwrap_err(), ElfError::Truncated);
        assert_eq!(ElfError::BadMagic.errno(), 8);
    }

    #[test]
    fn rejects_dynamic_executables() {
        let interp = Ph {
            kind: PT_INTERP,
            ..load(0x200, 0x40_0200, 27, 27, PF_R)
        };
        let [text, data] = two_segments();
        let b = image(0x40_0000, &[text, interp, data], 0x1800);
        assert_eq!(parse(&b).unwrap_err(), ElfError::Dynamic);
    }

    #[test]
    fn rejects_program_headers_outside_the_file() {
        let mut b = image(0x40_0000, &two_segments(), 0x1800);
        b[56..58].copy_from_slice(&1000u16.to_le_bytes()); // phnum
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadPhdrs);
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff
        assert_eq!(parse(&b).unwrap_err(), ElfError::Overflow);
        b[32..40].copy_from_slice(&0x1800u64.to_le_bytes());
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadPhdrs);
    }

    #[test]
    fn rejects_bad_segments() {
        let rx = PF_R | PF_X;
        let cases = [
            (
                load(0x1000, 0x40_0000, 0x1000, 0x1000, rx),
                ElfError::SegmentOutsideFile,
            ),
            (load(u64::MAX, 0x40_0000, 2, 2, rx), ElfError::Overflow),
            (
                load(0, 0x40_0000, 0x200, 0x100, rx),
                ElfError::FileszAboveMemsz,
            ),
            (
                load(0, u64::MAX - 0xfff, 0x100, 0x2000, rx),
                ElfError::Overflow,
            ),
            (load(0, 0x40_0010, 0x100, 0x100, rx), ElfError::Misaligned),
            (
                load(0, USER_VA_END - 0x1000, 0x100, 0x2000, rx),
                ElfError::AboveUserRange,
            ),
            (
                load(0, USER_VA_END, 0x100, 0x100, rx),
                ElfError::AboveUserRange,
            ),
        ];
        for (ph, err) in cases {
            assert_eq!(parse(&image(0x40_0000, &[ph], 0x1800)).unwrap_err(), err);
        }
        // Ending exactly at 2^48 is fine.
        let top = load(0, USER_VA_END - 0x2000, 0x100, 0x2000, rx);
        assert!(parse(&image(0x40_0000, &[top], 0x1800)).is_ok());
    }

    #[test]
    fn rejects_overlapping_segments_but_not_touching_ones() {
        let text = load(0, 0x40_0000, 0x1000, 0x2000, PF_R | PF_X);
        let over = load(0x1000, 0x40_1000, 0x100, 0x100, PF_R | PF_W);
        let b = image(0x40_0000, &[over, text], 0x1800);
        assert_eq!(parse(&b).unwrap_err(), ElfError::Overlap);
        // Sharing a page, not bytes: accepted.
        let after = load(0x1000, 0x40_2000, 0x100, 0x100, PF_R | PF_W);
        let inside_page = load(0x1100, 0x40_2100, 0x100, 0x100, PF_R);
        assert!(parse(&image(0x40_0000, &[text, after, inside_page], 0x1800)).is_ok());
    }

    #[test]
    fn rejects_executables_without_loadable_bytes() {
        assert_eq!(
            parse(&image(0x40_0000, &[], 0x100)).unwrap_err(),
            ElfError::NoSegments
        );
        let empty = load(0, 0x40_0000, 0, 0, PF_R);
        assert_eq!(
            parse(&image(0x40_0000, &[empty], 0x100)).unwrap_err(),
            ElfError::NoSegments
        );
    }

    #[test]
    fn rejects_the_kernel_image_shape() {
        // The kernel's own ELF: ET_EXEC, entry at its physical load address, segments in
        // the high half (TTBR1). Its program headers, as `readelf -l` prints them:
        let kernel = [
            load(
                0x1_0000,
                0xffff_0000_4020_0000,
                0x2_0374,
                0x2_0374,
                PF_R | PF_X,
            ),
            load(0x3_1000, 0xffff_0000_4022_1000, 0x9274, 0x9274, PF_R),
            load(
                0x3_b000,
                0xffff_0000_4022_b000,
                0x2a0,
                0x80_7950,
                PF_R | PF_W,
            ),
        ];
        let b = image(0x4020_0000, &kernel, 0x3_b2a0);
        assert_eq!(parse(&b).unwrap_err(), ElfError::AboveUserRange);
    }

    #[test]
    fn never_panics_on_truncations_or_corruption() {
        for len in 0..EXIT0.len() {
            let _ = parse(&EXIT0[..len]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = EXIT0.to_vec();
            let at = (seed % (EHDR_SIZE as u64 + 2 * PHDR_SIZE as u64)) as usize;
            b[at] = (seed >> 32) as u8;
            let _ = parse(&b);
        }
    }

    proptest::proptest! {
        /// Random bytes, and a real executable with random edits and a random cut: never
        /// a panic, and whatever parses has every segment's bytes inside the file and
        /// its addresses in the user range.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn corrupted_executables_never_panic(
            edits in proptest::collection::vec((0..EHDR_SIZE + 4 * PHDR_SIZE, proptest::prelude::any::<u8>()), 1..12),
            cut in 0..=EXIT0.len(),
        ) {
            let mut b = EXIT0.to_vec();
            for (at, v) in edits {
                b[at % EXIT0.len()] = v;
            }
            if let Ok(elf) = parse(&b[..cut]) {
                for seg in &elf.segments {
                    proptest::prop_assert!(elf.file_bytes(seg).len() as u64 == seg.filesz);
                    proptest::prop_assert!(seg.end() >= seg.vaddr);
                }
            }
        }
    }
}
