//! Every in-kernel test, by name. The name says the subsystem first.

use super::{arch, aspace, collapse, folio, isolation, mm, pgtable, proc, smp, Test};

pub static TESTS: &[Test] = &[
    Test {
        name: "arch::features_match_id_registers",
        run: arch::features_match_id_registers,
    },
    Test {
        name: "arch::semihosting_probe_fixup",
        run: arch::semihosting_probe_fixup,
    },
    Test {
        name: "arch::fixup_recovers_faulting_access",
        run: arch::fixup_recovers_faulting_access,
    },
    Test {
        name: "arch::uaccess_non_mm_fault_fails_without_retry",
        run: arch::uaccess_non_mm_fault_fails_without_retry,
    },
    Test {
        name: "mm::frame_orders_aligned_and_returned",
        run: mm::frame_orders_aligned_and_returned,
    },
    Test {
        name: "mm::every_mthp_stat_is_a_sysfs_file",
        run: mm::every_mthp_stat_is_a_sysfs_file,
    },
    Test {
        name: "mm::frame_exhaustion_and_recovery",
        run: mm::frame_exhaustion_and_recovery,
    },
    Test {
        name: "mm::zero_pages_clears_exactly_its_pages",
        run: mm::zero_pages_clears_exactly_its_pages,
    },
    Test {
        name: "mm::heap_alloc_and_free",
        run: mm::heap_alloc_and_free,
    },
    Test {
        name: "mm::kmap_w_xor_x",
        run: mm::kmap_w_xor_x,
    },
    Test {
        name: "mm::kmap_linear_map_covers_ram",
        run: mm::kmap_linear_map_covers_ram,
    },
    Test {
        name: "mm::isolation_el0_reaches_no_kernel_mapping",
        run: isolation::el0_reaches_no_kernel_mapping,
    },
    Test {
        name: "mm::isolation_kernel_data_is_not_executable",
        run: isolation::kernel_data_is_not_executable,
    },
    Test {
        name: "pgtable::fold_is_what_the_walker_sees",
        run: pgtable::fold_is_what_the_walker_sees,
    },
    Test {
        name: "pgtable::pmd_block_splits_into_contiguous_blocks",
        run: pgtable::pmd_block_splits_into_contiguous_blocks,
    },
    Test {
        name: "pgtable::random_operations_match_the_walker",
        run: pgtable::random_operations_match_the_walker,
    },
    Test {
        name: "pgtable::anon_exclusive_hook_reads_the_frame_flag",
        run: pgtable::anon_exclusive_hook_reads_the_frame_flag,
    },
    Test {
        name: "aspace::mprotect_without_a_table_changes_nothing",
        run: aspace::mprotect_without_a_table_changes_nothing,
    },
    Test {
        name: "aspace::cow_copy_without_a_table_leaks_nothing",
        run: aspace::cow_copy_without_a_table_leaks_nothing,
    },
    Test {
        name: "collapse::in_place_needs_no_memory",
        run: collapse::in_place_needs_no_memory,
    },
    Test {
        name: "collapse::copy_without_memory_fails_cleanly",
        run: collapse::copy_without_memory_fails_cleanly,
    },
    Test {
        name: "folio::split_keeps_accounting_exact",
        run: folio::split_keeps_accounting_exact,
    },
    Test {
        name: "folio::low_memory_runs_the_shrinker",
        run: folio::low_memory_runs_the_shrinker,
    },
    Test {
        name: "folio::fully_unmapped_folio_leaves_the_queue",
        run: folio::fully_unmapped_folio_leaves_the_queue,
    },
    Test {
        name: "proc::kernel_thread_sleeps_and_is_reaped",
        run: proc::kernel_thread_sleeps_and_is_reaped,
    },
    Test {
        name: "proc::wait_queue_wakes_race_sleepers",
        run: proc::wait_queue_wakes_race_sleepers,
    },
    Test {
        name: "smp::all_cpus_online",
        run: smp::all_cpus_online,
    },
    Test {
        name: "smp::every_cpu_ticks",
        run: smp::every_cpu_ticks,
    },
    Test {
        name: "smp::ipi_reaches_every_cpu",
        run: smp::ipi_reaches_every_cpu,
    },
    Test {
        name: "smp::irq_safe_lock_masks_interrupts",
        run: smp::irq_safe_lock_masks_interrupts,
    },
];
