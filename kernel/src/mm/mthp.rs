//! Multi-size transparent huge pages (mTHP) for anonymous memory: which folio sizes a
//! page fault may allocate, and the per-size counters. Linux's interface, word for word:
//!
//! - `/sys/kernel/mm/transparent_hugepage/enabled`: always / madvise / never
//!   ([`TopSetting`]);
//! - `/sys/kernel/mm/transparent_hugepage/hugepages-<N>kB/enabled`, one per anonymous
//!   mTHP order 2..=9 (16 KiB .. 2 MiB): always / inherit / madvise / never
//!   ([`SizeSetting`]). Order 1 has none: an anonymous folio keeps its deferred-split
//!   list entry in its third page, which an order-1 folio lacks;
//! - the boot parameter `thp_anon=16K-64K:always;128K,512K:inherit;2M:never` (6.13+,
//!   [`Policy::parse_thp_anon`]);
//! - `hugepages-<N>kB/stats/<name>`: the counters of [`SizeStats`].
//!
//! Which orders an anonymous fault may use (Linux's `thp_vma_allowable_orders`):
//!
//! | size setting | no advice                 | MADV_HUGEPAGE                   | MADV_NOHUGEPAGE |
//! |--------------|---------------------------|---------------------------------|-----------------|
//! | always       | yes                       | yes                             | no              |
//! | inherit      | if top-level is `always`  | if top-level is not `never`     | no              |
//! | madvise      | no                        | yes                             | no              |
//! | never        | no                        | no                              | no              |
//!
//! so a size set to `always` is used even when the top-level file says `never`: since
//! mTHP the top-level file only speaks for the sizes that inherit it. Of the allowed
//! orders, a fault takes the highest whose naturally aligned block around the faulting
//! address lies inside the VMA ([`fault_orders`]) and is entirely unmapped, and falls
//! back one order at a time when the allocation fails (`anon_fault_fallback`).
//!
//! Not modelled: prctl(PR_SET_THP_DISABLE), the exec-time stack exclusion, memory
//! cgroups (so `anon_fault_fallback_charge` stays 0), swap (no `swpout*` counters) and
//! shmem/file THP sizes (so no `hugepages-8kB`, which Linux creates for page-cache
//! folios only).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::RangeInclusive;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};

use super::addr::{VirtAddr, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE};
use super::frame::MAX_POOL_ORDER;
use crate::uapi::EINVAL;

/// Transparent-huge-page advice on a VMA (madvise MADV_HUGEPAGE / MADV_NOHUGEPAGE),
/// the policy's input (`Policy::allowed_orders`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugeHint {
    /// No advice: the system-wide policy decides.
    #[default]
    Default,
    /// MADV_HUGEPAGE: back with large folios where possible.
    Huge,
    /// MADV_NOHUGEPAGE: never back with folios larger than a page.
    NoHuge,
}

/// Order of a PMD block (2 MiB): the largest transparent huge page.
pub const PMD_ORDER: usize = (PMD_SIZE / PAGE_SIZE).trailing_zeros() as usize;
/// The orders an anonymous folio may have besides 0 (Linux's `THP_ORDERS_ALL_ANON`).
pub const MTHP_ORDERS: RangeInclusive<usize> = 2..=PMD_ORDER;
const FIRST_MTHP_ORDER: usize = *MTHP_ORDERS.start();
const NR_MTHP_ORDERS: usize = PMD_ORDER + 1 - FIRST_MTHP_ORDER;

/// Size in KiB of a folio of `order`.
pub const fn size_kb(order: usize) -> usize {
    (PAGE_SIZE << order) / 1024
}

/// The sysfs directory of an mTHP order: `hugepages-16kB` .. `hugepages-2048kB`.
pub fn dir_name(order: usize) -> &'static str {
    const NAMES: [&str; NR_MTHP_ORDERS] = [
        "hugepages-16kB",
        "hugepages-32kB",
        "hugepages-64kB",
        "hugepages-128kB",
        "hugepages-256kB",
        "hugepages-512kB",
        "hugepages-1024kB",
        "hugepages-2048kB",
    ];
    NAMES[slot(order)]
}

/// Index of an mTHP order in the per-size tables; any other order is a bug.
fn slot(order: usize) -> usize {
    assert!(
        MTHP_ORDERS.contains(&order),
        "order {order} is not an mTHP order"
    );
    order - FIRST_MTHP_ORDER
}

/// The words of an `enabled` file: shown in Linux's order with the current one in
/// brackets, and written back one at a time.
trait Choice: Copy + Eq + 'static {
    /// Every value, in the order the file lists them (the declaration order).
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    fn from_index(index: u8) -> Self {
        Self::ALL[usize::from(index)]
    }

    /// `always [madvise] never\n`.
    fn render(self) -> String {
        render_words(Self::ALL.iter().map(|&c| (c.name(), c == self)))
    }

    /// The value named exactly `word` (boot parameters compare with `strcmp`).
    fn parse(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == word)
    }

    /// A write to the sysfs file: the word, optionally followed by one newline
    /// (Linux's `sysfs_streq`); anything else is EINVAL.
    fn parse_sysfs(buf: &str) -> Result<Self, i32> {
        Self::parse(buf.strip_suffix('\n').unwrap_or(buf)).ok_or(EINVAL)
    }
}

