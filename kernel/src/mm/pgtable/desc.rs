//! Stage-1 translation table descriptors for the 4 KiB granule and 48-bit addresses.
//!
//! This is the only file that knows bit positions. Everything else reads and builds
//! descriptors through the getters and builders of [`Pte`] (one type for every level:
//! the level is needed to tell a table from a page, see [`Pte::kind`]).
//!
//! Layout (Arm ARM, "Translation table descriptor formats", VMSAv8-64, 4 KiB granule):
//!
//! | bits  | field | meaning here |
//! |-------|-------|--------------|
//! | 0     | valid | |
//! | 1     | type  | levels 0-2: 1 table, 0 block; level 3: 1 page (0 is reserved) |
//! | 4:2   | AttrIndx | index into MAIR_EL1, see [`MAIR_EL1`] |
//! | 7:6   | `AP[2:1]` | `AP[1]`: EL0 may access; `AP[2]`: read-only |
//! | 9:8   | SH    | inner shareable for every mapping |
//! | 10    | AF    | access flag ("young") |
//! | 11    | nG    | not global: the entry is tagged with the ASID |
//! | 47:12 | OA    | output address (next table, page or block) |
//! | 51    | DBM   | dirty bit modifier, used as the *logical write permission* |
//! | 52    | Contiguous | one of 16 entries forming a contiguous block |
//! | 53/54 | PXN/UXN | execute-never at EL1 / EL0 |
//! | 55    | software dirty (as Linux's PTE_DIRTY) |
//!
//! ## Dirty and write permission (the Linux arm64 convention)
//!
//! * *Logically writable* = DBM set ([`Pte::is_writable`]). The hardware may write
//!   only when `AP[2]` (read-only) is clear.
//! * A writable *clean* entry has DBM set and `AP[2]` set. With hardware dirty-state
//!   management (TCR_EL1.HD, FEAT_HAFDBS; Arm ARM "Hardware management of dirty state")
//!   the first write clears `AP[2]` atomically in the descriptor. Without it the write
//!   takes a permission fault and the fault handler calls [`Pte::mkdirty`], which sets
//!   the software dirty bit and clears `AP[2]`. The encoding is the same in both modes.
//! * hardware-dirty = DBM set and `AP[2]` clear; software-dirty = bit 55;
//!   [`Pte::is_dirty`] = either. Write-protecting a hardware-dirty entry moves the
//!   dirtiness into the software bit first, so it is never lost.
//! * Invariant kept by every builder: `AP[2]` clear implies DBM set.
//!
//! ## Access flag
//!
//! With hardware Access-flag management (TCR_EL1.HA; Arm ARM "Hardware management of
//! the Access flag") an access to an entry with AF clear sets AF; without it the access
//! takes an Access flag fault and the handler sets AF.

use core::fmt;

use crate::mm::addr::{PhysAddr, CONT_PTES, PAGE_SIZE};

/// A translation table level, 0 (root, 512 GiB per entry) to 3 (4 KiB pages).
pub type Level = usize;

/// The last level, whose entries map pages.
pub const LAST_LEVEL: Level = 3;

/// Bytes mapped by one entry at `level`.
pub const fn entry_size(level: Level) -> usize {
    assert!(level <= LAST_LEVEL);
    PAGE_SIZE << (9 * (LAST_LEVEL - level))
}

const VALID: u64 = 1 << 0;
const TYPE_TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDX_SHIFT: u32 = 2;
const ATTR_INDX: u64 = 0b111 << ATTR_INDX_SHIFT;
const AP_USER: u64 = 1 << 6;
const AP_RDONLY: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
const DBM: u64 = 1 << 51;
const CONT: u64 = 1 << 52;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const SW_DIRTY: u64 = 1 << 55;

/// Fields that may change on a live entry without break-before-make: permissions,
/// AF, dirty state and software bits (Arm ARM, "Using break-before-make when updating
/// translation table entries"). The Contiguous bit is not among them.
const NO_BBM_FIELDS: u64 = AP_USER | AP_RDONLY | AF | DBM | PXN | UXN | SW_DIRTY;

/// Fields that grant something when set (a TLB holding them set may allow more).
const GRANT_WHEN_SET: u64 = AF | AP_USER | DBM;
/// Fields that grant something when clear.
const GRANT_WHEN_CLEAR: u64 = AP_RDONLY | PXN | UXN;

