//! Every fold, unfold, convert, TLBI and descriptor write, counted in one place.
//!
//! The environment owns one [`Counters`] (the kernel a static, each host test its own);
//! the layer bumps it at the single place where each event happens. Benchmarks and the
//! statistics files read a [`CounterSnapshot`] and subtract two of them.

use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters (relaxed atomics: statistics, not synchronisation).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`Counters`] at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CounterSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub const fn new() -> Self {
                Counters { $($name: AtomicU64::new(0),)* }
            }

            pub fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl core::ops::Sub for CounterSnapshot {
            type Output = CounterSnapshot;
            fn sub(self, earlier: Self) -> Self {
                CounterSnapshot { $($name: self.$name - earlier.$name,)* }
            }
        }
    };
}

counters! {
    /// Blocks of 16 entries converted to contiguous.
    folds,
    /// Contiguous blocks converted back to 16 single entries.
    unfolds,
    /// Break-before-make conversions (folds + unfolds).
    converts,
    /// Empty blocks written directly as contiguous by a batched map.
    cont_maps,
    /// Level-2 blocks split into a level-3 table.
    pmd_splits,
    /// TLBI by VA, one page.
    tlbi_page,
    /// TLBI by VA range.
    tlbi_range,
    /// TLBI by ASID.
    tlbi_asid,
    /// TLBI of everything.
    tlbi_all,
    /// DSBs issued for TLB maintenance.
    dsb,
    /// Descriptor stores (any level).
    entries_written,
    tables_allocated,
    tables_freed,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}
