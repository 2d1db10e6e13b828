//! The board description: what QEMU's flattened device tree (DTB) says about the
//! machine, read once at boot into a [`BoardInfo`] that needs no heap.
//!
//! QEMU `virt` puts every device this kernel uses directly under `/`, so `reg`
//! addresses are read with the root's `#address-cells`/`#size-cells` and need no
//! `ranges` translation. All addresses here are physical.
//!
//! The `fdt` crate (0.1.5) walks the tree, but it panics or recurses without bound on
//! some malformed input. So [`parse`] first checks the header and walks the structure
//! block itself (tokens, nesting depth, name and property bounds) and hands the tree to
//! `fdt` only if it is well formed; every property value is then decoded here, with
//! its length checked. A bad DTB is an error, never a panic. `FDT_NOP` tokens are
//! refused: QEMU never writes them and `fdt` 0.1.5 mis-walks some placements.

use core::{fmt, ops::RangeInclusive};

use ::fdt::{node::FdtNode, Fdt};

use crate::{
    gic::GicInfo,
    psci::Conduit,
    timer::{PHYS_TIMER_INTID, VIRT_TIMER_INTID},
};

/// Capacity for memory regions (`reg` entries of `/memory` nodes).
pub const MAX_MEMORY_REGIONS: usize = 8;
/// Capacity for CPUs.
pub const MAX_CPUS: usize = 64;

/// A physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
}

impl MemRegion {
    /// First address past the region.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// Why a DTB could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardError {
    /// Not a usable DTB header: magic, version, sizes or block offsets.
    Header,
    /// The structure block is malformed: tokens, nesting, names or property bounds.
    Structure,
    /// A node the kernel needs is absent.
    Missing(&'static str),
    /// A property has the wrong size or contents.
    BadProperty {
        node: &'static str,
        property: &'static str,
    },
    /// More entries than [`MAX_MEMORY_REGIONS`] or [`MAX_CPUS`].
    TooMany(&'static str),
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoardError::Header => f.write_str("DTB: bad header"),
            BoardError::Structure => f.write_str("DTB: malformed structure block"),
            BoardError::Missing(what) => write!(f, "DTB: no {what}"),
            BoardError::BadProperty { node, property } => {
                write!(f, "DTB: bad property {property} in {node}")
            }
            BoardError::TooMany(what) => write!(f, "DTB: too many {what}"),
        }
    }
}

/// What the kernel needs to know about the board.
#[derive(Debug, Clone)]
pub struct BoardInfo<'a> {
    memory: Bounded<MemRegion, MAX_MEMORY_REGIONS>,
    cpus: Bounded<u64, MAX_CPUS>,
    /// `/chosen/bootargs` (QEMU's `-append`), empty if absent.
    pub bootargs: &'a str,
    /// `/chosen/linux,initrd-{start,end}`. QEMU 7.2 writes them only for a non-ELF
    /// (Linux Image) kernel, so an ELF kernel never gets one.
    pub initrd: Option<MemRegion>,
    /// The first enabled PL011 UART.
    pub pl011_base: u64,
    /// The interrupt controller.
    pub gic: GicInfo,
    /// INTID of the EL1 virtual timer (third `/timer` interrupt).
    pub timer_intid: u32,
    /// INTID of the EL1 physical timer (second `/timer` interrupt): the profiler's.
    pub phys_timer_intid: u32,
    /// How to call PSCI 0.2+ firmware; `None` if the DTB offers none.
    pub psci: Option<Conduit>,
}

impl BoardInfo<'_> {
    /// RAM, from the `/memory` nodes, in DTB order.
    pub fn memory_regions(&self) -> &[MemRegion] {
        self.memory.as_slice()
    }

    /// Total bytes of RAM.
    pub fn total_memory(&self) -> u64 {
        // Saturating: each region is checked not to wrap, but a corrupt DTB could
        // list regions whose sizes add up past u64::MAX.
        self.memory_regions()
            .iter()
            .fold(0, |total: u64, r| total.saturating_add(r.size))
    }

    /// The MPIDR affinity value (`reg`) of every CPU node, in DTB order.
    pub fn cpu_mpidrs(&self) -> &[u64] {
        self.cpus.as_slice()
    }
}