/// `always [madvise] never\n`: the words in order, the selected one in brackets.
fn render_words<'a>(words: impl Iterator<Item = (&'a str, bool)>) -> String {
    let words: Vec<String> = words
        .map(|(w, selected)| {
            if selected {
                format!("[{w}]")
            } else {
                String::from(w)
            }
        })
        .collect();
    words.join(" ") + "\n"
}

/// A choice file of Linux's kept as the word written, in Linux's words and default:
/// `defrag` (whose mechanism this kernel lacks: no compaction or reclaim stalls at
/// fault time, so it changes nothing) and the `shmem_enabled` files, which the page
/// cache reads (`shmem_top`, `shmem_size`).
pub struct KeptChoice {
    words: &'static [&'static str],
    selected: AtomicU8,
}

impl KeptChoice {
    const fn new(words: &'static [&'static str], default: u8) -> Self {
        KeptChoice {
            words,
            selected: AtomicU8::new(default),
        }
    }

    pub fn render(&self) -> String {
        let selected = usize::from(self.selected.load(Ordering::Relaxed));
        render_words(
            self.words
                .iter()
                .enumerate()
                .map(|(i, &w)| (w, i == selected)),
        )
    }

    /// A write of one of the words (optionally newline-terminated); else EINVAL.
    pub fn write(&self, buf: &str) -> Result<(), i32> {
        let word = buf.strip_suffix('\n').unwrap_or(buf);
        let i = self.words.iter().position(|&w| w == word).ok_or(EINVAL)?;
        self.selected.store(i as u8, Ordering::Relaxed);
        Ok(())
    }

    /// The index of the word selected now.
    fn selected(&self) -> usize {
        usize::from(self.selected.load(Ordering::Relaxed))
    }
}

/// `transparent_hugepage/defrag`: Linux's default `madvise`.
pub static DEFRAG: KeptChoice =
    KeptChoice::new(&["always", "defer", "defer+madvise", "madvise", "never"], 3);
/// `transparent_hugepage/shmem_enabled`: Linux's default `never`.
pub static SHMEM_ENABLED: KeptChoice = KeptChoice::new(
    &["always", "within_size", "advise", "never", "deny", "force"],
    3,
);
/// `hugepages-<N>kB/shmem_enabled`, per mTHP order: Linux's defaults, `inherit` for
/// 2 MiB and `never` for the other sizes (`shmem_init`).
pub static SHMEM_SIZE_ENABLED: [KeptChoice; NR_MTHP_ORDERS] = {
    const WORDS: &[&str] = &["always", "inherit", "within_size", "advise", "never"];
    let mut all = [const { KeptChoice::new(WORDS, 4) }; NR_MTHP_ORDERS];
    all[NR_MTHP_ORDERS - 1] = KeptChoice::new(WORDS, 1);
    all
};

/// The `KeptChoice` of `hugepages-<N>kB/shmem_enabled`.
pub fn shmem_size_enabled(order: usize) -> &'static KeptChoice {
    &SHMEM_SIZE_ENABLED[slot(order)]
}

/// A `shmem_enabled` value, top-level or per size (`shmem::allowed_orders` says what
/// each means).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmemSetting {
    Always,
    Inherit,
    WithinSize,
    Advise,
    Never,
    Deny,
    Force,
}

/// The settings of the top-level file, in the order of its words.
const SHMEM_TOP_SETTINGS: [ShmemSetting; 6] = [
    ShmemSetting::Always,
    ShmemSetting::WithinSize,
    ShmemSetting::Advise,
    ShmemSetting::Never,
    ShmemSetting::Deny,
    ShmemSetting::Force,
];

/// The settings of a per-size file, in the order of its words.
const SHMEM_SIZE_SETTINGS: [ShmemSetting; 5] = [
    ShmemSetting::Always,
    ShmemSetting::Inherit,
    ShmemSetting::WithinSize,
    ShmemSetting::Advise,
    ShmemSetting::Never,
];

/// The top-level `shmem_enabled` (read on every page-cache allocation: an index, no
/// word compared).
pub fn shmem_top() -> ShmemSetting {
    SHMEM_TOP_SETTINGS[SHMEM_ENABLED.selected()]
}

/// `hugepages-<N>kB/shmem_enabled` of `order`.
pub fn shmem_size(order: usize) -> ShmemSetting {
    SHMEM_SIZE_SETTINGS[shmem_size_enabled(order).selected()]
}

/// `transparent_hugepage/use_zero_page` (Linux's default 1): whether a read fault
/// where a 2 MiB folio is allowed and fits maps the huge zero page (`zero`) or
/// allocates the folio; a write takes 0 or 1 (Linux's `single_hugepage_flag_store`).
pub static USE_ZERO_PAGE: AtomicBool = AtomicBool::new(true);

