//! The page-table layer on the real machine: `KernelPt` implements `pgtable::PtEnv` with
//! tables reached through the linear map, table frames from the frame allocator, folio
//! boundaries from the frame metadata, broadcast ASID-tagged TLBIs, the features read
//! at boot and one static set of counters. The boot options that steer the layer:
//!
//! - `contpte=on|off|naive` (default on): see `pgtable::ContMode`;
//! - `bbml2=on|off` (default off): skip the TLBI inside a convert where the CPU has
//!   BBM level 2; ignored, with a warning, on CPUs that do not;
//! - `ptcheck=on|off`: the page-table checker, on by default in the test build;
//! - `asid_bits=8|16` (default: the CPU's): use only 8-bit ASIDs on a 16-bit CPU, so
//!   that 255 live processes exhaust them and the shared ASID (`mm::asid`) is used;
//! - `ptcheck_exclusive=on|off` (default: as `ptcheck`): with the checker on, also
//!   check after every operation that each writable or DBM user entry in its range
//!   maps a page whose frame metadata says `ANON_EXCLUSIVE` (`PtEnv::anon_exclusive`).
//!   The contract mm keeps for it (`mm/aspace.rs`, "who may write a page"): mark every
//!   page exclusive (`Locked::set_exclusive`) *before* any operation that leaves a
//!   writable or DBM entry over it (`map`/`map_pmd` with write permission,
//!   `make_writable`, `protect` to writable, the dirty `write_fault`), and clear the
//!   flag (fork's sharing) only for pages whose entries are already write-protected,
//!   never raising write permission over a page that is not exclusive; for a 2 MiB
//!   block the first page's flag stands for the block.
//!
//! Pages are zeroed (new folios, new tables) with `DC ZVA` at the block size
//! DCZID_EL0.BS gives, read at boot, and with ordinary stores where DCZID_EL0.DZP
//! prohibits it (Arm ARM D7.4.9 "DC ZVA"). DC ZVA counts as a store to every byte of
//! its block for ordering, so the barriers that publish a page after plain stores
//! publish it after DC ZVA too (Linux's `clear_page` relies on the same).

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::asid::AsidAllocator;
use super::env::MmEnv;
use super::frame;
use super::pgtable::{
    AddressSpace, Asid, ContMode, Counters, Features, FolioSpan, MapError, PtEnv, TableEntries, Tlb,
};
use super::{phys_to_virt, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::arch::aarch64::features::CpuFeatures;
use crate::arch::aarch64::regs::read_sysreg;
use crate::arch::aarch64::tlb;
use crate::cmdline::CmdLine;

/// The machine as the page-table layer sees it (zero-sized: everything is global).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelPt;

/// TLB maintenance with real instructions, broadcast to the Inner Shareable domain.
pub struct KernelTlb;

#[derive(Clone, Copy, Debug)]
pub struct PtConfig {
    pub mode: ContMode,
    pub features: Features,
    pub check: bool,
}

static CONFIG: spin::Once<PtConfig> = spin::Once::new();
static COUNTERS: Counters = Counters::new();
static ASIDS: spin::Once<AsidAllocator> = spin::Once::new();
/// Bytes one `DC ZVA` zeroes, 0 where it is prohibited (DCZID_EL0, read at boot).
static ZVA_BLOCK: AtomicUsize = AtomicUsize::new(0);

/// `ptcheck_exclusive=`: whether the kernel env answers `PtEnv::anon_exclusive`.
static CHECK_EXCLUSIVE: AtomicBool = AtomicBool::new(false);

/// Switches the anon-exclusive check on or off (boot option, tests); returns the old
/// setting.
pub fn set_check_exclusive(on: bool) -> bool {
    CHECK_EXCLUSIVE.swap(on, Ordering::AcqRel)
}

/// Read the boot options (boot CPU, once). Bad values are reported and the default kept.
pub fn configure(cmd: &CmdLine<'_>, cpu: &CpuFeatures) -> &'static PtConfig {
    let mode = match cmd.get("contpte") {
        None | Some("on") => ContMode::On,
        Some("off") => ContMode::Off,
        Some("naive") => ContMode::Naive,
        Some(bad) => {
            log::warn!("contpte={bad} unknown (on, off, naive): using on");
            ContMode::On
        }
    };
    let bbml2 = cmd.switch("bbml2", false).unwrap_or_else(|bad| {
        log::warn!("bbml2={bad} unknown (on, off): using off");
        false
    });
    if bbml2 && cpu.bbm_level < 2 {
        log::warn!("bbml2=on ignored: the CPU has BBM level {}", cpu.bbm_level);
    }
    let check = cmd
        .switch("ptcheck", cfg!(feature = "ktest"))
        .unwrap_or_else(|bad| {
            log::warn!("ptcheck={bad} unknown (on, off): using the build's default");
            cfg!(feature = "ktest")
        });
    let exclusive = cmd
        .switch("ptcheck_exclusive", check)
        .unwrap_or_else(|bad| {
            log::warn!("ptcheck_exclusive={bad} unknown (on, off): using the checker's setting");
            check
        });
    set_check_exclusive(exclusive);
    let features = Features {
        hw_af: cpu.hw_access_flag(),
        hw_dirty: cpu.hw_dirty(),
        range_tlbi: cpu.tlbi_range,
        bbml2: bbml2 && cpu.bbm_level >= 2,
    };
    let asid_bits = match cmd.get("asid_bits") {
        None | Some("16") => cpu.asid_bits,
        Some("8") => 8,
        Some(bad) => {
            log::warn!("asid_bits={bad} unknown (8, 16): using the CPU's");
            cpu.asid_bits
        }
    };
    if asid_bits != cpu.asid_bits {
        log::info!("ASIDs: {asid_bits} bits of the CPU's {}", cpu.asid_bits);
    }
    ASIDS.call_once(|| AsidAllocator::new(asid_bits));
    ZVA_BLOCK.store(zva_block(read_sysreg!(dczid_el0)), Ordering::Relaxed);
    CONFIG.call_once(|| PtConfig {
        mode,
        features,
        check,
    })
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

pub fn config() -> &'static PtConfig {
    CONFIG.get().expect("page-table options read at boot")
}

/// The layer's counters: folds, unfolds, converts, TLBIs by kind, entries written.
pub fn counters() -> &'static Counters {
    &COUNTERS
}

impl Tlb for KernelTlb {
    fn page(&self, asid: Asid, va: VirtAddr, last_level: bool) {
        if last_level {
            tlb::vale1is(asid, va.as_u64());
        } else {
            tlb::vae1is(asid, va.as_u64());
        }
    }

    fn range(&self, asid: Asid, va: VirtAddr, pages: usize) {
        tlb::rvale1is(asid, va.as_u64(), pages as u64);
    }

    fn asid(&self, asid: Asid) {
        tlb::aside1is(asid);
    }

    fn all(&self) {
        tlb::vmalle1is();
    }

    fn dsb(&self) {
        tlb::dsb_ish();
    }
}

impl PtEnv for KernelPt {
    type Tlb = KernelTlb;

    fn table(&self, pa: PhysAddr) -> &TableEntries {
        // SAFETY: the layer passes only tables it allocated and has not freed; they
        // are 4 KiB frames of RAM, mapped by the linear map, and only ever accessed
        // atomically.
        unsafe { &*phys_to_virt(pa).as_ptr::<TableEntries>() }
    }

    fn alloc_table(&self) -> Option<PhysAddr> {
        let pa = frame::frames().alloc(0)?;
        // SAFETY: a frame just allocated to us, RAM in the linear map.
        unsafe { zero(pa, 1) };
        Some(pa)
    }

    fn free_table(&self, pa: PhysAddr) {
        frame::frames().free(pa, 0);
    }

    fn folio_of(&self, pa: PhysAddr) -> FolioSpan {
        super::folio::span_of(pa)
    }

    fn tracks_anon_exclusive(&self) -> bool {
        CHECK_EXCLUSIVE.load(Ordering::Acquire)
    }

    /// Whether the page is anon-exclusive (`folio::anon_exclusive`: the folio's
    /// override or the frame's `ANON_EXCLUSIVE` flag), for pages of anonymous folios;
    /// `None` for anything else (frames the page-table tests and benchmarks map
    /// directly), or with the check switched off.
    fn anon_exclusive(&self, pa: PhysAddr) -> Option<bool> {
        super::folio::anon_exclusive(pa).filter(|_| self.tracks_anon_exclusive())
    }

    fn pinned_shared(&self, pa: PhysAddr, n: usize) -> Option<PhysAddr> {
        if !self.tracks_anon_exclusive() {
            return None;
        }
        super::folio::pinned_shared(pa, n)
    }

    fn tlb(&self) -> &KernelTlb {
        &KernelTlb
    }

    fn features(&self) -> Features {
        config().features
    }

    fn counters(&self) -> &Counters {
        &COUNTERS
    }

    fn cpu(&self) -> usize {
        crate::percpu::this_cpu().index
    }
}

/// Install user address space `ttbr0` (root and ASID, 0 for none) on this CPU; a
/// shared ASID (`mm::asid`) is flushed from this CPU first, since what it cached under
/// that ASID may be another address space's.
pub fn install_ttbr0(ttbr0: u64) {
    let shared = ASIDS
        .get()
        .is_some_and(|a| ttbr0 >> 48 == u64::from(a.shared()));
    if shared {
        crate::arch::aarch64::mmu::set_ttbr0_flush_asid(ttbr0);
    } else {
        crate::arch::aarch64::mmu::set_ttbr0_raw(ttbr0);
    }
}

/// The ASIDs in use: their width in bits, and how many address spaces were given the
/// shared one since boot.
pub fn asid_stats() -> (u32, usize) {
    ASIDS.get().map_or((0, 0), |a| {
        (u32::from(a.shared()).count_ones(), a.shared_handouts())
    })
}

/// The page tables of one user address space, with the ASID they own for their life
/// (or share with others once every other ASID is in use: `mm::asid`).
pub struct UserTables {
    tables: ManuallyDrop<AddressSpace<KernelPt>>,
    asid: Asid,
}

impl UserTables {
    /// Empty tables with a fresh ASID, in the boot-selected mode, checker as configured.
    pub fn new() -> Result<Self, MapError> {
        Self::with_mode(config().mode)
    }

    /// Empty tables in a given mode (benchmarks compare the modes within one run).
    pub fn with_mode(mode: ContMode) -> Result<Self, MapError> {
        let asid = ASIDS.get().expect("ASIDs set up at boot").alloc();
        let cfg = config();
        match AddressSpace::new(KernelPt, asid, mode) {
            Ok(mut tables) => {
                tables.checker_mut().set_enabled(cfg.check);
                Ok(Self {
                    tables: ManuallyDrop::new(tables),
                    asid,
                })
            }
            Err(e) => {
                ASIDS.get().unwrap().free(asid);
                Err(e)
            }
        }
    }
}

impl Deref for UserTables {
    type Target = AddressSpace<KernelPt>;
    fn deref(&self) -> &Self::Target {
        &self.tables
    }
}

impl DerefMut for UserTables {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tables
    }
}

