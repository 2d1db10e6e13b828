//! The page-table layer on the real machine: `KernelMachine` implements `pgtable::PtMachine` with
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
//!   maps a page whose frame metadata says `ANON_EXCLUSIVE` (`PtMachine::anon_exclusive`).
//!   The contract mm keeps for it (`mm/aspace.rs`, "who may write a page"): mark every
//!   page exclusive (`Locked::set_exclusive`) *before* any operation that leaves a
//!   writable or DBM entry over it (`map`/`map_pmd` with write permission,
//!   `make_writable`, `protect` to writable, the dirty `write_fault`), and clear the
//!   flag (fork's sharing) only for pages whose entries are already write-protected,
//!   never raising write permission over a page that is not exclusive; for a 2 MiB
//!   block the first page's flag stands for the block.
//!
//! Pages and tables are reached through `page` (the linear map), the one place that
//! touches their contents.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use super::page;
use crate::arch::aarch64::features::CpuFeatures;
use crate::arch::aarch64::tlb;
use crate::cmdline::CmdLine;
use crate::mm::asid::AsidAllocator;
use crate::mm::frame;
use crate::mm::machine::MmMachine;
use crate::mm::pgtable::{
    Asid, ContMode, Counters, Features, FolioSpan, MapError, PageTable, PtMachine, TableEntries,
    Tlb,
};
use crate::mm::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::Errno;

/// The machine as the page-table layer sees it (zero-sized: everything is global).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelMachine;

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

/// `ptcheck_exclusive=`: whether the kernel env answers `PtMachine::anon_exclusive`.
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
    page::init();
    CONFIG.call_once(|| PtConfig {
        mode,
        features,
        check,
    })
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

impl PtMachine for KernelMachine {
    type Tlb = KernelTlb;

    fn table(&self, pa: PhysAddr) -> &TableEntries {
        page::table(pa)
    }

    fn alloc_table(&self) -> Option<PhysAddr> {
        page::alloc_zeroed(0)
    }

    fn free_table(&self, pa: PhysAddr) {
        frame::frames().free(pa, 0);
    }

    fn folio_of(&self, pa: PhysAddr) -> FolioSpan {
        crate::mm::folio::span_of(pa)
    }

    fn tracks_anon_exclusive(&self) -> bool {
        CHECK_EXCLUSIVE.load(Ordering::Acquire)
    }

    /// Whether the page is anon-exclusive (`folio::anon_exclusive`: the folio's
    /// override or the frame's `ANON_EXCLUSIVE` flag), for pages of anonymous folios;
    /// `None` for anything else (frames the page-table tests and benchmarks map
    /// directly), or with the check switched off.
    fn anon_exclusive(&self, pa: PhysAddr) -> Option<bool> {
        crate::mm::folio::anon_exclusive(pa).filter(|_| self.tracks_anon_exclusive())
    }

    fn pinned_shared(&self, pa: PhysAddr, n: usize) -> Option<PhysAddr> {
        if !self.tracks_anon_exclusive() {
            return None;
        }
        crate::mm::folio::pinned_shared(pa, n)
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
    tables: ManuallyDrop<PageTable<KernelMachine>>,
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
        match PageTable::new(KernelMachine, asid, mode) {
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
    type Target = PageTable<KernelMachine>;
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

/// The kernel's address spaces: `mm`'s, on this machine.
pub type Mm = crate::mm::aspace::Mm<KernelMachine>;

impl Mm {
    /// An empty address space of the kernel, with a fresh ASID.
    pub fn new() -> Result<Self, Errno> {
        Self::new_in(&KernelMachine)
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
    crate::mm::zero::set(crate::mm::virt_to_phys(va));
}

/// The real machine: tables with an ASID (`UserTables`), pages through the linear map.
impl MmMachine for KernelMachine {
    type Tables = UserTables;

    fn new_tables(&self) -> Result<Self::Tables, MapError> {
        UserTables::new()
    }

    fn zero_pages(&self, pa: PhysAddr, n: usize) {
        page::zero_pages(pa, n);
    }

    fn copy_pages(&self, from: PhysAddr, to: PhysAddr, n: usize) {
        page::copy_pages(from, to, n);
    }

    fn write_page(&self, pa: PhysAddr, data: &[u8]) {
        page::write(pa, data);
    }

    fn read_page(&self, pa: PhysAddr, buf: &mut [u8]) {
        page::read(pa, buf);
    }
}
