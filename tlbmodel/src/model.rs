//! The modelled TLB: an ASID-tagged L1 data TLB in front of a unified L2 TLB, both
//! LRU and set-associative, filled by page-table walks whose descriptor loads are
//! counted, with an optional walk cache; no QEMU here, so the host tests drive it.
//!
//! What it honours that QEMU's software TLB does not (docs/tlb.md):
//! - The Contiguous bit: a walk that ends on an entry with the bit set fills one entry
//!   for the whole aligned run (16 x 4 KiB = 64 KiB at level 3, 16 x 2 MiB = 32 MiB at
//!   level 2), as the Arm ARM allows ("The Contiguous bit") and the Cortex-A76 does
//!   (the Cortex-A72 preset assumes it). [`Preset::qemu`] ignores the bit, which is
//!   what the emulator sees.
//! - ASIDs: non-global entries match only the ASID they were filled under; global
//!   ones (nG = 0) match any.
//! - TLB maintenance, scoped as the Arm ARM's "TLB maintenance instructions" say: by VA (that ASID's entries and the global ones), by VA for all ASIDs, by
//!   range, by ASID (non-global entries only), all. The last-level-only forms keep the
//!   walk cache, the others clear it for the addresses they name.
//!
//! The cycle figure is *modelled*: the presets' latencies are assumptions written next
//! to them, not measurements; counts (misses, walks, loads) are what the model is for.

/// One cache level of TLB entries: `sets` x `ways`, least recently used replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub entries: usize,
    pub ways: usize,
}

impl Geometry {
    pub const fn fully_associative(entries: usize) -> Geometry {
        Geometry {
            entries,
            ways: entries,
        }
    }
    fn sets(&self) -> usize {
        self.entries / self.ways
    }
}

/// Assumed latencies, in core cycles, of what an L1 miss costs (modelled, not measured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// An L1 miss that hits in the L2 TLB.
    pub l2_hit: u64,
    /// One descriptor load of a walk (assumed to hit in the data caches).
    pub walk_load: u64,
}

/// A core's TLB: its geometry, whether it holds a contiguous run as one entry, its walk
/// cache, the assumed costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub l1: Geometry,
    pub l2: Geometry,
    /// Honours the Contiguous bit (one entry per run); false: one entry per page.
    pub contiguous: bool,
    /// Walk-cache entries, each the address of a level-3 table (0: none).
    pub walk_cache: usize,
    pub cost: Cost,
}

/// Costs assumed for every preset: an L2 TLB hit of a few cycles, a descriptor load
/// hitting the L2 data cache. Stated in docs/tlb.md; change them there too.
const COST: Cost = Cost {
    l2_hit: 6,
    walk_load: 20,
};

impl Preset {
    /// Cortex-A76 TRM ("Memory management unit"): 48-entry fully associative L1 data
    /// TLB, 1280-entry 5-way set-associative L2 TLB.
    pub const fn cortex_a76() -> Preset {
        Preset {
            name: "cortex-a76",
            l1: Geometry::fully_associative(48),
            l2: Geometry {
                entries: 1280,
                ways: 5,
            },
            contiguous: true,
            walk_cache: 0,
            cost: COST,
        }
    }

    /// Neoverse N1 TRM: the same geometry as the Cortex-A76 it derives from.
    pub const fn neoverse_n1() -> Preset {
        Preset {
            name: "neoverse-n1",
            ..Preset::cortex_a76()
        }
    }

    /// Cortex-A72 TRM ("TLB organization"): 32-entry fully associative L1 data TLB,
    /// 1024-entry 4-way L2 ("main") TLB. Whether it holds a contiguous run whole is not
    /// published; this preset assumes it does.
    pub const fn cortex_a72() -> Preset {
        Preset {
            name: "cortex-a72",
            l1: Geometry::fully_associative(32),
            l2: Geometry {
                entries: 1024,
                ways: 4,
            },
            contiguous: true,
            walk_cache: 0,
            cost: COST,
        }
    }

    /// What QEMU's TLB sees: the Cortex-A76 geometry with the Contiguous bit ignored.
    pub const fn qemu() -> Preset {
        Preset {
            name: "qemu",
            contiguous: false,
            ..Preset::cortex_a76()
        }
    }

    pub const ALL: [fn() -> Preset; 4] = [
        Preset::cortex_a76,
        Preset::neoverse_n1,
        Preset::cortex_a72,
        Preset::qemu,
    ];

    /// By name (`cortex-a76`, `neoverse-n1`, `cortex-a72`, `qemu`).
    pub fn named(name: &str) -> Option<Preset> {
        Preset::ALL.iter().map(|p| p()).find(|p| p.name == name)
    }
}