impl Drop for UserTables {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; the tables' own drop invalidates the ASID's TLB
        // entries before the ASID goes back for reuse.
        unsafe { ManuallyDrop::drop(&mut self.tables) };
        ASIDS.get().unwrap().free(self.asid);
    }
}

/// The zero page (`mm::zero`): a page-aligned page of zeros in the kernel image,
/// whose frames are reserved (never allocated); nothing writes it.
#[repr(C, align(4096))]
struct ZeroPage([u8; PAGE_SIZE]);

static ZERO_PAGE: ZeroPage = ZeroPage([0; PAGE_SIZE]);

/// Hand the zero page's frame to `mm::zero` (boot, before any user address space).
pub fn init_zero_page() {
    let va = VirtAddr::new(core::ptr::addr_of!(ZERO_PAGE) as u64);
    super::zero::set(super::virt_to_phys(va));
}

/// The real machine: tables with an ASID (`UserTables`), pages through the linear map.
impl MmEnv for KernelPt {
    type Tables = UserTables;

    fn new_tables(&self) -> Result<Self::Tables, MapError> {
        UserTables::new()
    }

    fn zero_pages(&self, pa: PhysAddr, n: usize) {
        // SAFETY: MmEnv's contract: RAM in the linear map that only the caller holds.
        unsafe { zero(pa, n) };
    }

    fn copy_pages(&self, from: PhysAddr, to: PhysAddr, n: usize) {
        // SAFETY: both ranges are RAM in the linear map; `to` is a new folio only the
        // caller holds, `from` is only read (its other mappings are read-only).
        unsafe { copy(from, to, n) };
    }

    fn write_page(&self, pa: PhysAddr, data: &[u8]) {
        assert!(!super::zero::is_zero(pa), "a write to the zero page");
        assert!(
            pa.offset_from(pa.align_down(PAGE_SIZE)) + data.len() <= PAGE_SIZE,
            "write_page crosses a page"
        );
        // SAFETY: `pa..pa + len` lies in one frame the caller's address space maps,
        // written through the linear map.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                phys_to_virt(pa).as_ptr::<u8>(),
                data.len(),
            )
        };
    }

    fn read_page(&self, pa: PhysAddr, buf: &mut [u8]) {
        assert!(
            pa.offset_from(pa.align_down(PAGE_SIZE)) + buf.len() <= PAGE_SIZE,
            "read_page crosses a page"
        );
        // SAFETY: `pa..pa + len` lies in one frame the caller's address space maps,
        // read through the linear map.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(pa).as_ptr::<u8>(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
    }
}