pub fn write_use_zero_page(buf: &str) -> Result<(), i32> {
    match buf.strip_suffix('\n').unwrap_or(buf) {
        "0" => USE_ZERO_PAGE.store(false, Ordering::Relaxed),
        "1" => USE_ZERO_PAGE.store(true, Ordering::Relaxed),
        _ => return Err(EINVAL),
    }
    Ok(())
}

/// `/sys/kernel/mm/transparent_hugepage/enabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TopSetting {
    Always,
    Madvise,
    Never,
}

impl Choice for TopSetting {
    const ALL: &'static [Self] = &[Self::Always, Self::Madvise, Self::Never];

    fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Madvise => "madvise",
            Self::Never => "never",
        }
    }
}

/// `/sys/kernel/mm/transparent_hugepage/hugepages-<N>kB/enabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SizeSetting {
    Always,
    /// Follow the top-level setting.
    Inherit,
    Madvise,
    Never,
}

impl Choice for SizeSetting {
    const ALL: &'static [Self] = &[Self::Always, Self::Inherit, Self::Madvise, Self::Never];

    fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Inherit => "inherit",
            Self::Madvise => "madvise",
            Self::Never => "never",
        }
    }
}

/// Why a `thp_anon=` argument was rejected, with the offending text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpAnonError<'a> {
    /// A `;`-separated group without `:STATE`.
    NoState(&'a str),
    /// Not a power of two between 16K and 2M.
    BadSize(&'a str),
    /// A range `A-B` with A above B.
    BadRange(&'a str),
    /// Not always, inherit, madvise or never.
    BadState(&'a str),
}

impl core::fmt::Display for ThpAnonError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoState(g) => write!(f, "`{g}` has no `:always|inherit|madvise|never`"),
            Self::BadSize(s) => write!(f, "`{s}` is not a size from 16K to 2M"),
            Self::BadRange(r) => write!(f, "`{r}` runs from a larger size to a smaller one"),
            Self::BadState(s) => {
                write!(f, "`{s}` is not always, inherit, madvise or never")
            }
        }
    }
}

/// The anonymous THP policy: the top-level setting and one setting per mTHP order,
/// each an atomic so that sysfs writes take effect on the next fault without a lock.
pub struct Policy {
    top: AtomicU8,
    sizes: [AtomicU8; NR_MTHP_ORDERS],
    /// Set by the first valid `thp_anon=`: sizes it does not name are `never`.
    boot_configured: AtomicBool,
}

/// The system's policy, read by the fault path and written through sysfs.
pub static POLICY: Policy = Policy::new();

impl Policy {
    /// Linux's defaults with the Debian kernel's configuration
    /// (`CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS`): top-level `always`, the PMD size
    /// `inherit`, every other size `never`.
    pub const fn new() -> Self {
        let mut sizes = [const { AtomicU8::new(SizeSetting::Never as u8) }; NR_MTHP_ORDERS];
        sizes[PMD_ORDER - FIRST_MTHP_ORDER] = AtomicU8::new(SizeSetting::Inherit as u8);
        Self {
            top: AtomicU8::new(TopSetting::Always as u8),
            sizes,
            boot_configured: AtomicBool::new(false),
        }
    }

    pub fn top(&self) -> TopSetting {
        TopSetting::from_index(self.top.load(Ordering::Relaxed))
    }

    pub fn set_top(&self, setting: TopSetting) {
        self.top.store(setting as u8, Ordering::Relaxed);
    }

    /// The setting of an mTHP order (2..=9).
    pub fn size(&self, order: usize) -> SizeSetting {
        SizeSetting::from_index(self.sizes[slot(order)].load(Ordering::Relaxed))
    }

    pub fn set_size(&self, order: usize, setting: SizeSetting) {
        self.sizes[slot(order)].store(setting as u8, Ordering::Relaxed);
    }

    /// The contents of the top-level `enabled` file: `[always] madvise never\n`.
    pub fn render_top(&self) -> String {
        self.top().render()
    }

    /// The contents of `hugepages-<N>kB/enabled`: `always [inherit] madvise never\n`.
    pub fn render_size(&self, order: usize) -> String {
        self.size(order).render()
    }

    /// A write to the top-level `enabled` file; EINVAL leaves the setting as it was.
    pub fn write_top(&self, buf: &str) -> Result<(), i32> {
        self.set_top(TopSetting::parse_sysfs(buf)?);
        Ok(())
    }

    /// A write to `hugepages-<N>kB/enabled`; EINVAL leaves the setting as it was.
    pub fn write_size(&self, order: usize, buf: &str) -> Result<(), i32> {
        self.set_size(order, SizeSetting::parse_sysfs(buf)?);
        Ok(())
    }