/// MAIR_EL1 index of Normal memory, Inner/Outer Write-Back Read/Write-Allocate.
const MAIR_IDX_NORMAL: u64 = 0;
/// MAIR_EL1 index of Device-nGnRE memory.
const MAIR_IDX_DEVICE: u64 = 1;
/// The MAIR_EL1 value the descriptors of this module assume: Attr0 = 0xff (Normal
/// WB RW-allocate), Attr1 = 0x04 (Device-nGnRE). The kernel programs it at boot.
pub const MAIR_EL1: u64 = (0x04 << (8 * MAIR_IDX_DEVICE)) | (0xff << (8 * MAIR_IDX_NORMAL));

/// Memory type of a mapping (selects the MAIR_EL1 attribute index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal, write-back cacheable memory.
    Normal,
    /// Device-nGnRE memory (MMIO).
    Device,
}

/// Access permissions of a mapping. Every mapping is readable by EL1; a PROT_NONE
/// range stays mapped (its contents survive) with `user` clear, so EL0 cannot reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prot {
    pub write: bool,
    pub exec: bool,
    /// Accessible from EL0. A user page is never executable at EL1.
    pub user: bool,
}

impl Prot {
    /// A user mapping with the given write and execute permissions.
    pub const fn user(write: bool, exec: bool) -> Self {
        Prot {
            write,
            exec,
            user: true,
        }
    }

    fn bits(self) -> u64 {
        let user = if self.user { AP_USER } else { 0 };
        let write = if self.write { DBM } else { 0 };
        let never_exec = match (self.exec, self.user) {
            (false, _) => PXN | UXN,
            (true, true) => PXN,
            (true, false) => UXN,
        };
        AP_RDONLY | user | write | never_exec
    }
}

/// Everything a caller says about a new mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteAttrs {
    pub prot: Prot,
    pub mem: MemType,
}

/// Permissions of a kernel (TTBR1) mapping: global (no ASID), never accessible from EL0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelProt {
    /// Read and execute: kernel text.
    Text,
    /// Read only, never executable: rodata.
    ReadOnly,
    /// Read and write, never executable: data, stacks, the linear map.
    ReadWrite,
    /// Device-nGnRE MMIO, never executable.
    Device,
}

/// What a descriptor is, given its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Faults (invalid, or a reserved encoding).
    Invalid,
    /// Points to the next-level table.
    Table(PhysAddr),
    /// Maps a 1 GiB (level 1) or 2 MiB (level 2) block.
    Block,
    /// Maps a 4 KiB page (level 3).
    Page,
}

/// One stage-1 descriptor of any level.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct Pte(u64);

impl Pte {
    /// The invalid (empty) descriptor.
    pub const INVALID: Pte = Pte(0);

    /// Reinterprets a raw descriptor.
    pub const fn from_raw(raw: u64) -> Self {
        Pte(raw)
    }

    /// The raw descriptor.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// A table descriptor pointing to the next-level table at `next`.
    pub fn table(next: PhysAddr) -> Self {
        assert!(
            next.is_aligned(PAGE_SIZE),
            "table address {next:?} not page aligned"
        );
        Pte(next.as_u64() | TYPE_TABLE_OR_PAGE | VALID)
    }

    /// A level-3 page descriptor: young, clean, not contiguous, ASID-tagged (nG).
    pub fn page(pa: PhysAddr, attrs: PteAttrs) -> Self {
        Self::leaf(pa, entry_size(LAST_LEVEL), attrs).with_type_bit()
    }

    /// A level-1 or level-2 block descriptor, like [`Pte::page`].
    pub fn block(pa: PhysAddr, level: Level, attrs: PteAttrs) -> Self {
        assert!(
            level == 1 || level == 2,
            "blocks exist at levels 1 and 2 only"
        );
        Self::leaf(pa, entry_size(level), attrs)
    }

    fn leaf(pa: PhysAddr, size: usize, attrs: PteAttrs) -> Self {
        assert!(
            pa.is_aligned(size),
            "output address {pa:?} not aligned to {size:#x}"
        );
        let indx = match attrs.mem {
            MemType::Normal => MAIR_IDX_NORMAL,
            MemType::Device => MAIR_IDX_DEVICE,
        };
        Pte(pa.as_u64()
            | (indx << ATTR_INDX_SHIFT)
            | SH_INNER
            | AF
            | NG
            | attrs.prot.bits()
            | VALID)
    }

