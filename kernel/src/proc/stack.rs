//! The initial user stack of a new program, laid out as Linux lays it out for a static
//! executable (`copy_strings` in fs/exec.c, `create_elf_tables` in fs/binfmt_elf.c).
//! From the top down:
//!
//! ```text
//! stack_top   8 zero bytes (Linux starts copying one pointer below the top)
//!             execfn, envp and argv strings, each NUL-terminated (argv[0] lowest)
//!             padding to 16 bytes
//!             16 random bytes                     <- AT_RANDOM
//!             padding, so that sp is 16-byte aligned
//!             auxv: (key, value) pairs ..., (AT_RANDOM, _), (AT_EXECFN, _), (AT_NULL, 0)
//!             envp[0] ... envp[envc - 1], NULL
//!             argv[0] ... argv[argc - 1], NULL
//! sp          argc
//! ```
//!
//! All words are 64-bit little-endian. The C runtime's `_start` finds argc at sp,
//! argv at sp + 8, and envp and the auxiliary vector after the NULLs.
//!
//! The stack VMA then grows down as Linux's VM_GROWSDOWN stack does (`grow`): exec maps
//! these pages and `EXPAND_AT_EXEC` below them, and a fault below the VMA extends it to
//! the faulting page, up to `STACK_SIZE` (RLIMIT_STACK's default) and never closer
//! than `GUARD_GAP` to the mapping below. So the stack is never a large, empty,
//! aligned range: a fault in it finds no room for a 2 MiB folio, as on Linux, where a
//! fixed 8 MiB VMA would take one at the first touch of each 2 MiB.

use alloc::vec;
use alloc::vec::Vec;

use crate::mm::PAGE_SIZE;
use crate::uapi::E2BIG;

// Auxiliary-vector keys (include/uapi/linux/auxvec.h, arch/arm64/include/uapi/asm/auxvec.h).
pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;
pub const AT_MINSIGSTKSZ: u64 = 51;

/// Most bytes of argv and envp strings (with their NULs) an exec may pass: 128 KiB,
/// Linux's fixed limit before 2.6.23 (MAX_ARG_PAGES = 32).
pub const MAX_ARG_BYTES: usize = 32 * PAGE_SIZE;

/// The stack VMA exec leaves below the argument pages (Linux's `stack_expand` in
/// `setup_arg_pages`: 128 KiB).
pub const EXPAND_AT_EXEC: u64 = 128 << 10;

/// The free space a grown stack keeps above the mapping below it (Linux's
/// `stack_guard_gap`, 256 pages).
#[cfg(any(target_os = "none", test))]
const GUARD_GAP: u64 = 256 * PAGE_SIZE as u64;

/// A fault at `va`, which no VMA holds: if the VMA just above it is the stack, and
/// the stack may reach down to `va`'s page (no deeper than `STACK_SIZE` below
/// `STACK_TOP`, `GUARD_GAP` clear of the VMA below), extend it there (Linux's
/// `expand_downwards`) and say so; the fault is then handled in it. The new part
/// merges into the stack VMA, so growth adds no VMA.
#[cfg(any(target_os = "none", test))]
pub fn grow(vmas: &mut crate::mm::vma::VmaSet, va: crate::mm::VirtAddr) -> bool {
    use crate::mm::aspace::{STACK_SIZE, STACK_TOP};
    use crate::mm::vma::{Vma, VmaKind};
    use crate::mm::VirtAddr;
    let page = va.align_down(PAGE_SIZE);
    if page.as_u64() < STACK_TOP - STACK_SIZE || vmas.find(va).is_some() {
        return false;
    }
    let Some(stack) = vmas.next_from(va).cloned() else {
        return false;
    };
    if stack.kind != VmaKind::Stack {
        return false;
    }
    // Stricter than Linux, which lets the gap hold an inaccessible (PROT_NONE) VMA.
    if !vmas.is_free(VirtAddr(page.as_u64() - GUARD_GAP), page) {
        return false;
    }
    vmas.insert(Vma {
        start: page,
        end: stack.start,
        ..stack
    })
    .is_ok()
}

/// Linux leaves the top pointer-sized slot of the stack zero.
const END_MARKER: usize = 8;