    /// The boot parameter `thp_anon=SIZES:STATE;SIZES:STATE...`, as Linux's
    /// `setup_thp_anon`: SIZES is a `,`-separated list of sizes and `A-B` ranges (every
    /// mTHP size from A to B), each size read by Linux's `memparse` (decimal, `0x` hex
    /// or `0` octal, then an optional K/M/G/T/P/E, whatever follows ignored) and valid
    /// only if it is a power of two from 16K to 2M. Later groups override earlier ones.
    ///
    /// The first valid `thp_anon=` starts from every size `never` (so the PMD size no
    /// longer inherits unless named); a further one starts from the result of the
    /// previous. On any error nothing changes.
    pub fn parse_thp_anon<'a>(&self, arg: &'a str) -> Result<(), ThpAnonError<'a>> {
        let mut sizes = if self.boot_configured.load(Ordering::Relaxed) {
            core::array::from_fn(|i| self.size(FIRST_MTHP_ORDER + i))
        } else {
            [SizeSetting::Never; NR_MTHP_ORDERS]
        };
        for group in arg.split(';') {
            apply_thp_anon_group(&mut sizes, group)?;
        }
        for (order, setting) in MTHP_ORDERS.zip(sizes) {
            self.set_size(order, setting);
        }
        self.boot_configured.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Bit mask of the orders an anonymous fault may allocate in a VMA with advice
    /// `hint` (Linux's `thp_vma_allowable_orders` for an anonymous VMA; the table in
    /// the module documentation).
    pub fn allowed_orders(&self, hint: HugeHint) -> u16 {
        let madvised = match hint {
            HugeHint::NoHuge => return 0,
            HugeHint::Huge => true,
            HugeHint::Default => false,
        };
        let inherit = match self.top() {
            TopSetting::Always => true,
            TopSetting::Madvise => madvised,
            TopSetting::Never => false,
        };
        MTHP_ORDERS
            .filter(|&order| match self.size(order) {
                SizeSetting::Always => true,
                SizeSetting::Inherit => inherit,
                SizeSetting::Madvise => madvised,
                SizeSetting::Never => false,
            })
            .fold(0, |mask, order| mask | 1 << order)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}

/// One `SIZES:STATE` group of `thp_anon=`, applied to `sizes` (indexed by `slot`).
/// Errors come in Linux's order: sizes, range, state, for each element in turn.
fn apply_thp_anon_group<'a>(
    sizes: &mut [SizeSetting],
    group: &'a str,
) -> Result<(), ThpAnonError<'a>> {
    let (list, state) = group.split_once(':').ok_or(ThpAnonError::NoState(group))?;
    for element in list.split(',') {
        let (first, last) = element.split_once('-').unwrap_or((element, element));
        let first = order_of_size(first).ok_or(ThpAnonError::BadSize(first))?;
        let last = order_of_size(last).ok_or(ThpAnonError::BadSize(last))?;
        if first > last {
            return Err(ThpAnonError::BadRange(element));
        }
        let setting = SizeSetting::parse(state).ok_or(ThpAnonError::BadState(state))?;
        sizes[slot(first)..=slot(last)].fill(setting);
    }
    Ok(())
}

/// The mTHP order of a size written as in `thp_anon=` (Linux's `get_order_from_str`).
fn order_of_size(text: &str) -> Option<usize> {
    let size = crate::cmdline::memparse(text);
    if !size.is_power_of_two() {
        return None;
    }
    let order = (size.trailing_zeros() as usize).saturating_sub(PAGE_SHIFT);
    MTHP_ORDERS.contains(&order).then_some(order)
}

/// The mTHP orders of `allowed` (a mask from [`Policy::allowed_orders`]), highest
/// first, whose naturally aligned block around `va` lies entirely inside the VMA
/// `[vma_start, vma_end)` (Linux's `thp_vma_suitable_order`; an anonymous VMA has no
/// file offset to align). The caller tries them in turn: the first whose block is
/// entirely unmapped and can be allocated wins, else order 0.
pub fn fault_orders(
    allowed: u16,
    va: VirtAddr,
    vma_start: VirtAddr,
    vma_end: VirtAddr,
) -> impl Iterator<Item = usize> {
    assert!(
        vma_start <= va && va < vma_end,
        "fault at {va:?} outside the VMA {vma_start:?}..{vma_end:?}"
    );
    MTHP_ORDERS.rev().filter(move |&order| {
        let size = PAGE_SIZE << order;
        let block = va.align_down(size);
        allowed & 1 << order != 0 && block >= vma_start && vma_end.offset_from(block) >= size
    })
}