    /// A leaf of the static kernel map at `level` (page at 3, block at 1 or 2): young,
    /// global, hardware-writable or read-only as `prot` says (no DBM: never dirty-tracked).
    pub fn kernel(pa: PhysAddr, level: Level, prot: KernelProt) -> Self {
        let size = entry_size(level);
        assert!(
            pa.is_aligned(size),
            "output address {pa:?} not aligned to {size:#x}"
        );
        let (indx, perm) = match prot {
            KernelProt::Text => (MAIR_IDX_NORMAL, AP_RDONLY | UXN),
            KernelProt::ReadOnly => (MAIR_IDX_NORMAL, AP_RDONLY | PXN | UXN),
            KernelProt::ReadWrite => (MAIR_IDX_NORMAL, PXN | UXN),
            KernelProt::Device => (MAIR_IDX_DEVICE, PXN | UXN),
        };
        let pte = Pte(pa.as_u64() | (indx << ATTR_INDX_SHIFT) | SH_INNER | AF | perm | VALID);
        if level == LAST_LEVEL {
            pte.with_type_bit()
        } else {
            pte
        }
    }

    fn with_type_bit(self) -> Self {
        Pte(self.0 | TYPE_TABLE_OR_PAGE)
    }

    /// Decodes the descriptor as found at `level`.
    pub fn kind(self, level: Level) -> Kind {
        let table_or_page = self.0 & TYPE_TABLE_OR_PAGE != 0;
        match (self.is_valid(), level, table_or_page) {
            (false, _, _) => Kind::Invalid,
            (true, LAST_LEVEL, true) => Kind::Page,
            (true, LAST_LEVEL, false) | (true, 0, false) => Kind::Invalid,
            (true, _, true) => Kind::Table(self.output_addr()),
            (true, _, false) => Kind::Block,
        }
    }

    /// Whether the descriptor maps memory (page or block) at `level`.
    pub fn is_leaf(self, level: Level) -> bool {
        matches!(self.kind(level), Kind::Page | Kind::Block)
    }

    pub const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// Output address: next table, page, or block base.
    pub const fn output_addr(self) -> PhysAddr {
        PhysAddr(self.0 & OA_MASK)
    }

    /// Access flag.
    pub const fn is_young(self) -> bool {
        self.0 & AF != 0
    }

    /// Logically writable (DBM set); see the module docs.
    pub const fn is_writable(self) -> bool {
        self.0 & DBM != 0
    }

    /// The hardware may write now (`AP[2]` clear).
    pub const fn is_hw_writable(self) -> bool {
        self.0 & AP_RDONLY == 0
    }

    /// Dirtied by the hardware: DBM set and `AP[2]` clear.
    pub const fn is_hw_dirty(self) -> bool {
        self.is_writable() && self.is_hw_writable()
    }

    /// Dirty in the software bit.
    pub const fn is_sw_dirty(self) -> bool {
        self.0 & SW_DIRTY != 0
    }

    /// Dirty by either bookkeeping.
    pub const fn is_dirty(self) -> bool {
        self.is_sw_dirty() || self.is_hw_dirty()
    }

    /// Contiguous bit.
    pub const fn is_cont(self) -> bool {
        self.0 & CONT != 0
    }

    /// Accessible from EL0 (`AP[1]`).
    pub const fn is_user(self) -> bool {
        self.0 & AP_USER != 0
    }

    /// Execute-never at EL0.
    pub const fn is_uxn(self) -> bool {
        self.0 & UXN != 0
    }

    /// Execute-never at EL1.
    pub const fn is_pxn(self) -> bool {
        self.0 & PXN != 0
    }

    /// The permissions a caller would have asked for to get this entry.
    pub fn prot(self) -> Prot {
        let user = self.is_user();
        let exec = if user { !self.is_uxn() } else { !self.is_pxn() };
        Prot {
            write: self.is_writable(),
            exec,
            user,
        }
    }

    /// The memory type, from AttrIndx.
    pub fn mem_type(self) -> MemType {
        if (self.0 & ATTR_INDX) >> ATTR_INDX_SHIFT == MAIR_IDX_DEVICE {
            MemType::Device
        } else {
            MemType::Normal
        }
    }

    /// Sets the access flag.
    #[must_use]
    pub const fn mkyoung(self) -> Self {
        Pte(self.0 | AF)
    }

    /// Clears the access flag.
    #[must_use]
    pub const fn mkold(self) -> Self {
        Pte(self.0 & !AF)
    }