/// The bytes to copy to `[sp, sp + bytes.len())`, which ends at the stack top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImage {
    pub bytes: Vec<u8>,
    /// The initial stack pointer: 16-byte aligned, pointing at argc.
    pub sp: u64,
}

/// The initial stack for `argv` and `envp`, with the caller's `auxv` entries followed by
/// AT_RANDOM (pointing at `random`), AT_EXECFN (pointing at `execfn`) and AT_NULL.
/// Fails with E2BIG when the strings exceed `MAX_ARG_BYTES`.
pub fn build(
    stack_top: u64,
    argv: &[&[u8]],
    envp: &[&[u8]],
    auxv: &[(u64, u64)],
    random: [u8; 16],
    execfn: &[u8],
) -> Result<StackImage, i32> {
    assert!(
        stack_top.is_multiple_of(16),
        "stack top {stack_top:#x} not 16-byte aligned"
    );
    assert!(
        auxv.iter()
            .all(|(key, _)| ![AT_NULL, AT_RANDOM, AT_EXECFN].contains(key)),
        "the builder adds AT_RANDOM, AT_EXECFN and AT_NULL itself"
    );
    let arg_bytes: usize = argv.iter().chain(envp).map(|s| s.len() + 1).sum();
    if arg_bytes > MAX_ARG_BYTES {
        return Err(E2BIG);
    }
    // Distances below the top, then the image length.
    let strings_below_top = END_MARKER + arg_bytes + execfn.len() + 1;
    let random_below_top = strings_below_top.next_multiple_of(16) + 16;
    let nwords = 1 + (argv.len() + 1) + (envp.len() + 1) + 2 * (auxv.len() + 3);
    let len = (random_below_top + 8 * nwords).next_multiple_of(16);
    assert!(len as u64 <= stack_top, "stack image below address 0");
    let sp = stack_top - len as u64;
    let mut bytes = vec![0u8; len];

    // The strings, each followed by the NUL the zeroed buffer already holds.
    let mut at = len - strings_below_top;
    let mut pointers = Vec::with_capacity(argv.len() + envp.len() + 1);
    for s in argv.iter().chain(envp).chain([&execfn]) {
        bytes[at..at + s.len()].copy_from_slice(s);
        pointers.push(sp + at as u64);
        at += s.len() + 1;
    }
    let random_at = len - random_below_top;
    bytes[random_at..random_at + 16].copy_from_slice(&random);

    let (argv_ptrs, rest) = pointers.split_at(argv.len());
    let (envp_ptrs, execfn_ptr) = rest.split_at(envp.len());
    let added = [
        (AT_RANDOM, sp + random_at as u64),
        (AT_EXECFN, execfn_ptr[0]),
        (AT_NULL, 0),
    ];
    let mut words = Vec::with_capacity(nwords);
    words.push(argv.len() as u64);
    words.extend(argv_ptrs.iter().chain(&[0]));
    words.extend(envp_ptrs.iter().chain(&[0]));
    words.extend(auxv.iter().chain(&added).flat_map(|&(k, v)| [k, v]));
    for (slot, word) in bytes.chunks_exact_mut(8).zip(&words) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
    Ok(StackImage { bytes, sp })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u64 = 0x0000_ffff_f000_0000;
    const RANDOM: [u8; 16] = *b"0123456789abcdef";

    /// Reads the image back as the C runtime would, from its addresses.
    struct Reader<'a> {
        image: &'a StackImage,
        top: u64,
    }

    impl Reader<'_> {
        fn index(&self, addr: u64) -> usize {
            assert!(
                addr >= self.image.sp && addr < self.top,
                "{addr:#x} outside the image"
            );
            (addr - self.image.sp) as usize
        }

        fn word(&self, addr: u64) -> u64 {
            let i = self.index(addr);
            u64::from_le_bytes(self.image.bytes[i..i + 8].try_into().unwrap())
        }

        fn cstr(&self, addr: u64) -> &[u8] {
            let tail = &self.image.bytes[self.index(addr)..];
            &tail[..tail.iter().position(|&b| b == 0).expect("NUL-terminated")]
        }

        /// The NULL-terminated pointer array at `addr`: its strings and the next address.
        fn strings(&self, mut addr: u64) -> (Vec<&[u8]>, u64) {
            let mut out = Vec::new();
            while self.word(addr) != 0 {
                out.push(self.cstr(self.word(addr)));
                addr += 8;
            }
            (out, addr + 8)
        }

        fn parse(&self) -> Parsed<'_> {
            let argc = self.word(self.image.sp);
            let (argv, envp_at) = self.strings(self.image.sp + 8);
            let (envp, mut aux_at) = self.strings(envp_at);
            let mut auxv = Vec::new();
            while self.word(aux_at) != AT_NULL {
                auxv.push((self.word(aux_at), self.word(aux_at + 8)));
                aux_at += 16;
            }
            Parsed {
                argc,
                argv,
                envp,
                auxv,
            }
        }
    }

    /// What `_start` sees; `auxv` without its AT_NULL.
    struct Parsed<'a> {
        argc: u64,
        argv: Vec<&'a [u8]>,
        envp: Vec<&'a [u8]>,
        auxv: Vec<(u64, u64)>,
    }

    fn aux(auxv: &[(u64, u64)], key: u64) -> u64 {
        auxv.iter().find(|(k, _)| *k == key).unwrap().1
    }

    #[test]
    fn argv_envp_and_auxv_read_back() {
        let argv: [&[u8]; 3] = [b"/bin/init", b"-v", b""];
        let envp: [&[u8]; 2] = [b"HOME=/", b"TERM=linux"];
        let caller = [(AT_PAGESZ, 4096), (AT_ENTRY, 0x40_00b0), (AT_PHNUM, 2)];
        let image = build(TOP, &argv, &envp, &caller, RANDOM, b"/bin/init").unwrap();
        assert!(image.sp.is_multiple_of(16));
        assert_eq!(image.sp + image.bytes.len() as u64, TOP);
        let r = Reader {
            image: &image,
            top: TOP,
        };
        let Parsed {
            argc,
            argv: got_argv,
            envp: got_envp,
            auxv,
        } = r.parse();
        assert_eq!(argc, 3);
        assert_eq!(got_argv, argv);
        assert_eq!(got_envp, envp);
        assert_eq!(&auxv[..3], &caller);
        assert_eq!(auxv.len(), 5);
        let random = r.index(aux(&auxv, AT_RANDOM));
        assert_eq!(image.bytes[random..random + 16], RANDOM);
        assert_eq!(r.cstr(aux(&auxv, AT_EXECFN)), b"/bin/init");
        // The top 8 bytes are the zero end marker, just above the execfn string's NUL.
        assert_eq!(r.word(TOP - 8), 0);
        assert_eq!(aux(&auxv, AT_EXECFN), TOP - 8 - 10);
    }

    #[test]
    fn layout_order_from_the_top() {
        let image = build(TOP, &[b"a"], &[b"B=1"], &[], RANDOM, b"/x").unwrap();
        let r = Reader {
            image: &image,
            top: TOP,
        };
        let auxv = r.parse().auxv;
        let argv0 = r.word(image.sp + 8);
        let envp0 = r.word(image.sp + 24);
        let random = aux(&auxv, AT_RANDOM);
        let execfn = aux(&auxv, AT_EXECFN);
        // Vectors < random bytes < argv strings < envp strings < execfn < end marker.
        let auxv_end = image.sp + 8 * (1 + 2 + 2 + 2 * 3);
        assert!(auxv_end <= random && random.is_multiple_of(16));
        assert!(random + 16 <= argv0 && argv0 < envp0 && envp0 < execfn);
        assert_eq!(execfn + 3, TOP - 8);
        // The image is as small as the alignment rules allow.
        assert!(random - auxv_end < 16);
    }

    #[test]
    fn empty_argv_and_envp() {
        let image = build(TOP, &[], &[], &[], RANDOM, b"/init").unwrap();
        let r = Reader {
            image: &image,
            top: TOP,
        };
        let Parsed {
            argc,
            argv,
            envp,
            auxv,
        } = r.parse();
        assert_eq!((argc, argv.len(), envp.len()), (0, 0, 0));
        assert_eq!(
            auxv.iter().map(|a| a.0).collect::<Vec<_>>(),
            [AT_RANDOM, AT_EXECFN]
        );
    }

    #[test]
    fn sp_is_aligned_for_every_string_length() {
        for n in 0..40 {
            let arg = vec![b'x'; n];
            let image = build(TOP, &[&arg], &[], &[(AT_PAGESZ, 4096)], RANDOM, b"/i").unwrap();
            assert!(image.sp.is_multiple_of(16), "argument of {n} bytes");
            let r = Reader {
                image: &image,
                top: TOP,
            };
            assert_eq!(r.parse().argv, [&arg[..]]);
        }
    }

    #[test]
    fn too_many_argument_bytes_is_e2big() {
        let big = vec![b'a'; MAX_ARG_BYTES / 2];
        // Two halves plus their NULs are 2 bytes too many; one byte less each fits.
        assert_eq!(build(TOP, &[&big], &[&big], &[], RANDOM, b"/i"), Err(E2BIG));
        let fits = &big[..big.len() - 1];
        assert!(build(TOP, &[fits], &[fits], &[], RANDOM, b"/i").is_ok());
    }

    #[test]
    #[should_panic(expected = "adds AT_RANDOM")]
    fn caller_must_not_pass_at_random() {
        let _ = build(TOP, &[], &[], &[(AT_RANDOM, 0)], RANDOM, b"/i");
    }

    mod growth {
        use super::super::{grow, EXPAND_AT_EXEC, GUARD_GAP};
        use crate::mm::aspace::{STACK_SIZE, STACK_TOP};
        use crate::mm::vma::{HugeHint, VmProt, Vma, VmaFlags, VmaKind, VmaSet};
        use crate::mm::VirtAddr;

        const PAGE: u64 = crate::mm::PAGE_SIZE as u64;

        fn vma(start: u64, end: u64, kind: VmaKind) -> Vma {
            Vma {
                start: VirtAddr(start),
                end: VirtAddr(end),
                prot: VmProt::new(true, true, false),
                huge: HugeHint::Default,
                flags: VmaFlags::default(),
                kind,
            }
        }

        /// The stack exec leaves: one page of arguments and `EXPAND_AT_EXEC` below.
        fn at_exec() -> (VmaSet, u64) {
            let mut v = VmaSet::new();
            let start = STACK_TOP - PAGE - EXPAND_AT_EXEC;
            v.insert(vma(start, STACK_TOP, VmaKind::Stack)).unwrap();
            (v, start)
        }

        #[test]
        fn a_fault_below_the_stack_extends_it_to_the_page() {
            let (mut v, start) = at_exec();
            assert!(grow(&mut v, VirtAddr(start - 3 * PAGE + 8)));
            let s = v.find(VirtAddr(STACK_TOP - 1)).unwrap();
            assert_eq!(
                (s.start.as_u64(), s.end.as_u64()),
                (start - 3 * PAGE, STACK_TOP)
            );
            assert_eq!(v.len(), 1, "the new part merged into the stack VMA");
        }

        #[test]
        fn no_deeper_than_the_limit() {
            let (mut v, _) = at_exec();
            let floor = STACK_TOP - STACK_SIZE;
            assert!(!grow(&mut v, VirtAddr(floor - 1)));
            assert!(grow(&mut v, VirtAddr(floor)));
            assert_eq!(v.find(VirtAddr(floor)).unwrap().end.as_u64(), STACK_TOP);
        }

        #[test]
        fn not_into_the_guard_gap_of_the_mapping_below() {
            let (mut v, start) = at_exec();
            let other = start - 2 * GUARD_GAP;
            v.insert(vma(other - PAGE, other, VmaKind::Anon)).unwrap();
            assert!(!grow(&mut v, VirtAddr(other + GUARD_GAP - PAGE)));
            assert!(grow(&mut v, VirtAddr(other + GUARD_GAP)));
        }

        #[test]
        fn only_the_stack_grows_and_only_from_below() {
            let (mut v, start) = at_exec();
            assert!(
                !grow(&mut v, VirtAddr(start)),
                "inside the stack: nothing to do"
            );
            let anon = STACK_TOP - STACK_SIZE;
            let mut w = VmaSet::new();
            w.insert(vma(anon + PAGE, anon + 2 * PAGE, VmaKind::Anon))
                .unwrap();
            assert!(!grow(&mut w, VirtAddr(anon)), "below an anonymous mapping");
            assert!(!grow(&mut w, VirtAddr(STACK_TOP)), "above everything");
        }
    }
}