/// A translation as the walk found it: the leaf's level, whether it is global and
/// carries the Contiguous bit, how many descriptors were loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// log2 of the leaf's size: 12 (page), 21 (block), 30 (block).
    pub shift: u8,
    pub contiguous: bool,
    pub global: bool,
    /// Descriptors loaded, table entries included (4 for a 4-level walk to a page).
    pub loads: u8,
}

/// log2 of the entries in a contiguous run with the 4 KiB granule (16).
const CONTIGUOUS_SHIFT: u8 = 4;

/// Which TLB entries a maintenance instruction removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tlbi {
    /// VMALLE1: everything.
    All,
    /// ASIDE1: the ASID's non-global entries.
    Asid(u16),
    /// VAE1/VALE1 (`asid` Some) or VAAE1/VAALE1 (None): the entries covering
    /// `va`, of that ASID and global, or of every ASID. `last_level`: the L-forms.
    Va {
        va: u64,
        asid: Option<u16>,
        last_level: bool,
    },
    /// RVAE1 and its kin: as `Va` for every entry overlapping [va, va + len).
    Range {
        va: u64,
        len: u64,
        asid: Option<u16>,
        last_level: bool,
    },
}

/// What one access cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    L1Hit,
    L2Hit,
    /// A walk of `loads` descriptor loads (walk-cache hits already subtracted).
    Walked {
        loads: u8,
    },
    /// No translation (the walk faulted): the access never completes, nothing is filled.
    Fault,
}

/// Counts of accesses and what they cost: the figures the plugin reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub accesses: u64,
    pub l1_misses: u64,
    pub walks: u64,
    pub walk_loads: u64,
}

impl Counts {
    pub fn add(&mut self, o: Outcome) {
        self.accesses += 1;
        match o {
            Outcome::L1Hit => {}
            Outcome::L2Hit => self.l1_misses += 1,
            Outcome::Walked { loads } => {
                self.l1_misses += 1;
                self.walks += 1;
                self.walk_loads += u64::from(loads);
            }
            Outcome::Fault => self.l1_misses += 1,
        }
    }

    /// Modelled cycles spent on translation beyond L1 hits, with the preset's costs.
    pub fn cycles(&self, cost: Cost) -> u64 {
        (self.l1_misses - self.walks) * cost.l2_hit + self.walk_loads * cost.walk_load
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// va >> shift.
    tag: u64,
    /// The output address of the entry's first byte.
    pa: u64,
    shift: u8,
    asid: u16,
    global: bool,
    /// Last use; 0 = invalid.
    stamp: u64,
}

const INVALID: Entry = Entry {
    tag: 0,
    pa: 0,
    shift: 0,
    asid: 0,
    global: false,
    stamp: 0,
};

impl Entry {
    fn covers(&self, va: u64) -> bool {
        self.stamp != 0 && va >> self.shift == self.tag
    }
    fn matches(&self, va: u64, asid: u16) -> bool {
        self.covers(va) && (self.global || self.asid == asid)
    }
    fn overlaps(&self, va: u64, len: u64) -> bool {
        let base = self.tag << self.shift;
        self.stamp != 0 && base < va.saturating_add(len) && va < base + (1u64 << self.shift)
    }
}

/// One set-associative LRU array of entries of any size. An entry of size 2^s sits in
/// set (va >> s) mod sets; a lookup probes the set of each size it holds.
struct Array {
    geometry: Geometry,
    entries: Vec<Entry>,
    /// Bit s set: entries of size 2^s may be present (the sizes a lookup probes).
    shifts: u64,
    clock: u64,
}

impl Array {
    fn new(geometry: Geometry) -> Array {
        assert!(geometry.ways > 0 && geometry.entries.is_multiple_of(geometry.ways));
        Array {
            geometry,
            entries: vec![INVALID; geometry.entries],
            shifts: 0,
            clock: 0,
        }
    }

    fn set(&mut self, va: u64, shift: u8) -> &mut [Entry] {
        let ways = self.geometry.ways;
        let s = ((va >> shift) % self.geometry.sets() as u64) as usize;
        &mut self.entries[s * ways..(s + 1) * ways]
    }

    /// The matching entry (made most recently used).
    fn lookup(&mut self, va: u64, asid: u16) -> Option<Entry> {
        self.clock += 1;
        let clock = self.clock;
        let mut shifts = self.shifts;
        while shifts != 0 {
            let shift = shifts.trailing_zeros() as u8;
            shifts &= shifts - 1;
            if let Some(e) = self.set(va, shift).iter_mut().find(|e| e.matches(va, asid)) {
                e.stamp = clock;
                return Some(*e);
            }
        }
        None
    }