    /// Marks dirty: software bit, and `AP[2]` cleared if logically writable.
    #[must_use]
    pub const fn mkdirty(self) -> Self {
        let p = self.0 | SW_DIRTY;
        Pte(if p & DBM != 0 { p & !AP_RDONLY } else { p })
    }

    /// Marks clean: clears the software bit and sets `AP[2]`, so that the next write
    /// faults or is recorded by the hardware.
    #[must_use]
    pub const fn mkclean(self) -> Self {
        Pte((self.0 & !SW_DIRTY) | AP_RDONLY)
    }

    /// Makes logically writable; hardware-writable at once if already dirty.
    #[must_use]
    pub const fn mkwrite(self) -> Self {
        let p = self.0 | DBM;
        Pte(if p & SW_DIRTY != 0 { p & !AP_RDONLY } else { p })
    }

    /// Removes write permission, keeping a hardware-dirty state in the software bit.
    #[must_use]
    pub const fn wrprotect(self) -> Self {
        let p = if self.is_hw_dirty() {
            self.0 | SW_DIRTY
        } else {
            self.0
        };
        Pte((p & !DBM) | AP_RDONLY)
    }

    /// Replaces the permissions, keeping AF and the dirty state.
    #[must_use]
    pub fn with_prot(self, prot: Prot) -> Self {
        let p = if self.is_hw_dirty() {
            self.0 | SW_DIRTY
        } else {
            self.0
        };
        let p = (p & !(AP_USER | AP_RDONLY | DBM | PXN | UXN)) | prot.bits();
        Pte(p).with_dirty_applied()
    }

    /// Re-establishes "dirty and writable means hardware-writable".
    const fn with_dirty_applied(self) -> Self {
        if self.is_sw_dirty() {
            self.mkdirty()
        } else {
            self
        }
    }

    /// What the hardware does on a write to a writable-clean entry with dirty-state
    /// management on: clears `AP[2]` only.
    #[cfg(any(test, feature = "model"))]
    #[must_use]
    pub(crate) const fn hw_mkdirty(self) -> Self {
        assert!(self.is_writable());
        Pte(self.0 & !AP_RDONLY)
    }

    /// Sets or clears the Contiguous bit.
    #[must_use]
    pub const fn with_cont(self, cont: bool) -> Self {
        Pte(if cont { self.0 | CONT } else { self.0 & !CONT })
    }

    /// The same attributes with another output address.
    #[must_use]
    pub fn with_output_addr(self, pa: PhysAddr) -> Self {
        assert!(pa.is_aligned(PAGE_SIZE));
        Pte((self.0 & !OA_MASK) | pa.as_u64())
    }

    /// The level-3 page descriptor at `pa` with this block's attributes.
    #[must_use]
    pub fn block_to_page(self, pa: PhysAddr) -> Self {
        self.with_output_addr(pa).with_type_bit()
    }

    /// Folds in the AF and dirty state gathered from other entries (never clears).
    #[must_use]
    pub const fn with_gathered(self, young: bool, dirty: bool) -> Self {
        let p = if young { self.mkyoung() } else { self };
        if dirty {
            p.mkdirty()
        } else {
            p
        }
    }

    /// The attributes that must be equal across a contiguous block: all but the
    /// output address, AF and the dirty state (software bit, and `AP[2]` where DBM
    /// says it is a dirty bit).
    pub(crate) const fn cont_attrs(self) -> u64 {
        let dirty_bits = if self.is_writable() {
            SW_DIRTY | AP_RDONLY
        } else {
            SW_DIRTY
        };
        self.0 & !(OA_MASK | AF | dirty_bits)
    }

    /// A TLB still holding `old` could grant something `new` does not (an access,
    /// a write, EL0 access, execution, or skipping an AF update): the change needs a
    /// TLBI before it may be relied on. Changes the other way need one too when they
    /// relax a permission ([`Pte::relaxes_permission`]), not when they only set AF.
    pub(crate) const fn restricts(old: Pte, new: Pte) -> bool {
        old.grants() & !new.grants() != 0
    }

    /// The granting fields, each as a bit that is set when it grants.
    const fn grants(self) -> u64 {
        (self.0 & GRANT_WHEN_SET) | (!self.0 & GRANT_WHEN_CLEAR)
    }