/// Reads the board description from a DTB (only its first `totalsize` bytes are used).
pub fn parse(dtb: &[u8]) -> Result<BoardInfo<'_>, BoardError> {
    let dtb = checked(dtb)?;
    let fdt = Fdt::new(dtb).map_err(|_| BoardError::Header)?;
    let root = fdt.all_nodes().next().ok_or(BoardError::Structure)?;
    let cells = Cells::of(root, "/")?;

    let (bootargs, initrd) = match child(root, "chosen") {
        Some(chosen) => (bootargs(chosen)?, initrd(chosen)?),
        None => ("", None),
    };
    Ok(BoardInfo {
        memory: memory(root, cells)?,
        cpus: cpus(root)?,
        bootargs,
        initrd,
        pl011_base: pl011(root, cells)?,
        // `gic` checks the interrupt specifier size `timer_intid` decodes.
        gic: gic(root, cells)?,
        timer_intid: timer_intid(root, VIRTUAL_TIMER, VIRT_TIMER_INTID)?,
        phys_timer_intid: timer_intid(root, PHYSICAL_TIMER, PHYS_TIMER_INTID)?,
        psci: psci(root)?,
    })
}

/// The `totalsize` of the DTB at `ptr`, from its header, or `None` if there is no
/// DTB magic there.
///
/// # Safety
/// `ptr` must be readable for 8 bytes (any alignment).
pub unsafe fn dtb_size(ptr: *const u8) -> Option<usize> {
    // SAFETY: the caller guarantees 8 readable bytes; `read_unaligned` needs no alignment.
    let head = unsafe { ptr.cast::<[u8; 8]>().read_unaligned() };
    total_size(&head)
}

// ---- Header and structure-block checks --------------------------------------------

const FDT_MAGIC: u32 = 0xd00d_feed;
/// Version 17 added `size_dt_struct`, which the checks rely on.
const MIN_VERSION: u32 = 17;
const HEADER_LEN: usize = 40;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;

/// Deeper than any real tree (QEMU's deepest is 6: /cpus/cpu-map/socket/cluster/core);
/// bounds the recursion in `fdt`'s node skipping.
const MAX_DEPTH: usize = 16;

/// Big-endian u32 at byte `offset`.
fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

/// The header's `totalsize` if `head` starts with the DTB magic.
fn total_size(head: &[u8]) -> Option<usize> {
    (be32(head, 0)? == FDT_MAGIC).then_some(be32(head, 4)? as usize)
}

/// The NUL-terminated UTF-8 string at `offset`, without its NUL.
fn cstr(bytes: &[u8], offset: usize) -> Option<&str> {
    let tail = bytes.get(offset..)?;
    let len = tail.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&tail[..len]).ok()
}

fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

/// `dtb` cut to `totalsize` if its header and structure block are well formed.
fn checked(dtb: &[u8]) -> Result<&[u8], BoardError> {
    let header = BoardError::Header;
    let size = total_size(dtb).ok_or(header)?;
    let dtb = dtb
        .get(..size)
        .filter(|d| d.len() >= HEADER_LEN)
        .ok_or(header)?;
    let field = |index: usize| be32(dtb, 4 * index).map(|v| v as usize).ok_or(header);
    let (off_struct, off_strings, version) = (field(2)?, field(3)?, field(5)?);
    let (size_strings, size_struct) = (field(8)?, field(9)?);
    if version < MIN_VERSION as usize || off_struct % 4 != 0 {
        return Err(header);
    }
    let block = |off: usize, len: usize| {
        let end = off.checked_add(len).ok_or(header)?;
        dtb.get(off..end)
            .filter(|_| off >= HEADER_LEN)
            .ok_or(header)
    };
    check_structure(
        block(off_struct, size_struct)?,
        block(off_strings, size_strings)?,
    )?;
    Ok(dtb)
}

