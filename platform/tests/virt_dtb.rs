//! `platform::fdt` against device trees dumped by QEMU 7.2 itself
//! (`fixtures/regen.sh` shows the command lines).

use platform::{
    fdt::{dtb_size, parse, BoardError, MemRegion},
    gic::GicInfo,
    psci::Conduit,
    timer::VIRT_TIMER_INTID,
};

const GICV2_SMP1: &[u8] = include_bytes!("fixtures/virt-gicv2-smp1.dtb");
const GICV3_SMP4: &[u8] = include_bytes!("fixtures/virt-gicv3-smp4.dtb");
const EL2_SMC: &[u8] = include_bytes!("fixtures/virt-el2-smc.dtb");
const CHOSEN: &[u8] = include_bytes!("fixtures/virt-chosen.dtb");
const ALL: [&[u8]; 4] = [GICV2_SMP1, GICV3_SMP4, EL2_SMC, CHOSEN];

const RAM_BASE: u64 = 0x4000_0000;
const GIB: u64 = 1 << 30;
const PL011: u64 = 0x0900_0000;
const GICD: u64 = 0x0800_0000;
const GICC: u64 = 0x0801_0000;
const GICR: u64 = 0x080a_0000;

#[test]
fn gicv2_single_cpu() {
    let board = parse(GICV2_SMP1).unwrap();
    assert_eq!(
        board.memory_regions(),
        &[MemRegion {
            base: RAM_BASE,
            size: GIB
        }]
    );
    assert_eq!(board.total_memory(), GIB);
    assert_eq!(board.cpu_mpidrs(), &[0]);
    assert_eq!(
        board.gic,
        GicInfo::V2 {
            dist_base: GICD,
            cpu_base: GICC
        }
    );
    assert_eq!(board.gic.version(), 2);
    assert_eq!(board.pl011_base, PL011);
    assert_eq!(board.timer_intid, 27);
    assert_eq!(board.psci, Some(Conduit::Hvc));
    assert_eq!(board.bootargs, "");
    assert_eq!(board.initrd, None);
}

#[test]
fn gicv3_four_cpus() {
    let board = parse(GICV3_SMP4).unwrap();
    assert_eq!(
        board.memory_regions(),
        &[MemRegion {
            base: RAM_BASE,
            size: GIB
        }]
    );
    assert_eq!(board.cpu_mpidrs(), &[0, 1, 2, 3]);
    // One region for up to 123 CPUs of 128 KiB redistributor frames.
    assert_eq!(
        board.gic,
        GicInfo::V3 {
            dist_base: GICD,
            redist_base: GICR,
            redist_size: 0xf6_0000
        }
    );
    assert_eq!(board.gic.version(), 3);
    assert_eq!(board.pl011_base, PL011);
    assert_eq!(board.timer_intid, VIRT_TIMER_INTID);
    assert_eq!(board.psci, Some(Conduit::Hvc));
}

#[test]
fn virtualization_on_uses_smc() {
    let board = parse(EL2_SMC).unwrap();
    assert_eq!(board.psci, Some(Conduit::Smc));
    assert_eq!(board.cpu_mpidrs(), &[0, 1]);
    // The GICv2 node then also lists GICH and GICV; the first two frames are unchanged.
    assert_eq!(
        board.gic,
        GicInfo::V2 {
            dist_base: GICD,
            cpu_base: GICC
        }
    );
    assert_eq!(board.timer_intid, 27);
}

#[test]
fn chosen_bootargs_and_initrd() {
    let board = parse(CHOSEN).unwrap();
    assert_eq!(board.bootargs, "loglevel=debug ktest");
    let initrd = board.initrd.unwrap();
    assert_eq!(initrd.size, 22, "regen.sh's initrd is 22 bytes");
    let ram = board.memory_regions()[0];
    assert_eq!(
        ram,
        MemRegion {
            base: RAM_BASE,
            size: 512 << 20
        }
    );
    assert!(initrd.base >= ram.base && initrd.end() <= ram.end());
}

#[test]
fn dtb_size_is_the_whole_dump() {
    for dtb in ALL {
        // SAFETY: the slice is far longer than the 8 bytes read.
        assert_eq!(unsafe { dtb_size(dtb.as_ptr()) }, Some(dtb.len()));
    }
    let not_a_dtb = [0u8; 8];
    // SAFETY: 8 readable bytes.
    assert_eq!(unsafe { dtb_size(not_a_dtb.as_ptr()) }, None);
    // Any alignment.
    let mut shifted = [0u8; 9];
    shifted[1..].copy_from_slice(&GICV2_SMP1[..8]);
    // SAFETY: 8 readable bytes from index 1.
    assert_eq!(
        unsafe { dtb_size(shifted.as_ptr().add(1)) },
        Some(GICV2_SMP1.len())
    );
}