/// Defines `SizeStats` with one atomic per counter and per gauge, `STAT_NAMES` (the
/// names of the sysfs files, which are the field names) and `SizeStats::render`.
macro_rules! size_stats {
    (
        counters { $($(#[$cdoc:meta])* $counter:ident,)* }
        gauges { $($(#[$gdoc:meta])* $gauge:ident,)* }
    ) => {
        /// The statistics of one folio order, as Linux's `hugepages-<N>kB/stats/`.
        /// Counters only go up; gauges go up and down.
        pub struct SizeStats {
            $($(#[$cdoc])* pub $counter: AtomicU64,)*
            $($(#[$gdoc])* pub $gauge: AtomicI64,)*
        }

        impl SizeStats {
            pub const fn new() -> Self {
                Self {
                    $($counter: AtomicU64::new(0),)*
                    $($gauge: AtomicI64::new(0),)*
                }
            }

            /// The contents of the stats file `name`: the number and a newline.
            fn render(&self, name: &str) -> Option<String> {
                match name {
                    $(stringify!($counter) => {
                        Some(format!("{}\n", self.$counter.load(Ordering::Relaxed)))
                    })*
                    $(stringify!($gauge) => {
                        Some(format!("{}\n", self.$gauge.load(Ordering::Relaxed)))
                    })*
                    _ => None,
                }
            }
        }

        /// The files of a `stats` directory.
        pub const STAT_NAMES: [&str; [$(stringify!($counter),)* $(stringify!($gauge),)*].len()] =
            [$(stringify!($counter),)* $(stringify!($gauge),)*];
    };
}

size_stats! {
    counters {
        /// An anonymous folio of this order was allocated on a page fault.
        anon_fault_alloc,
        /// A fault tried this order and fell back to a smaller one.
        anon_fault_fallback,
        /// ... because charging a memory cgroup failed (none here: stays 0).
        anon_fault_fallback_charge,
        /// A folio of this order was split into smaller ones.
        split,
        /// A split of a folio of this order was tried and failed.
        split_failed,
        /// A partially unmapped folio of this order was queued for a later split.
        split_deferred,
        /// A write fault after fork reused the whole folio in place (sole owner left).
        cow_reuse,
        /// Copy-on-write copied a whole folio of this order at once.
        cow_folio_copy,
        /// A folio of this order accounted whole (entire map count, exclusivity
        /// override) had that state written into its pages: a partial unmap or
        /// exclusivity change, a split or a merge (`folio`'s module doc).
        spread_to_pages,
        /// Collapse (the collapse thread or MADV_COLLAPSE) allocated a folio of this
        /// order to copy a range into (`mm::collapse`).
        collapse_alloc,
        /// ... and the allocation failed (the thread falls back to smaller orders).
        collapse_alloc_failed,
        /// A block of this order was not collapsed: more unmapped entries than
        /// `khugepaged/max_ptes_none` allows (scaled to the order).
        collapse_exceed_none_pte,
        /// ... more swap entries than `max_ptes_swap` (no swap here: stays 0).
        collapse_exceed_swap_pte,
        /// ... shared pages beyond what the collapse thread takes.
        collapse_exceed_shared_pte,
        /// ... pages someone holds beyond their mappings (a pin: `pin`'s rule 3; Linux's
        /// SCAN_PAGE_COUNT, which it counts in no file).
        collapse_exceed_pinned,
        /// A block of this order was collapsed in place: its entries already mapped one
        /// aligned run of frames, refolded without a copy or an allocation.
        collapse_in_place,
        /// A page-cache folio of this order was allocated (`shmem`).
        shmem_alloc,
        /// The page cache tried this order and fell back to a smaller one.
        shmem_fallback,
        /// ... because charging a memory cgroup failed (none here: stays 0).
        shmem_fallback_charge,
    }
    gauges {
        /// Anonymous folios of this order in existence.
        nr_anon,
        /// Of those, the ones partially unmapped (waiting on the deferred split queue).
        nr_anon_partially_mapped,
    }
}

impl Default for SizeStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Statistics of every order 0..=PMD_ORDER; order 0 has no sysfs directory but is
/// counted so that the accounting of splits and CoW adds up. The orders above, up to
/// hugetlb's 32 MiB pages, have no file either: a path that counts one of their folios
/// counts it there, never out of bounds.
static STATS: [SizeStats; MAX_POOL_ORDER + 1] = [const { SizeStats::new() }; MAX_POOL_ORDER + 1];

/// The statistics of folios of `order` (0..=9; 10..=13 are kept but never shown).
pub fn stats(order: usize) -> &'static SizeStats {
    &STATS[order]
}

/// The contents of `hugepages-<N>kB/stats/<name>` for `order`, or `None` if there is
/// no such file.
pub fn render_stat(order: usize, name: &str) -> Option<String> {
    stats(order).render(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::memparse;

    const MB: u64 = 1 << 20;

    fn settings(policy: &Policy) -> Vec<SizeSetting> {
        MTHP_ORDERS.map(|order| policy.size(order)).collect()
    }

    /// A policy whose sizes are `first` for orders 2..=4 (16K-64K) and `rest` above.
    fn sizes_of(first: SizeSetting, rest: SizeSetting) -> Vec<SizeSetting> {
        MTHP_ORDERS
            .map(|order| if order <= 4 { first } else { rest })
            .collect()
    }

    fn va(a: u64) -> VirtAddr {
        VirtAddr::new(a)
    }

    #[test]
    fn orders_sizes_and_directory_names() {
        assert_eq!(PMD_ORDER, 9);
        assert_eq!(MTHP_ORDERS, 2..=9);
        assert_eq!(size_kb(0), 4);
        assert_eq!(size_kb(2), 16);
        assert_eq!(size_kb(9), 2048);
        for order in MTHP_ORDERS {
            assert_eq!(dir_name(order), format!("hugepages-{}kB", size_kb(order)));
        }
        assert_eq!(dir_name(4), "hugepages-64kB");
    }

    #[test]
    #[should_panic(expected = "not an mTHP order")]
    fn order_one_has_no_setting() {
        Policy::new().size(1);
    }

    #[test]
    fn choices_are_listed_in_declaration_order() {
        for (i, &c) in TopSetting::ALL.iter().enumerate() {
            assert_eq!(c as usize, i);
        }
        for (i, &c) in SizeSetting::ALL.iter().enumerate() {
            assert_eq!(c as usize, i);
        }
    }

    #[test]
    fn defaults_render_as_linux_prints_them() {
        let p = Policy::new();
        assert_eq!(p.render_top(), "[always] madvise never\n");
        assert_eq!(p.render_size(9), "always [inherit] madvise never\n");
        for order in 2..=8 {
            assert_eq!(p.render_size(order), "always inherit madvise [never]\n");
        }
        p.set_top(TopSetting::Madvise);
        assert_eq!(p.render_top(), "always [madvise] never\n");
        p.set_top(TopSetting::Never);
        assert_eq!(p.render_top(), "always madvise [never]\n");
        p.set_size(4, SizeSetting::Always);
        assert_eq!(p.render_size(4), "[always] inherit madvise never\n");
        p.set_size(4, SizeSetting::Madvise);
        assert_eq!(p.render_size(4), "always inherit [madvise] never\n");
    }

    #[test]
    fn kept_choices_show_linux_defaults_and_take_only_their_words() {
        let defrag = KeptChoice::new(DEFRAG.words, 3);
        assert_eq!(
            defrag.render(),
            "always defer defer+madvise [madvise] never\n"
        );
        assert_eq!(defrag.write("defer+madvise\n"), Ok(()));
        assert_eq!(
            defrag.render(),
            "always defer [defer+madvise] madvise never\n"
        );
        for bad in ["", "defer+", "Never", "never\n\n", "[never]"] {
            assert_eq!(defrag.write(bad), Err(EINVAL), "{bad:?}");
        }
        assert_eq!(
            defrag.render(),
            "always defer [defer+madvise] madvise never\n"
        );
        assert_eq!(
            SHMEM_SIZE_ENABLED[0].render(),
            "always inherit within_size advise [never]\n"
        );
        // The top-level file alone has deny and force.
        assert_eq!(
            KeptChoice::new(SHMEM_SIZE_ENABLED[0].words, 4).write("force"),
            Err(EINVAL)
        );
        assert_eq!(
            KeptChoice::new(SHMEM_ENABLED.words, 3).write("force"),
            Ok(())
        );
    }

    #[test]
    fn sysfs_writes_take_the_word_with_at_most_one_newline() {
        let p = Policy::new();
        assert_eq!(p.write_top("madvise"), Ok(()));
        assert_eq!(p.top(), TopSetting::Madvise);
        assert_eq!(p.write_top("never\n"), Ok(()));
        assert_eq!(p.top(), TopSetting::Never);
        for bad in [
            "",
            "\n",
            "Always",
            "always\n\n",
            " always",
            "always ",
            "inherit",
            "[always]",
        ] {
            assert_eq!(p.write_top(bad), Err(EINVAL), "{bad:?}");
        }
        assert_eq!(p.top(), TopSetting::Never);

        assert_eq!(p.write_size(4, "always\n"), Ok(()));
        assert_eq!(p.size(4), SizeSetting::Always);
        assert_eq!(p.write_size(4, "inherit"), Ok(()));
        assert_eq!(p.size(4), SizeSetting::Inherit);
        for bad in ["", "defer", "inherit\n\n", "never\r\n", "\ninherit"] {
            assert_eq!(p.write_size(4, bad), Err(EINVAL), "{bad:?}");
        }
        assert_eq!(p.size(4), SizeSetting::Inherit);
        // Other sizes are untouched.
        assert_eq!(p.size(5), SizeSetting::Never);
        assert_eq!(p.size(9), SizeSetting::Inherit);
    }

    #[test]
    fn thp_anon_example_from_the_linux_documentation() {
        use SizeSetting::*;
        let p = Policy::new();
        p.parse_thp_anon("16K-64K:always;128K,512K:inherit;256K:madvise;1M-2M:never")
            .unwrap();
        assert_eq!(
            settings(&p),
            [Always, Always, Always, Inherit, Madvise, Inherit, Never, Never]
        );
        assert_eq!(p.top(), TopSetting::Always);
    }

    #[test]
    fn thp_anon_unnamed_sizes_become_never_then_accumulate() {
        use SizeSetting::*;
        let p = Policy::new();
        // The PMD size inherits by default, but not once thp_anon= is given.
        p.parse_thp_anon("64K:always").unwrap();
        assert_eq!(p.size(4), Always);
        assert_eq!(p.size(9), Never);
        // A second thp_anon= builds on the first.
        p.parse_thp_anon("2M:inherit").unwrap();
        assert_eq!(p.size(4), Always);
        assert_eq!(p.size(9), Inherit);
        assert_eq!(p.size(5), Never);
    }

    #[test]
    fn thp_anon_later_groups_win() {
        use SizeSetting::*;
        let p = Policy::new();
        p.parse_thp_anon("16K-2M:always;64K:never;32K-64K:madvise;64K:inherit")
            .unwrap();
        assert_eq!(
            settings(&p),
            [Always, Madvise, Inherit, Always, Always, Always, Always, Always]
        );
        let p = Policy::new();
        p.parse_thp_anon("16K-64K:inherit;16K-2M:never").unwrap();
        assert_eq!(settings(&p), sizes_of(Never, Never));
    }

    #[test]
    fn thp_anon_sizes_are_read_by_memparse() {
        use SizeSetting::*;
        for arg in [
            "16K-64K:always",
            "16k-64k:always",
            "16384-65536:always",
            "0x4000-0x10000:always",
            "040000-0200000:always", // octal
            "16KB-64KiB:always",     // what follows the suffix is ignored
        ] {
            let p = Policy::new();
            p.parse_thp_anon(arg).unwrap();
            assert_eq!(settings(&p), sizes_of(Always, Never), "{arg}");
        }
        let p = Policy::new();
        p.parse_thp_anon("2048K:madvise;1m:always").unwrap();
        assert_eq!((p.size(9), p.size(8)), (Madvise, Always));
        assert_eq!(memparse("2M"), 2 * MB);
        assert_eq!(memparse("0x"), 0);
        assert_eq!(memparse("1E"), 1 << 60);
        assert_eq!(memparse("16Gx"), 16 << 30);
        assert_eq!(memparse(""), 0);
        assert_eq!(memparse("99"), 99);
        assert_eq!(memparse("09"), 0); // octal stops at 9
        assert_eq!(order_of_size("64K"), Some(4));
    }

    #[test]
    fn thp_anon_errors_change_nothing() {
        use ThpAnonError::*;
        let cases = [
            ("8K:always", BadSize("8K")),
            ("4K:always", BadSize("4K")),
            ("1K:always", BadSize("1K")),
            ("4M:always", BadSize("4M")),
            ("48K:always", BadSize("48K")),
            ("0:always", BadSize("0")),
            ("8K-64K:always", BadSize("8K")),
            ("16K-4M:always", BadSize("4M")),
            ("16K,:always", BadSize("")),
            (":always", BadSize("")),
            ("16K-:always", BadSize("")),
            ("64K-16K:always", BadRange("64K-16K")),
            ("16K", NoState("16K")),
            ("", NoState("")),
            ("16K:always;", NoState("")),
            ("16K:always;;64K:never", NoState("")),
            ("16K:", BadState("")),
            ("16K:Always", BadState("Always")),
            ("16K:always\n", BadState("always\n")),
            ("16K:always:never", BadState("always:never")),
            ("16K-2M:always;32K:sometimes", BadState("sometimes")),
            // Groups are separated by `;`, not `,`.
            ("16K:madvise,64K:inherit", BadState("madvise,64K:inherit")),
            // Sizes are checked before the state.
            ("8K:sometimes", BadSize("8K")),
        ];
        for (arg, err) in cases {
            let p = Policy::new();
            p.set_size(5, SizeSetting::Madvise);
            let before = settings(&p);
            assert_eq!(p.parse_thp_anon(arg), Err(err), "{arg:?}");
            assert_eq!(settings(&p), before, "{arg:?}");
            // A failed thp_anon= does not count as given: the next one starts afresh.
            p.parse_thp_anon("16K:always").unwrap();
            assert_eq!(p.size(5), SizeSetting::Never, "{arg:?}");
        }
    }

    /// Every combination of top-level setting, size setting and advice, against a
    /// table written out by hand from Linux's `thp_vma_allowable_orders`.
    #[test]
    fn allowed_orders_for_every_combination() {
        use SizeSetting as S;
        use TopSetting as T;
        // (top, size, [no advice, MADV_HUGEPAGE, MADV_NOHUGEPAGE])
        let table = [
            (T::Always, S::Always, [true, true, false]),
            (T::Always, S::Inherit, [true, true, false]),
            (T::Always, S::Madvise, [false, true, false]),
            (T::Always, S::Never, [false, false, false]),
            (T::Madvise, S::Always, [true, true, false]),
            (T::Madvise, S::Inherit, [false, true, false]),
            (T::Madvise, S::Madvise, [false, true, false]),
            (T::Madvise, S::Never, [false, false, false]),
            (T::Never, S::Always, [true, true, false]),
            (T::Never, S::Inherit, [false, false, false]),
            (T::Never, S::Madvise, [false, true, false]),
            (T::Never, S::Never, [false, false, false]),
        ];
        let hints = [HugeHint::Default, HugeHint::Huge, HugeHint::NoHuge];
        for (top, size, expected) in table {
            for order in MTHP_ORDERS {
                let p = Policy::new();
                for o in MTHP_ORDERS {
                    p.set_size(o, SizeSetting::Never);
                }
                p.set_top(top);
                p.set_size(order, size);
                for (hint, allowed) in hints.into_iter().zip(expected) {
                    let want = if allowed { 1 << order } else { 0 };
                    assert_eq!(
                        p.allowed_orders(hint),
                        want,
                        "{top:?} {size:?} {hint:?} order {order}"
                    );
                }
            }
        }
    }

    #[test]
    fn allowed_orders_with_the_defaults_and_a_mix() {
        let p = Policy::new();
        assert_eq!(p.allowed_orders(HugeHint::Default), 1 << 9);
        assert_eq!(p.allowed_orders(HugeHint::NoHuge), 0);
        p.parse_thp_anon("16K-64K:always;128K,512K:inherit;256K:madvise;1M-2M:never")
            .unwrap();
        let always = 0b111 << 2;
        let inherit = 1 << 5 | 1 << 7;
        assert_eq!(p.allowed_orders(HugeHint::Default), always | inherit);
        assert_eq!(p.allowed_orders(HugeHint::Huge), always | inherit | 1 << 6);
        p.set_top(TopSetting::Madvise);
        assert_eq!(p.allowed_orders(HugeHint::Default), always);
        assert_eq!(p.allowed_orders(HugeHint::Huge), always | inherit | 1 << 6);
        assert_eq!(p.allowed_orders(HugeHint::NoHuge), 0);
    }

    const ALL_ORDERS: u16 = 0b11_1111_1100;

    fn orders(allowed: u16, at: u64, start: u64, end: u64) -> Vec<usize> {
        fault_orders(allowed, va(at), va(start), va(end)).collect()
    }

    #[test]
    fn fault_orders_fit_the_vma() {
        // A 1 MiB VMA, 1 MiB aligned: everything up to 1M, never 2M.
        let (start, end) = (0x4010_0000, 0x4020_0000);
        assert_eq!(
            orders(ALL_ORDERS, start + 0x5000, start, end),
            [8, 7, 6, 5, 4, 3, 2]
        );
        assert_eq!(orders(1 << 9 | 1 << 4, end - 1, start, end), [4]);
        // A 2 MiB-aligned 4 MiB VMA: 2M fits.
        assert_eq!(
            orders(ALL_ORDERS, 0x4020_1000, 0x4000_0000, 0x4040_0000)[0],
            9
        );
        // Only the allowed orders, highest first.
        assert_eq!(orders(1 << 2 | 1 << 6, start, start, end), [6, 2]);
        assert!(orders(0, start, start, end).is_empty());
    }

    #[test]
    fn fault_orders_exclude_partial_blocks_at_the_edges() {
        // The VMA starts 12 KiB into a 64 KiB block: the first block is partial.
        let (start, end) = (0x4000_3000, 0x4060_0000);
        assert_eq!(orders(ALL_ORDERS, 0x4000_5000, start, end), [2]);
        assert!(orders(ALL_ORDERS, 0x4000_3000, start, end).is_empty());
        // The next 64 KiB block is whole; its 128 KiB block is not.
        assert_eq!(orders(ALL_ORDERS, 0x4001_0000, start, end), [4, 3, 2]);
        // 2M from 0x4020_0000 to 0x4040_0000 is inside.
        assert_eq!(orders(ALL_ORDERS, 0x4030_0000, start, end)[0], 9);
        // The VMA ends 8 KiB into a 16 KiB block: its last pages get order 0.
        let end = 0x4000_e000;
        assert!(orders(ALL_ORDERS, 0x4000_d000, start, end).is_empty());
        assert_eq!(orders(ALL_ORDERS, 0x4000_b000, start, end), [2]);
    }

    #[test]
    #[should_panic(expected = "outside the VMA")]
    fn fault_outside_the_vma_is_a_bug() {
        let _ = fault_orders(ALL_ORDERS, va(0x5000), va(0x1000), va(0x5000));
    }

    #[test]
    fn stats_render_as_numbers() {
        let s = SizeStats::new();
        s.anon_fault_alloc.fetch_add(3, Ordering::Relaxed);
        s.nr_anon.fetch_add(2, Ordering::Relaxed);
        s.nr_anon.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(s.render("anon_fault_alloc").as_deref(), Some("3\n"));
        assert_eq!(s.render("nr_anon").as_deref(), Some("1\n"));
        assert_eq!(s.render("cow_reuse").as_deref(), Some("0\n"));
        assert_eq!(s.render("swpout"), None);
        assert_eq!(s.render(""), None);
        // Order 3 is touched by no other test.
        stats(3).split.fetch_add(5, Ordering::Relaxed);
        assert_eq!(render_stat(3, "split").as_deref(), Some("5\n"));
    }

    #[test]
    fn every_stat_name_is_a_file_of_every_order() {
        assert_eq!(
            STAT_NAMES,
            [
                "anon_fault_alloc",
                "anon_fault_fallback",
                "anon_fault_fallback_charge",
                "split",
                "split_failed",
                "split_deferred",
                "cow_reuse",
                "cow_folio_copy",
                "spread_to_pages",
                "collapse_alloc",
                "collapse_alloc_failed",
                "collapse_exceed_none_pte",
                "collapse_exceed_swap_pte",
                "collapse_exceed_shared_pte",
                "collapse_exceed_pinned",
                "collapse_in_place",
                "shmem_alloc",
                "shmem_fallback",
                "shmem_fallback_charge",
                "nr_anon",
                "nr_anon_partially_mapped",
            ]
        );
        for order in 0..=PMD_ORDER {
            for name in STAT_NAMES {
                assert!(render_stat(order, name).is_some(), "{order} {name}");
            }
        }
    }
}