/// Walks the structure block token by token: one root node with an empty name,
/// properties before child nodes, names and property values inside the block,
/// property names inside the strings block, depth at most `MAX_DEPTH`, then FDT_END.
fn check_structure(structs: &[u8], strings: &[u8]) -> Result<(), BoardError> {
    let bad = BoardError::Structure;
    let (mut pos, mut depth) = (0usize, 0usize);
    let (mut props_allowed, mut root_seen) = (false, false);
    loop {
        let token = be32(structs, pos).ok_or(bad)?;
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(structs, pos).ok_or(bad)?;
                let valid = match depth {
                    0 => name.is_empty() && !root_seen,
                    _ => !name.is_empty(),
                };
                if !valid {
                    return Err(bad);
                }
                root_seen = true;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad);
                }
                props_allowed = true;
                pos = align4(pos + name.len() + 1);
            }
            FDT_PROP if props_allowed => {
                let len = be32(structs, pos).ok_or(bad)? as usize;
                let name_offset = be32(structs, pos + 4).ok_or(bad)? as usize;
                let end = (pos + 8)
                    .checked_add(len)
                    .filter(|&e| e <= structs.len())
                    .ok_or(bad)?;
                cstr(strings, name_offset).ok_or(bad)?;
                pos = align4(end);
            }
            FDT_END_NODE if depth > 0 => {
                depth -= 1;
                // Back in the parent, which has had a child: no more properties.
                props_allowed = false;
            }
            FDT_END if depth == 0 && root_seen => return Ok(()),
            _ => return Err(bad),
        }
    }
}

// ---- Property decoding ------------------------------------------------------------

type Node<'b, 'a> = FdtNode<'b, 'a>;

fn prop<'a>(node: Node<'_, 'a>, name: &str) -> Option<&'a [u8]> {
    node.property(name).map(|p| p.value)
}

/// A string property: up to its first NUL, which must exist.
fn prop_str<'a>(node: Node<'_, 'a>, name: &str) -> Option<&'a str> {
    prop(node, name).and_then(|value| cstr(value, 0))
}

/// Whether a string-list property (`compatible`) holds `wanted`.
fn has_string(node: Node<'_, '_>, name: &str, wanted: &str) -> bool {
    prop(node, name).is_some_and(|v| v.split(|&b| b == 0).any(|s| s == wanted.as_bytes()))
}

/// A node's name without its `@unit-address`.
fn base_name<'a>(node: Node<'_, 'a>) -> &'a str {
    node.name.split('@').next().unwrap_or(node.name)
}

fn child<'b, 'a>(node: Node<'b, 'a>, name: &str) -> Option<Node<'b, 'a>> {
    node.children().find(|c| base_name(*c) == name)
}

/// `status` absent, "okay" or "ok".
fn enabled(node: Node<'_, '_>) -> bool {
    matches!(prop_str(node, "status"), None | Some("okay" | "ok"))
}

/// A big-endian number of one or two cells.
fn cells_value(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => be32(bytes, 0).map(u64::from),
        8 => Some(u64::from(be32(bytes, 0)?) << 32 | u64::from(be32(bytes, 4)?)),
        _ => None,
    }
}

/// The `#address-cells`/`#size-cells` a node sets for its children.
#[derive(Debug, Clone, Copy)]
struct Cells {
    address: usize,
    size: usize,
}

impl Cells {
    /// `node`'s cell counts (defaults 2 and 1, per the Devicetree spec); only counts
    /// whose values fit a u64 are accepted.
    fn of(node: Node<'_, '_>, name: &'static str) -> Result<Cells, BoardError> {
        let count = |property: &'static str, default: u32, allowed: RangeInclusive<u32>| {
            let value = match prop(node, property) {
                None => Some(default),
                Some(v) if v.len() == 4 => be32(v, 0),
                Some(_) => None,
            };
            value
                .filter(|n| allowed.contains(n))
                .map(|n| n as usize)
                .ok_or(BoardError::BadProperty {
                    node: name,
                    property,
                })
        };
        Ok(Cells {
            address: count("#address-cells", 2, 1..=2)?,
            size: count("#size-cells", 1, 0..=2)?,
        })
    }
}