#[test]
fn garbage_is_an_error() {
    assert_eq!(parse(&[]).unwrap_err(), BoardError::Header);
    assert_eq!(
        parse(b"not a device tree at all, just text").unwrap_err(),
        BoardError::Header
    );
    assert_eq!(parse(&[0xff; 4096]).unwrap_err(), BoardError::Header);
    // The header claims 1 MiB but the buffer is cut short.
    assert_eq!(
        parse(&GICV3_SMP4[..16 * 1024]).unwrap_err(),
        BoardError::Header
    );
    // Only the magic.
    assert_eq!(parse(&GICV3_SMP4[..4]).unwrap_err(), BoardError::Header);
}

/// Offset of the one occurrence of `needle`.
fn find_once(haystack: &[u8], needle: &[u8]) -> usize {
    let mut hits = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let (at, _) = hits.next().expect("pattern present");
    assert!(hits.next().is_none(), "pattern must be unique");
    at
}

fn patched(dtb: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = dtb.to_vec();
    let at = find_once(&out, from);
    out[at..at + to.len()].copy_from_slice(to);
    out
}

/// The GICv3 fixture's `/timer` `interrupts`: four (PPI, number, flags) triples.
fn timer_interrupts(third_type: u32, third_number: u32) -> Vec<u8> {
    [1, 13, 4, 1, 14, 4, third_type, third_number, 4, 1, 10, 4]
        .iter()
        .flat_map(|c: &u32| c.to_be_bytes())
        .collect()
}

#[test]
fn timer_intid_comes_from_the_dtb() {
    let moved = patched(
        GICV3_SMP4,
        &timer_interrupts(1, 11),
        &timer_interrupts(1, 12),
    );
    assert_eq!(parse(&moved).unwrap().timer_intid, 28);

    let spi = patched(
        GICV3_SMP4,
        &timer_interrupts(1, 11),
        &timer_interrupts(0, 11),
    );
    assert_eq!(
        parse(&spi).unwrap_err(),
        BoardError::BadProperty {
            node: "/timer",
            property: "interrupts"
        }
    );
}

#[test]
fn timer_falls_back_to_27_without_a_timer_node() {
    let no_timer = patched(GICV3_SMP4, b"arm,armv8-timer\0", b"arm,armv8-tXmer\0");
    assert_eq!(parse(&no_timer).unwrap().timer_intid, VIRT_TIMER_INTID);
}

#[test]
fn missing_or_bad_parts_are_named() {
    let no_gic = patched(GICV3_SMP4, b"arm,gic-v3\0", b"arm,gic-vX\0");
    assert_eq!(parse(&no_gic).unwrap_err(), BoardError::Missing("GIC"));

    let no_uart = patched(GICV2_SMP1, b"arm,pl011\0", b"arm,pl0XX\0");
    assert_eq!(
        parse(&no_uart).unwrap_err(),
        BoardError::Missing("arm,pl011 UART")
    );

    let bad_method = patched(GICV2_SMP1, b"hvc\0", b"xyz\0");
    assert_eq!(
        parse(&bad_method).unwrap_err(),
        BoardError::BadProperty {
            node: "/psci",
            property: "method"
        }
    );
}

/// Big-endian u32 header field `index`.
fn header(dtb: &[u8], index: usize) -> usize {
    u32::from_be_bytes(dtb[4 * index..4 * index + 4].try_into().unwrap()) as usize
}

#[test]
fn corrupted_dtbs_never_panic() {
    // Overwrite random bytes of the header, structure and strings blocks, one at a
    // time, and parse: any result is fine, a panic or a hang is not.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for fixture in ALL {
        let mut dtb = fixture.to_vec();
        let used = header(&dtb, 3) + header(&dtb, 8); // end of the strings block
        let mut parsed = 0;
        for _ in 0..1000 {
            let at = next() as usize % used;
            let original = dtb[at];
            dtb[at] = next() as u8;
            parsed += usize::from(parse(&dtb).is_ok());
            dtb[at] = original;
        }
        // Most single-byte changes land in property values and still parse.
        assert!(parsed > 0);
    }
}