    /// Fills `e` (its stamp is set here), replacing the least recently used entry of
    /// its set (an invalid one first).
    fn fill(&mut self, e: Entry) {
        self.clock += 1;
        let stamp = self.clock;
        self.shifts |= 1 << e.shift;
        let set = self.set(e.tag << e.shift, e.shift);
        let victim = set.iter_mut().min_by_key(|e| e.stamp).expect("ways > 0");
        *victim = Entry { stamp, ..e };
    }

    fn invalidate(&mut self, drop: impl Fn(&Entry) -> bool) {
        self.entries
            .iter_mut()
            .filter(|e| e.stamp != 0 && drop(e))
            .for_each(|e| e.stamp = 0);
    }

    fn valid(&self) -> usize {
        self.entries.iter().filter(|e| e.stamp != 0).count()
    }
}

/// log2 of the span one walk-cache entry covers: the 2 MiB a level-3 table maps.
const TABLE_SHIFT: u8 = 21;

/// Which entries an invalidation removes.
type Filter = Box<dyn Fn(&Entry) -> bool>;

/// The modelled TLB of one CPU.
pub struct Tlb {
    preset: Preset,
    l1: Array,
    l2: Array,
    /// Level-3 table pointers (a walk-cache hit loads the leaf only).
    walk_cache: Option<Array>,
}

impl Tlb {
    pub fn new(preset: Preset) -> Tlb {
        Tlb {
            preset,
            l1: Array::new(preset.l1),
            l2: Array::new(preset.l2),
            walk_cache: (preset.walk_cache > 0)
                .then(|| Array::new(Geometry::fully_associative(preset.walk_cache))),
        }
    }

    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    /// A data access to `va` under `asid`: what it cost, and the output address the
    /// TLB gives for it. `walk` translates it on an L2 miss, with the output address
    /// of `va` (None: it faults). An entry for a contiguous run takes the run's base
    /// from the one walk, as hardware may: a run whose pages are not one aligned
    /// physical block then translates wrong, which the plugin's check catches.
    pub fn translate(
        &mut self,
        va: u64,
        asid: u16,
        walk: impl FnOnce() -> Option<(Walk, u64)>,
    ) -> (Outcome, Option<u64>) {
        let pa = |e: Entry| e.pa + (va & ((1 << e.shift) - 1));
        if let Some(e) = self.l1.lookup(va, asid) {
            return (Outcome::L1Hit, Some(pa(e)));
        }
        if let Some(e) = self.l2.lookup(va, asid) {
            self.l1.fill(e);
            return (Outcome::L2Hit, Some(pa(e)));
        }
        let Some((w, out)) = walk() else {
            return (Outcome::Fault, None);
        };
        let mut loads = w.loads;
        if let Some(wc) = &mut self.walk_cache {
            if w.shift < TABLE_SHIFT {
                if wc.lookup(va, asid).is_some() {
                    loads = 1;
                } else {
                    wc.fill(Entry {
                        tag: va >> TABLE_SHIFT,
                        pa: 0,
                        shift: TABLE_SHIFT,
                        asid,
                        global: w.global,
                        stamp: 0,
                    });
                }
            }
        }
        let shift = if w.contiguous && self.preset.contiguous {
            w.shift + CONTIGUOUS_SHIFT
        } else {
            w.shift
        };
        let size = 1u64 << shift;
        let e = Entry {
            tag: va >> shift,
            pa: out & !(size - 1),
            shift,
            asid,
            global: w.global,
            stamp: 0,
        };
        self.l2.fill(e);
        self.l1.fill(e);
        (Outcome::Walked { loads }, Some(out))
    }

    /// Applies a TLB maintenance instruction.
    pub fn tlbi(&mut self, op: Tlbi) {
        let (drop_leaves, drop_tables): (Filter, bool) = match op {
            Tlbi::All => (Box::new(|_| true), true),
            Tlbi::Asid(a) => (Box::new(move |e| !e.global && e.asid == a), true),
            Tlbi::Va {
                va,
                asid,
                last_level,
            } => (
                Box::new(move |e| e.covers(va) && asid.is_none_or(|a| e.global || e.asid == a)),
                !last_level,
            ),
            Tlbi::Range {
                va,
                len,
                asid,
                last_level,
            } => (
                Box::new(move |e| {
                    e.overlaps(va, len) && asid.is_none_or(|a| e.global || e.asid == a)
                }),
                !last_level,
            ),
        };
        self.l1.invalidate(&drop_leaves);
        self.l2.invalidate(&drop_leaves);
        if drop_tables {
            if let Some(wc) = &mut self.walk_cache {
                wc.invalidate(&drop_leaves);
            }
        }
    }

    /// Valid entries in (L1, L2): for tests of maintenance.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.l1.valid(), self.l2.valid())
    }
}

#[cfg(test)]
mod tests;