/// The (address, size) pairs of `node`'s `reg`, decoded with its parent's `cells`.
fn reg<'a>(
    node: Node<'_, 'a>,
    cells: Cells,
    name: &'static str,
) -> Result<impl Iterator<Item = MemRegion> + 'a, BoardError> {
    let bad = BoardError::BadProperty {
        node: name,
        property: "reg",
    };
    let value = prop(node, "reg").ok_or(bad)?;
    let entry = 4 * (cells.address + cells.size);
    if value.is_empty() || value.len() % entry != 0 {
        return Err(bad);
    }
    let split = 4 * cells.address;
    Ok(value.chunks_exact(entry).map(move |e| MemRegion {
        // `Cells::of` allows 1-2 address and 0-2 size cells; no size decodes as 0.
        base: cells_value(&e[..split]).unwrap_or_default(),
        size: cells_value(&e[split..]).unwrap_or_default(),
    }))
}

/// The first `reg` entry's address.
fn reg_base(node: Node<'_, '_>, cells: Cells, name: &'static str) -> Result<u64, BoardError> {
    reg(node, cells, name)?
        .next()
        .map(|r| r.base)
        .ok_or(BoardError::BadProperty {
            node: name,
            property: "reg",
        })
}

// ---- The board's parts --------------------------------------------------------------

fn memory(
    root: Node<'_, '_>,
    cells: Cells,
) -> Result<Bounded<MemRegion, MAX_MEMORY_REGIONS>, BoardError> {
    let mut regions = Bounded::new();
    for node in root
        .children()
        .filter(|n| prop_str(*n, "device_type") == Some("memory"))
    {
        for region in reg(node, cells, "/memory")? {
            if region.base.checked_add(region.size).is_none() {
                return Err(BoardError::BadProperty {
                    node: "/memory",
                    property: "reg",
                });
            }
            regions.push(region, "memory regions")?;
        }
    }
    if regions.as_slice().is_empty() {
        return Err(BoardError::Missing("/memory"));
    }
    Ok(regions)
}

fn cpus(root: Node<'_, '_>) -> Result<Bounded<u64, MAX_CPUS>, BoardError> {
    let node = child(root, "cpus").ok_or(BoardError::Missing("/cpus"))?;
    let cells = Cells::of(node, "/cpus")?;
    let mut mpidrs = Bounded::new();
    // Skips /cpus/cpu-map, which describes topology, not CPUs.
    for cpu in node
        .children()
        .filter(|n| prop_str(*n, "device_type") == Some("cpu"))
    {
        for id in reg(cpu, cells, "/cpus/cpu")? {
            mpidrs.push(id.base, "CPUs")?;
        }
    }
    if mpidrs.as_slice().is_empty() {
        return Err(BoardError::Missing("/cpus/cpu"));
    }
    Ok(mpidrs)
}

fn bootargs<'a>(chosen: Node<'_, 'a>) -> Result<&'a str, BoardError> {
    match prop(chosen, "bootargs") {
        None => Ok(""),
        Some(_) => prop_str(chosen, "bootargs").ok_or(BoardError::BadProperty {
            node: "/chosen",
            property: "bootargs",
        }),
    }
}

fn initrd(chosen: Node<'_, '_>) -> Result<Option<MemRegion>, BoardError> {
    let bad = BoardError::BadProperty {
        node: "/chosen",
        property: "linux,initrd-start/end",
    };
    let number = |name| {
        prop(chosen, name)
            .map(|v| cells_value(v).ok_or(bad))
            .transpose()
    };
    match (number("linux,initrd-start")?, number("linux,initrd-end")?) {
        (None, None) => Ok(None),
        (Some(start), Some(end)) if end >= start => Ok(Some(MemRegion {
            base: start,
            size: end - start,
        })),
        _ => Err(bad),
    }
}

fn pl011(root: Node<'_, '_>, cells: Cells) -> Result<u64, BoardError> {
    // QEMU's Secure-world UART (secure=on) is marked disabled.
    let node = root
        .children()
        .find(|n| has_string(*n, "compatible", "arm,pl011") && enabled(*n))
        .ok_or(BoardError::Missing("arm,pl011 UART"))?;
    reg_base(node, cells, "arm,pl011")
}

