//! Boots the real kernel in the test-matrix cell given by the environment
//! (`CONTKERNEL_CPU`, `CONTKERNEL_SMP`, `CONTKERNEL_GIC`, `CONTKERNEL_EL`,
//! `CONTKERNEL_TIMEOUT`; see the crate documentation) and checks the console protocol.
//!
//! The kernel must be built first: `scripts/test.sh` builds it and runs this suite for
//! every cell. Each test boots its own QEMU; run at most two at once on a two-core
//! machine: `cargo test -p contkernel-tests --test kernel -- --test-threads=2`.

use contkernel_tests::Machine;

/// The banner's feature keys, all of which must be printed.
const FEATURE_KEYS: [&str; 6] = ["hafdbs", "bbm", "tlbi_range", "pan", "asid_bits", "pmu"];

/// The address `crashtest=unmapped-read` reads: the bottom of the kernel's upper half,
/// left unmapped.
const UNMAPPED_KERNEL_ADDRESS: &str = "0xffff800000000000";

#[test]
fn ktest_all_pass() {
    let out = Machine::from_env().append("ktest").boot();
    assert!(
        !out.timed_out,
        "the kernel did not finish its tests in time{out}"
    );
    assert!(!out.panicked(), "the kernel panicked{out}");
    let results = out.ktest_results();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(name, result)| {
            result
                .as_ref()
                .err()
                .map(|reason| format!("{name}: {reason}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failed in-kernel tests:\n  {}\n{out}",
        failures.join("\n  ")
    );
    let (passed, failed) = out
        .ktest_summary()
        .unwrap_or_else(|| panic!("no `<P> passed, <F> failed` line{out}"));
    assert_eq!(failed, 0, "the summary counts failures{out}");
    assert!(passed > 0, "no in-kernel test ran{out}");
    assert_eq!(
        passed as usize,
        results.len(),
        "the summary and the `... ok` lines disagree{out}"
    );
    assert_eq!(
        out.ktest_planned(),
        Some(passed),
        "`ktest: running <N> tests` and the summary disagree{out}"
    );
    assert_eq!(
        out.status,
        Some(0),
        "all tests passed, so the kernel must exit with status 0{out}"
    );
}

#[test]
fn banner_and_clean_poweroff() {
    let machine = Machine::from_env();
    let out = machine.boot();
    assert!(!out.timed_out, "the demo did not power off in time{out}");
    assert!(!out.panicked(), "the kernel panicked{out}");
    assert_eq!(
        out.status,
        Some(0),
        "the demo must end with a clean power-off{out}"
    );

    let banner = out.banner().unwrap_or_else(|why| panic!("{why}{out}"));
    assert_eq!(
        banner.mib,
        mem_mib(&machine.mem),
        "RAM size (from the device tree){out}"
    );
    assert_eq!(
        banner.cpus_total, machine.smp,
        "CPUs in the device tree{out}"
    );
    assert_eq!(
        banner.cpus_online, machine.smp,
        "every CPU must come online{out}"
    );
    assert_eq!(banner.gic, machine.gic, "GIC version{out}");
    assert_eq!(banner.el, machine.entry_el(), "entry exception level{out}");
    assert!(
        banner.emulated_ms.is_some(),
        "no `contkernel: banner at <float> ms emulated` line{out}"
    );
    for key in FEATURE_KEYS {
        assert!(
            banner.features.contains_key(key),
            "the features line lacks `{key}=`{out}"
        );
    }

    // What QEMU's CPU models implement (checked against QEMU 7.2 and 10.x: -cpu max has
    // HAFDBS, range TLBI and BBM level 2, cortex-a72 none of them); other models are not pinned.
    let expected: &[(&str, &str)] = match machine.cpu.as_str() {
        "max" => &[("hafdbs", "af+dirty"), ("tlbi_range", "yes"), ("bbm", "2")],
        "cortex-a72" => &[
            ("hafdbs", "none"),
            ("tlbi_range", "no"),
            ("bbm", "0"),
            ("pan", "no"),
        ],
        _ => &[],
    };
    for (key, value) in expected {
        assert_eq!(
            banner.features[*key], *value,
            "feature `{key}` on -cpu {}{out}",
            machine.cpu
        );
    }
}

#[test]
fn deliberate_fault_is_reported() {
    let out = Machine::from_env().append("crashtest=unmapped-read").boot();
    assert!(
        !out.timed_out,
        "the kernel hung instead of reporting the fault{out}"
    );
    assert_eq!(
        out.status,
        Some(101),
        "a fault must end in a panic, exit status 101{out}"
    );

    let report = out
        .fault_report()
        .unwrap_or_else(|| panic!("no `fault:` lines{out}"));
    let text = report.join("\n");
    assert!(
        text.contains("Data abort"),
        "the report must name the exception class{out}"
    );
    assert!(
        text.contains("Translation fault"),
        "the report must decode the FSC{out}"
    );
    let normalized = text.to_ascii_lowercase().replace('_', "");
    assert!(
        normalized.contains(UNMAPPED_KERNEL_ADDRESS),
        "the report must give FAR {UNMAPPED_KERNEL_ADDRESS}{out}"
    );

    let panic = out
        .panic()
        .unwrap_or_else(|| panic!("no `panic on cpu<N>:` line after the fault{out}"));
    let last_fault_line = out
        .lines()
        .iter()
        .rposition(|line| line.trim_start().starts_with("fault:"));
    assert!(
        last_fault_line.is_some_and(|fault| panic.line > fault),
        "the panic line must follow the fault report{out}"
    );
}

/// `-m` sizes in MiB: `1G` → 1024, `512M` → 512 (QEMU's default unit is MiB).
fn mem_mib(mem: &str) -> u64 {
    let (digits, unit) = mem.split_at(mem.find(|c: char| !c.is_ascii_digit()).unwrap_or(mem.len()));
    let number: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("memory size {mem:?}"));
    match unit {
        "" | "M" | "m" => number,
        "G" | "g" => number * 1024,
        _ => panic!("memory size {mem:?}: use M or G"),
    }
}

/// The page-table checker is on in the test build: a contiguous block corrupted behind
/// the layer's back (`crashtest=ptcheck`) is stopped at the next operation on it, with
/// the rule, the operation, its caller and a dump of the 16 entries.
#[test]
fn page_table_checker_is_live() {
    // contpte=on last: the corruption needs a folded block, whatever the cell's mode.
    let out = Machine::from_env()
        .append("crashtest=ptcheck contpte=on")
        .boot();
    assert!(!out.timed_out, "the kernel hung{out}");
    assert_eq!(out.status, Some(101), "expected a panic (status 101){out}");
    let console = &out.console;
    for needle in [
        "pgtable checker: misprogrammed contiguous block: output addresses not consecutive",
        "operation ClearYoungDirty",
        "called at kernel/src/ktest/pgtable.rs",
        "block at VirtAddr(0x100000):",
        "[15] VirtAddr(0x10f000)",
    ] {
        assert!(
            console.contains(needle),
            "checker report lacks `{needle}`{out}"
        );
    }
}

/// Words the kernel does not know, Linux's usual ones among them, are reported and
/// ignored: before the kernel heap exists, so the report must not allocate.
#[test]
fn unknown_boot_words_are_reported_and_ignored() {
    let out = Machine::from_env()
        .append("foo=bar bareword console=ttyAMA0 quiet panic=-1 rootwait earlycon")
        .boot();
    assert!(!out.timed_out, "the kernel hung{out}");
    assert!(!out.panicked(), "the kernel panicked{out}");
    assert_eq!(out.status, Some(0), "expected a clean power-off{out}");
    for word in ["foo", "bareword", "earlycon"] {
        assert!(
            out.console.contains(&format!(
                "unknown boot option {word} (ignored; known: loglevel "
            )),
            "no report of the unknown word `{word}`{out}"
        );
    }
}

/// A panic early in boot (before the heap) still ends QEMU with the panic's status,
/// not a power-off's 0: semihosting is probed first.
#[test]
fn early_panic_exits_with_its_status() {
    let out = Machine::from_env().append("crashtest=early").boot();
    assert!(!out.timed_out, "the kernel hung{out}");
    assert!(out.panicked(), "expected a panic{out}");
    assert_eq!(
        out.status,
        Some(101),
        "a panic must exit with status 101{out}"
    );
}

/// `ktest=FILTER` that matches no test is an error, not "0 passed, 0 failed".
#[test]
fn ktest_filter_matching_nothing_fails() {
    let out = Machine::from_env().append("ktest=nosuchtest").boot();
    assert!(!out.timed_out, "the kernel hung{out}");
    assert!(
        out.console
            .contains("ktest: no test name contains \"nosuchtest\""),
        "no message for the empty selection{out}"
    );
    assert_eq!(out.status, Some(1), "an empty selection must fail{out}");
}