    /// A TLB still holding `old` could refuse, with a Permission fault, an access that
    /// `new` allows: a write (`AP[2]` cleared; or DBM set when the hardware manages
    /// dirty state, `hw_dirty`, since a write through DBM then succeeds), EL0 access or
    /// execution. The architecture lets a TLB cache an entry that generates a
    /// Permission fault (Arm ARM D8.16, R_SQBCS: only entries that generate a
    /// Translation, Address size or Access flag fault are never cached, R_XCLRD), so
    /// the faulting CPU may keep hitting the stale entry: such a change needs a TLBI
    /// too, as Linux's `__ptep_set_access_flags` does. Setting AF alone needs none
    /// (an entry with AF = 0 was never cached).
    pub(crate) const fn relaxes_permission(old: Pte, new: Pte, hw_dirty: bool) -> bool {
        old.is_valid() && new.is_valid() && new.permits(hw_dirty) & !old.permits(hw_dirty) != 0
    }

    /// What the hardware allows through the entry, as bits: write, EL0, EL0 and EL1
    /// execution (the access flag aside).
    const fn permits(self, hw_dirty: bool) -> u64 {
        let write = self.is_hw_writable() || (hw_dirty && self.is_writable());
        (if write { AP_RDONLY } else { 0 }) | (self.0 & AP_USER) | (!self.0 & (PXN | UXN))
    }

    /// Whether replacing `old` by `new` in place needs a TLBI before the operation
    /// ends: it restricts ([`Pte::restricts`]) or relaxes a permission
    /// ([`Pte::relaxes_permission`]).
    pub(crate) const fn needs_tlbi(old: Pte, new: Pte, hw_dirty: bool) -> bool {
        Pte::restricts(old, new) || Pte::relaxes_permission(old, new, hw_dirty)
    }

    /// How replacing live `old` by valid `new` relates to break-before-make.
    pub(crate) const fn bbm_change(old: Pte, new: Pte) -> BbmChange {
        let diff = (old.0 ^ new.0) & !NO_BBM_FIELDS;
        if diff == 0 {
            BbmChange::None
        } else if diff == CONT {
            BbmChange::ContOnly
        } else {
            BbmChange::Required
        }
    }
}

/// See [`Pte::bbm_change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BbmChange {
    /// Only permissions, AF, dirty or software bits differ: no BBM needed.
    None,
    /// Only the Contiguous bit differs: BBM needed unless the CPU has BBM level 2.
    ContOnly,
    /// Output address, memory attributes, shareability, nG or type differ.
    Required,
}

/// Why 16 entries are not a well-formed contiguous block.
///
/// The rule (Arm ARM, "The Contiguous bit"): when any of 16 aligned entries has the
/// Contiguous bit, all 16 must be valid leaf entries with it, map consecutive output
/// addresses from a base aligned to the block size, and have identical attributes,
/// except that AF and dirty state may differ. Anything else may give any of the entries
/// on a TLB hit, or a TLB conflict abort.
pub(crate) fn cont_block_violation(entries: &[Pte], level: Level) -> Option<&'static str> {
    if !entries.iter().any(|e| e.is_cont()) {
        return None;
    }
    let size = entry_size(level) as u64;
    let base = entries[0].output_addr();
    if !entries.iter().all(|e| e.is_leaf(level) && e.is_cont()) {
        Some("not all 16 entries are valid with the Contiguous bit")
    } else if !base.is_aligned(entries.len() * size as usize) {
        Some("output address not aligned to the block size")
    } else if !entries
        .iter()
        .zip(0..)
        .all(|(e, i)| e.output_addr().as_u64() == base.as_u64() + i * size)
    {
        Some("output addresses not consecutive")
    } else if !entries
        .iter()
        .all(|e| e.cont_attrs() == entries[0].cont_attrs())
    {
        Some("attributes differ (ignoring AF and dirty)")
    } else {
        None
    }
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_valid() {
            return write!(f, "Pte({:#x} invalid)", self.0);
        }
        let flag = |on: bool, name: &'static str| if on { name } else { "" };
        write!(
            f,
            "Pte({:#x} oa={:#x}{}{}{}{}{}{}{}{}{} attr={})",
            self.0,
            self.output_addr().as_u64(),
            flag(self.is_cont(), " CONT"),
            flag(self.is_young(), " AF"),
            flag(self.is_writable(), " DBM"),
            flag(!self.is_hw_writable(), " RDONLY"),
            flag(self.is_sw_dirty(), " SWDIRTY"),
            flag(self.is_user(), " USER"),
            flag(self.is_uxn(), " UXN"),
            flag(self.is_pxn(), " PXN"),
            flag(self.0 & NG != 0, " nG"),
            (self.0 & ATTR_INDX) >> ATTR_INDX_SHIFT,
        )
    }
}