const GICV2_COMPATIBLE: [&str; 2] = ["arm,cortex-a15-gic", "arm,gic-400"];
const GICV3_COMPATIBLE: &str = "arm,gic-v3";

/// Cells in a GIC interrupt specifier: type (SPI 0, PPI 1), number, flags.
const GIC_INTERRUPT_CELLS: usize = 3;

/// The GIC; its `#interrupt-cells` must be `GIC_INTERRUPT_CELLS`.
fn gic(root: Node<'_, '_>, cells: Cells) -> Result<GicInfo, BoardError> {
    let is_v2 = |n: Node<'_, '_>| {
        GICV2_COMPATIBLE
            .iter()
            .any(|c| has_string(n, "compatible", c))
    };
    let is_v3 = |n: Node<'_, '_>| has_string(n, "compatible", GICV3_COMPATIBLE);
    let node = root
        .children()
        .find(|n| is_v2(*n) || is_v3(*n))
        .ok_or(BoardError::Missing("GIC"))?;

    let bad_reg = BoardError::BadProperty {
        node: "GIC",
        property: "reg",
    };
    let mut frames = reg(node, cells, "GIC")?;
    // v2: GICD, GICC (then GICH, GICV). v3: GICD, the redistributor regions (then
    // GICC, GICH, GICV of the legacy interface).
    let dist = frames.next().ok_or(bad_reg)?;
    let second = frames.next().ok_or(bad_reg)?;
    let info = if is_v3(node) {
        GicInfo::V3 {
            dist_base: dist.base,
            redist_base: second.base,
            redist_size: second.size,
        }
    } else {
        GicInfo::V2 {
            dist_base: dist.base,
            cpu_base: second.base,
        }
    };

    if prop(node, "#interrupt-cells").and_then(cells_value) != Some(GIC_INTERRUPT_CELLS as u64) {
        return Err(BoardError::BadProperty {
            node: "GIC",
            property: "#interrupt-cells",
        });
    }
    Ok(info)
}

/// Index of the EL1 physical and virtual timers' specifiers in `/timer`'s interrupts.
const PHYSICAL_TIMER: usize = 1;
const VIRTUAL_TIMER: usize = 2;

/// A timer's INTID from the architected timer node (`which`: its specifier's index),
/// or `fallback` (QEMU virt's) if the DTB has no such node.
fn timer_intid(root: Node<'_, '_>, which: usize, fallback: u32) -> Result<u32, BoardError> {
    const PPI: u32 = 1;
    const PPI_BASE: u32 = 16;

    let Some(node) = root
        .children()
        .find(|n| has_string(*n, "compatible", "arm,armv8-timer"))
    else {
        return Ok(fallback);
    };
    let bad = BoardError::BadProperty {
        node: "/timer",
        property: "interrupts",
    };
    // Four GIC interrupt specifiers, (type, number, flags) each: Secure physical,
    // Non-secure physical, virtual, hypervisor.
    let spec = 4 * GIC_INTERRUPT_CELLS * which;
    let interrupts = prop(node, "interrupts").ok_or(bad)?;
    let kind = be32(interrupts, spec).ok_or(bad)?;
    let number = be32(interrupts, spec + 4).ok_or(bad)?;
    if kind != PPI || number >= 16 {
        return Err(bad);
    }
    Ok(PPI_BASE + number)
}

/// The PSCI conduit, if the DTB describes PSCI 0.2 or later (0.1 has other function IDs).
fn psci(root: Node<'_, '_>) -> Result<Option<Conduit>, BoardError> {
    let Some(node) = child(root, "psci") else {
        return Ok(None);
    };
    let modern = ["arm,psci-0.2", "arm,psci-1.0"]
        .iter()
        .any(|c| has_string(node, "compatible", c));
    if !modern {
        return Ok(None);
    }
    prop_str(node, "method")
        .and_then(Conduit::from_method)
        .map(Some)
        .ok_or(BoardError::BadProperty {
            node: "/psci",
            property: "method",
        })
}

