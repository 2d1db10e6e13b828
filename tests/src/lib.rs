//! # Host-side test harness for contkernel
//!
//! The kernel is a bare-metal AArch64 ELF; this crate runs it the only way it can run on
//! a build machine, under `qemu-system-aarch64 -M virt`, and reads what it prints.
//!
//! - [`Machine`] says which machine to boot (CPU model, CPU count, memory, GIC version,
//!   entry exception level, kernel command line) and boots it with a hard timeout: the
//!   QEMU child is killed when the timeout passes, so no test can hang.
//! - [`Outcome`] is what came back: exit status, whether the timeout fired, the console
//!   (QEMU's stdout, which carries only the PL011 UART) and QEMU's own stderr, kept apart.
//!   Its parsers read the kernel's console protocol (below), and its `Display` shows the
//!   command and the last console lines: put it in every assertion message, so a failing
//!   test shows what the kernel said.
//!
//! `scripts/test.sh` builds the test kernel and the initramfs, then runs
//! `cargo test -p contkernel-tests` once per cell of the test matrix, describing the
//! cell in environment variables that [`Machine::from_env`] reads. Run without them
//! (a plain `cargo test` at the root), the harness builds the test kernel and the
//! initramfs itself ([`kernel_elf`], [`initramfs`]) and runs the default cell:
//!
//! | variable             | meaning                                        | default |
//! |----------------------|------------------------------------------------|------------------------------------------------------------|
//! | `CONTKERNEL_ELF`     | kernel ELF (relative: from the workspace root) | the test build, built on first use |
//! | `CONTKERNEL_CPU`     | QEMU `-cpu` model                              | `max` |
//! | `CONTKERNEL_SMP`     | number of CPUs                                 | `1` |
//! | `CONTKERNEL_GIC`     | GIC version, `2` or `3`                        | `2` |
//! | `CONTKERNEL_EL`      | entry exception level, `1` or `2`              | `1` |
//! | `CONTKERNEL_TIMEOUT` | seconds before QEMU is killed                  | `60` |
//! | `CONTKERNEL_QEMU`    | QEMU binary                                    | `qemu-system-aarch64` |
//! | `CONTKERNEL_INITRD`  | cpio initramfs for the user-space tests (relative: from the workspace root) | built on first use |
//! | `CONTKERNEL_APPEND`  | kernel command-line words for every boot (e.g. `contpte=off`) | none |
//!
//! Each QEMU may use several host threads and the machine has two cores, so run the
//! integration tests two at a time: `cargo test -p contkernel-tests -- --test-threads=2`.
//!
//! ## The console protocol
//!
//! What the kernel prints and this crate parses (see [`protocol`] for the details):
//!
//! ```text
//! contkernel: 1024 MiB RAM, 2/2 CPUs online, entered at EL1, GICv3
//! contkernel: features: hafdbs=af+dirty bbm=2 tlbi_range=yes pan=yes asid_bits=16 pmu=v3p5
//! contkernel: banner at 12.5 ms emulated
//! ktest: running 2 tests                       (only with `ktest` or `ktest=<filter>`)
//! ktest: mm::frames::alloc_free ... ok
//! ktest: mm::contig::fold ... FAILED: entry 3 lacks the contiguous bit
//! 1 passed, 1 failed                           (then semihosting exit 0 if none failed, else 1)
//! fault: cpu0 EL1 synchronous exception: Data abort from the same EL (EC 0x25)
//! fault:   FSC 0x07 Translation fault, level 3 (read); FAR 0xffff800000000000
//! panic on cpu0: <message>                     (then semihosting exit 101)
//! ```
//!
//! Without `ktest` or `crashtest=...` the kernel runs its demo and powers off (status 0).

mod machine;
mod outcome;
pub mod protocol;

pub use machine::{
    initramfs, initrd_addr, kernel_elf, mem_bytes, workspace_root, BootError, Machine,
};
pub use outcome::Outcome;
pub use protocol::{Banner, Panic};