/// A change applied entry by entry by the batched operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// mprotect: new permissions, AF and dirty kept.
    Protect(Prot),
    /// fork: write-protect, dirty kept.
    Wrprotect,
    /// lazyfree: clear AF and dirty.
    MkoldClean,
    /// CoW reuse: writable and dirty.
    MkwriteDirty,
    /// reclaim aging: clear AF.
    Mkold,
    /// access-flag fault: set AF.
    Mkyoung,
    /// write fault on a writable-clean entry: set AF and dirty.
    MkyoungDirty,
}

impl Change {
    /// Inlined: the batched loops then apply a change known outside the loop.
    #[inline]
    pub(crate) fn apply(self, pte: Pte) -> Pte {
        match self {
            Change::Protect(prot) => pte.with_prot(prot),
            Change::Wrprotect => pte.wrprotect(),
            Change::MkoldClean => pte.mkold().mkclean(),
            Change::MkwriteDirty => pte.mkwrite().mkdirty(),
            Change::Mkold => pte.mkold(),
            Change::Mkyoung => pte.mkyoung(),
            Change::MkyoungDirty => pte.mkyoung().mkdirty(),
        }
    }
}

/// Entry `i` of a block as a read of one entry sees it: with AF and dirty gathered over
/// the block if it is contiguous.
pub(crate) fn view(entries: &[Pte; CONT_PTES], i: usize) -> Pte {
    if !entries[i].is_cont() {
        return entries[i];
    }
    let young = entries.iter().any(|e| e.is_young());
    let dirty = entries.iter().any(|e| e.is_dirty());
    entries[i].with_gathered(young, dirty)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: PteAttrs = PteAttrs {
        prot: Prot::user(true, false),
        mem: MemType::Normal,
    };
    const RO: PteAttrs = PteAttrs {
        prot: Prot::user(false, false),
        mem: MemType::Normal,
    };
    const PA: PhysAddr = PhysAddr(0x4001_0000);

    #[test]
    fn new_page_is_young_clean_writable_but_hw_read_only() {
        let p = Pte::page(PA, RW);
        assert_eq!(p.kind(3), Kind::Page);
        assert!(p.is_young() && p.is_writable() && !p.is_hw_writable() && !p.is_dirty());
        assert_eq!(p.prot(), RW.prot);
        assert_eq!(p.output_addr(), PA);
        assert!(p.is_user() && p.is_uxn() && p.is_pxn());
    }

    #[test]
    fn dirty_semantics_follow_linux_arm64() {
        let clean = Pte::page(PA, RW);
        let dirty = clean.mkdirty();
        assert!(dirty.is_sw_dirty() && dirty.is_hw_dirty() && dirty.is_hw_writable());
        // Hardware dirtying clears `AP[2]` only.
        let hw = Pte::from_raw(clean.raw() & !AP_RDONLY);
        assert!(hw.is_hw_dirty() && !hw.is_sw_dirty() && hw.is_dirty());
        // Write-protect keeps hardware dirtiness in the software bit.
        let wp = hw.wrprotect();
        assert!(wp.is_dirty() && wp.is_sw_dirty() && !wp.is_writable() && !wp.is_hw_writable());
        // Making it writable again makes it hardware-writable at once (still dirty).
        assert!(wp.mkwrite().is_hw_writable());
        // Cleaning makes the next write observable.
        let c = dirty.mkclean();
        assert!(!c.is_dirty() && c.is_writable() && !c.is_hw_writable());
        // A read-only entry never becomes hardware-writable by mkdirty.
        assert!(!wp.mkclean().mkdirty().is_hw_writable());
    }

    #[test]
    fn protect_keeps_af_and_dirty() {
        let hw_dirty = Pte::from_raw(Pte::page(PA, RW).raw() & !AP_RDONLY);
        let ro = hw_dirty.with_prot(Prot::user(false, true));
        assert!(ro.is_dirty() && !ro.is_hw_writable() && ro.is_young() && !ro.is_uxn());
        let rw = ro.with_prot(Prot::user(true, false));
        assert!(rw.is_dirty() && rw.is_hw_writable());
    }

    #[test]
    fn restriction_and_bbm_classification() {
        let p = Pte::page(PA, RW).mkdirty();
        assert!(Pte::restricts(p, p.wrprotect()));
        assert!(Pte::restricts(p, p.mkold()));
        assert!(!Pte::restricts(p.mkold(), p));
        assert!(!Pte::restricts(p, p.with_cont(true)));
        // Relaxing a permission: making a read-only entry writable needs a TLBI (the
        // stale read-only entry may be cached); setting AF or dirtying an entry the
        // hardware could already write (DBM with hardware dirty state) does not.
        let ro = Pte::page(PA, RW).wrprotect();
        assert!(Pte::relaxes_permission(ro, ro.mkwrite().mkdirty(), false));
        assert!(Pte::relaxes_permission(ro, ro.mkwrite().mkdirty(), true));
        let clean = Pte::page(PA, RW);
        assert!(Pte::relaxes_permission(clean, clean.mkdirty(), false));
        assert!(!Pte::relaxes_permission(clean, clean.mkdirty(), true));
        assert!(!Pte::relaxes_permission(ro, ro.mkwrite(), false));
        assert!(Pte::relaxes_permission(ro, ro.mkwrite(), true));
        assert!(!Pte::needs_tlbi(p.mkold(), p, false), "setting AF is free");
        assert!(!Pte::needs_tlbi(clean.mkold(), clean.mkyoung(), true));
        let nx = Pte::page(PA, RO);
        assert!(Pte::relaxes_permission(
            nx,
            nx.with_prot(Prot::user(false, true)),
            false
        ));
        assert!(
            !Pte::relaxes_permission(Pte::INVALID, clean, false),
            "a new mapping"
        );
        assert_eq!(Pte::bbm_change(p, p.wrprotect()), BbmChange::None);
        assert_eq!(Pte::bbm_change(p, p.with_cont(true)), BbmChange::ContOnly);
        assert_eq!(
            Pte::bbm_change(p, p.with_output_addr(PhysAddr(0x5000))),
            BbmChange::Required
        );
        let dev = Pte::page(
            PA,
            PteAttrs {
                mem: MemType::Device,
                ..RW
            },
        );
        assert_eq!(dev.mem_type(), MemType::Device);
        assert_eq!(Pte::bbm_change(p, dev), BbmChange::Required);
    }

    #[test]
    fn kinds_per_level() {
        let t = Pte::table(PhysAddr(0x8000_0000));
        assert_eq!(t.kind(0), Kind::Table(PhysAddr(0x8000_0000)));
        assert_eq!(t.kind(3), Kind::Page);
        let b = Pte::block(PhysAddr(0x4020_0000), 2, RW);
        assert_eq!(b.kind(2), Kind::Block);
        assert_eq!(b.kind(0), Kind::Invalid);
        assert_eq!(b.kind(3), Kind::Invalid);
        assert_eq!(Pte::INVALID.kind(1), Kind::Invalid);
        assert_eq!(b.block_to_page(PhysAddr(0x4020_1000)).kind(3), Kind::Page);
    }

    #[test]
    fn cont_block_rules() {
        let block = |f: &dyn Fn(usize, Pte) -> Pte| -> [Pte; 16] {
            core::array::from_fn(|i| f(i, Pte::page(PA.add(i * PAGE_SIZE), RW).with_cont(true)))
        };
        assert_eq!(cont_block_violation(&block(&|_, p| p), 3), None);
        // AF and dirty may differ.
        assert_eq!(
            cont_block_violation(
                &block(&|i, p| if i == 3 { p.mkold().mkdirty() } else { p }),
                3
            ),
            None
        );
        type Mutation<'a> = (&'a dyn Fn(usize, Pte) -> Pte, &'a str);
        let cases: [Mutation; 4] = [
            (
                &|i, p| if i == 5 { p.with_cont(false) } else { p },
                "not all 16",
            ),
            (
                &|i, p| if i == 5 { p.wrprotect() } else { p },
                "attributes differ",
            ),
            (
                &|i, p| if i == 5 { p.with_output_addr(PA) } else { p },
                "not consecutive",
            ),
            (
                &|i, p| p.with_output_addr(PA.add((i + 1) * PAGE_SIZE)),
                "not aligned",
            ),
        ];
        for (f, want) in cases {
            let got = cont_block_violation(&block(f), 3).unwrap();
            assert!(got.contains(want), "{got} vs {want}");
        }
    }
}