// ---- Fixed-capacity storage -----------------------------------------------------------

/// Up to `N` items without a heap.
#[derive(Clone)]
struct Bounded<T, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Bounded<T, N> {
    fn new() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }

    fn push(&mut self, item: T, what: &'static str) -> Result<(), BoardError> {
        *self
            .items
            .get_mut(self.len)
            .ok_or(BoardError::TooMany(what))? = item;
        self.len += 1;
        Ok(())
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
}

impl<T: fmt::Debug + Copy + Default, const N: usize> fmt::Debug for Bounded<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be32_bounds() {
        assert_eq!(be32(&[0, 0, 1, 2], 0), Some(0x102));
        assert_eq!(be32(&[0, 0, 1], 0), None);
        assert_eq!(be32(&[0; 8], usize::MAX - 1), None);
    }

    #[test]
    fn cells_values() {
        assert_eq!(cells_value(&[0, 0, 0, 7]), Some(7));
        assert_eq!(cells_value(&[0, 0, 0, 1, 0, 0, 0, 2]), Some(0x1_0000_0002));
        assert_eq!(cells_value(&[0; 12]), None);
        assert_eq!(cells_value(&[]), None);
    }

    #[test]
    fn cstr_needs_nul_and_utf8() {
        assert_eq!(cstr(b"abc\0def", 0), Some("abc"));
        assert_eq!(cstr(b"abc\0def", 4), None);
        assert_eq!(cstr(b"\xff\0", 0), None);
        assert_eq!(cstr(b"a\0", 9), None);
    }

    #[test]
    fn bounded_refuses_overflow() {
        let mut b: Bounded<u64, 2> = Bounded::new();
        b.push(1, "things").unwrap();
        b.push(2, "things").unwrap();
        assert_eq!(b.push(3, "things"), Err(BoardError::TooMany("things")));
        assert_eq!(b.as_slice(), &[1, 2]);
    }

    #[test]
    fn structure_rules() {
        // Token helpers: a node "" (root) with a 4-byte property named strings[0].
        let strings = b"reg\0";
        let tok = |t: u32| t.to_be_bytes();
        let mut ok = Vec::new();
        ok.extend(tok(FDT_BEGIN_NODE));
        ok.extend([0; 4]); // empty root name, padded
        ok.extend(tok(FDT_PROP));
        ok.extend(4u32.to_be_bytes());
        ok.extend(0u32.to_be_bytes());
        ok.extend([1, 2, 3, 4]);
        ok.extend(tok(FDT_END_NODE));
        ok.extend(tok(FDT_END));
        assert_eq!(check_structure(&ok, strings), Ok(()));

        // Property name offset outside the strings block.
        let mut bad_name = ok.clone();
        bad_name[16..20].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            check_structure(&bad_name, strings),
            Err(BoardError::Structure)
        );

        // Property longer than the block.
        let mut long = ok.clone();
        long[12..16].copy_from_slice(&0x1000u32.to_be_bytes());
        assert_eq!(check_structure(&long, strings), Err(BoardError::Structure));

        // FDT_NOP is refused, even where the specification allows it.
        let mut nop = ok.clone();
        nop.splice(24..24, tok(4));
        assert_eq!(check_structure(&nop, strings), Err(BoardError::Structure));

        // Missing FDT_END.
        assert_eq!(
            check_structure(&ok[..ok.len() - 4], strings),
            Err(BoardError::Structure)
        );
    }

    #[test]
    fn structure_depth_is_bounded() {
        let mut deep = Vec::new();
        deep.extend(FDT_BEGIN_NODE.to_be_bytes());
        deep.extend([0; 4]);
        for _ in 0..MAX_DEPTH {
            deep.extend(FDT_BEGIN_NODE.to_be_bytes());
            deep.extend(*b"n\0\0\0");
        }
        for _ in 0..=MAX_DEPTH {
            deep.extend(FDT_END_NODE.to_be_bytes());
        }
        deep.extend(FDT_END.to_be_bytes());
        assert_eq!(check_structure(&deep, b""), Err(BoardError::Structure));
    }
}
