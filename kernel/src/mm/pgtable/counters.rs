//! Every fold, unfold, convert, TLBI and descriptor write, counted in one place.
//!
//! The environment owns one [`Counters`] (the kernel a static, each host test its own);
//! the layer bumps it at the single place where each event happens. Benchmarks and the
//! statistics files read a [`CounterSnapshot`] (the sum over CPUs) and subtract two.
//!
//! Per CPU, and plain: each CPU adds to its own slot ([`PtMachine::cpu`]) with a load and
//! a store, no atomic read-modify-write and no cache line shared between CPUs (what
//! the release build pays for statistics). That is exact because an increment cannot
//! be cut on its CPU: kernel code is never preempted (only on the way back to EL0) and
//! no interrupt handler runs the page-table layer. A snapshot may miss increments in
//! flight on other CPUs, as any statistics read.

use core::sync::atomic::{AtomicU64, Ordering};

use super::machine::PtMachine;
// Every CPU the kernel runs has a slot of its own.
use crate::MAX_CPUS;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// One CPU's counters.
        #[derive(Debug, Default)]
        pub struct CpuCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// Live counters, one slot per CPU (module doc).
        #[derive(Debug)]
        pub struct Counters {
            cpus: [CpuCounters; MAX_CPUS],
        }

        /// A copy of [`Counters`] at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CounterSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl CpuCounters {
            const fn new() -> Self {
                CpuCounters { $($name: AtomicU64::new(0),)* }
            }
        }

        impl Counters {
            pub const fn new() -> Self {
                Counters { cpus: [const { CpuCounters::new() }; MAX_CPUS] }
            }

            /// The sum over CPUs.
            pub fn snapshot(&self) -> CounterSnapshot {
                let mut s = CounterSnapshot::default();
                for c in &self.cpus {
                    $(s.$name += c.$name.load(Ordering::Relaxed);)*
                }
                s
            }

            /// The slot of CPU `cpu`.
            pub fn cpu(&self, cpu: usize) -> &CpuCounters {
                &self.cpus[cpu % MAX_CPUS]
            }
        }

        impl Default for Counters {
            fn default() -> Self {
                Self::new()
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
    /// Level-3 tables moved whole to another level-2 slot (mremap).
    tables_moved,
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
    /// Faults on an entry that already allowed the access (`mod.rs` `note_spurious`).
    spurious_faults,
}

impl Counters {
    /// Add `by` to a counter of this CPU's slot: a plain load and store (module doc).
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
    }
}

/// The counters of the CPU running this code, on `env`.
pub(crate) fn here<E: PtMachine>(env: &E) -> &CpuCounters {
    env.counters().cpu(env.cpu())
}
