//! Booting the kernel under QEMU, with a hard timeout.
//!
//! A [`Machine`] is one QEMU configuration. [`Machine::boot`] starts
//! `qemu-system-aarch64` with stdin on `/dev/null`, reads its stdout (the PL011 console:
//! `-nographic -serial stdio -monitor none` sends nothing else there) and its stderr on
//! two threads, so a full pipe can never stall QEMU, and polls the child until it exits or
//! the timeout passes; then the child is killed (SIGKILL) and reaped. The child is also
//! killed if the harness itself fails half-way, so no QEMU outlives its test.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Outcome;

/// How long a boot may take before QEMU is killed, unless `CONTKERNEL_TIMEOUT` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a running QEMU is checked for exit and for the deadline.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The kernel ELF to boot: `CONTKERNEL_ELF` if set (a relative path is taken from the
/// workspace root, since `cargo test` runs tests in the crate's own directory), else the
/// test build (`--features ktest`), built here on first use — what `scripts/test.sh`
/// builds too, so that a plain `cargo test` at the root boots the right kernel.
pub fn kernel_elf() -> PathBuf {
    if let Some(path) = env_value("CONTKERNEL_ELF") {
        return workspace_root().join(path);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let dir = root.join("target/ktest");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args([
                    "build",
                    "-q",
                    "--release",
                    "-p",
                    "contkernel",
                    "--features",
                    "ktest",
                ])
                .args(["--target", KERNEL_TARGET, "--target-dir"])
                .arg(&dir)
                .status()
                .unwrap_or_else(|e| panic!("cannot run cargo to build the kernel: {e}"));
            assert!(status.success(), "building the test kernel failed");
            dir.join(KERNEL_TARGET).join("release/contkernel")
        })
        .clone()
}

/// The kernel's target triple.
const KERNEL_TARGET: &str = "aarch64-unknown-none-softfloat";

/// The initramfs of the user programs: `CONTKERNEL_INITRD` if set, else built here on
/// first use with `scripts/initramfs.sh` (with the glibc program when its compiler is
/// there).
pub fn initramfs() -> PathBuf {
    if let Some(path) = env_value("CONTKERNEL_INITRD") {
        return workspace_root().join(path);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let out = root.join("target/ktest/initramfs.cpio");
            let mut cmd = Command::new("bash");
            cmd.current_dir(&root)
                .arg("scripts/initramfs.sh")
                .arg(&out)
                .stdout(Stdio::null());
            if Command::new("aarch64-linux-gnu-gcc")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                cmd.arg("--with-c");
            }
            let status = cmd
                .status()
                .unwrap_or_else(|e| panic!("cannot run scripts/initramfs.sh: {e}"));
            assert!(status.success(), "scripts/initramfs.sh failed");
            out
        })
        .clone()
}

/// Where RAM starts on QEMU `virt`.
pub const RAM_BASE: u64 = 0x4000_0000;

/// Bytes of a memory size in QEMU's `-m` syntax: a number with an optional suffix
/// K, M (the default), G or T.
pub fn mem_bytes(mem: &str) -> Option<u64> {
    let mem = mem.trim();
    let (digits, unit) = match mem.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => mem.split_at(i),
        None => (mem, "M"),
    };
    let shift = match unit {
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The start of RAM no initramfs may overlap: the DTB, the kernel image and room for
/// the frame metadata (QEMU's loader refuses overlapping images with a raw dump).
pub const RAM_RESERVED: u64 = 32 << 20;

/// The alignment of the initramfs at the top of RAM.
const INITRD_ALIGN: u64 = 2 << 20;

/// Where an initramfs of `size` bytes goes in `mem` bytes of RAM: at the top, 2 MiB
/// aligned, so the rest of RAM stays one block whatever its size. None if it does not
/// fit above [`RAM_RESERVED`].
pub fn initrd_addr(mem: u64, size: u64) -> Option<u64> {
    let top = RAM_BASE.checked_add(mem)?;
    let addr = top.checked_sub(size.checked_next_multiple_of(INITRD_ALIGN)?)? & !(INITRD_ALIGN - 1);
    (addr >= RAM_BASE + RAM_RESERVED).then_some(addr)
}

/// The least RAM that holds an initramfs of `size` bytes: [`RAM_RESERVED`] below it.
pub fn min_mem_for_initrd(size: u64) -> u64 {
    RAM_RESERVED + size.next_multiple_of(INITRD_ALIGN)
}

/// One QEMU `virt` machine to boot the kernel on: a builder.
///
/// The fields are public so that a test can read the cell it runs in (for instance to
/// compare the kernel's banner with `smp`); the methods of the same names set them.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The ELF given to `-kernel`.
    pub kernel: PathBuf,
    /// QEMU `-cpu` model, e.g. `max`, `cortex-a72`.
    pub cpu: String,
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Memory size in QEMU's syntax (`-m`), e.g. `1G`, `512M`.
    pub mem: String,
    /// GIC version, 2 or 3 (`-M virt,gic-version=N`).
    pub gic: u8,
    /// Enter the kernel at EL2 (`-M virt,virtualization=on`) instead of EL1.
    pub el2: bool,
    /// Deterministic instruction counting: `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// Kernel command line (`-append`); empty means none.
    pub append: String,
    /// Let the kernel exit QEMU with a status through semihosting (`-semihosting`).
    pub semihosting: bool,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Further QEMU arguments, appended last.
    pub extra: Vec<String>,
    /// The QEMU binary.
    pub qemu: String,
    /// A cpio "newc" initramfs, placed at the top of RAM ([`initrd_addr`]) by QEMU's
    /// generic loader and announced to the kernel as `initrd=ADDR,SIZE` (an ELF kernel
    /// gets no `-initrd`).
    pub initrd: Option<PathBuf>,
}

impl Machine {
    /// A machine booting `kernel` with the defaults: `-cpu max`, one CPU, 1 GiB, GICv2,
    /// entry at EL1, semihosting on, no command line, a 60 s timeout.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Machine {
            kernel: kernel.into(),
            cpu: "max".into(),
            smp: 1,
            mem: "1G".into(),
            gic: 2,
            el2: false,
            icount: false,
            append: String::new(),
            semihosting: true,
            timeout: DEFAULT_TIMEOUT,
            extra: Vec::new(),
            qemu: "qemu-system-aarch64".into(),
            initrd: None,
        }
    }

    /// The machine of the current test-matrix cell: [`kernel_elf`] and the
    /// `CONTKERNEL_*` variables listed in the crate documentation (unset or empty
    /// variables keep the defaults of [`Machine::new`]).
    ///
    /// # Panics
    /// On a malformed variable, naming it: a wrong matrix must not run as the default cell.
    pub fn from_env() -> Self {
        let mut machine = Machine::new(kernel_elf());
        if let Some(cpu) = env_value("CONTKERNEL_CPU") {
            machine.cpu = cpu;
        }
        match env_parsed::<u32>("CONTKERNEL_SMP", "a CPU count") {
            None => {}
            Some(0) => panic!("CONTKERNEL_SMP=0: a machine needs at least one CPU"),
            Some(smp) => machine.smp = smp,
        }
        match env_parsed::<u8>("CONTKERNEL_GIC", "2 or 3") {
            None => {}
            Some(gic @ (2 | 3)) => machine.gic = gic,
            Some(other) => panic!("CONTKERNEL_GIC={other}: QEMU virt offers GICv2 or GICv3"),
        }
        match env_parsed::<u8>("CONTKERNEL_EL", "1 or 2") {
            None | Some(1) => {}
            Some(2) => machine.el2 = true,
            Some(other) => panic!("CONTKERNEL_EL={other}: the kernel is entered at EL1 or EL2"),
        }
        if let Some(secs) = env_parsed::<f64>("CONTKERNEL_TIMEOUT", "seconds") {
            machine.timeout = Duration::try_from_secs_f64(secs)
                .unwrap_or_else(|_| panic!("CONTKERNEL_TIMEOUT={secs}: not a duration in seconds"));
        }
        if let Some(qemu) = env_value("CONTKERNEL_QEMU") {
            machine.qemu = qemu;
        }
        if let Some(path) = env_value("CONTKERNEL_INITRD") {
            machine.initrd = Some(workspace_root().join(path));
        }
        if let Some(args) = env_value("CONTKERNEL_APPEND") {
            machine = machine.append(&args);
        }
        machine
    }

    /// Boots the user programs' initramfs: the one the cell names, else the one
    /// [`initramfs`] builds. Panics if the file is missing.
    pub fn with_user_initramfs(mut self) -> Self {
        let initrd = self.initrd.clone().unwrap_or_else(initramfs);
        assert!(initrd.exists(), "no initramfs at {}", initrd.display());
        self.initrd = Some(initrd);
        self
    }

    /// Sets the `-cpu` model.
    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self
    }

    /// Sets the number of CPUs. Panics on 0.
    pub fn smp(mut self, smp: u32) -> Self {
        assert!(smp > 0, "a machine needs at least one CPU");
        self.smp = smp;
        self
    }

    /// Sets the memory size, in QEMU's `-m` syntax.
    pub fn mem(mut self, mem: impl Into<String>) -> Self {
        self.mem = mem.into();
        self
    }

    /// Sets the GIC version. Panics unless it is 2 or 3.
    pub fn gic(mut self, version: u8) -> Self {
        assert!(
            matches!(version, 2 | 3),
            "GIC version {version}: QEMU virt offers 2 or 3"
        );
        self.gic = version;
        self
    }

    /// Enters the kernel at EL2 (`true`) or EL1 (`false`).
    pub fn el2(mut self, el2: bool) -> Self {
        self.el2 = el2;
        self
    }

    /// Turns deterministic instruction counting on or off.
    pub fn icount(mut self, icount: bool) -> Self {
        self.icount = icount;
        self
    }

    /// Adds words to the kernel command line (joined to what is there with a space).
    pub fn append(mut self, words: &str) -> Self {
        if !self.append.is_empty() && !words.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(words);
        self
    }

    /// Turns semihosting on or off.
    pub fn semihosting(mut self, on: bool) -> Self {
        self.semihosting = on;
        self
    }

    /// Sets the timeout after which QEMU is killed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds one raw QEMU argument, passed after all the others.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// The exception level the kernel is entered at: 1 or 2.
    pub fn entry_el(&self) -> u8 {
        if self.el2 {
            2
        } else {
            1
        }
    }

    /// The arguments given to QEMU, in order (without the program name).
    pub fn qemu_args(&self) -> Vec<OsString> {
        let mut board = format!("virt,gic-version={}", self.gic);
        if self.el2 {
            board.push_str(",virtualization=on");
        }
        let mut args: Vec<OsString> = Vec::new();
        let smp = self.smp.to_string();
        push(
            &mut args,
            &[
                "-M", &board, "-cpu", &self.cpu, "-smp", &smp, "-m", &self.mem,
            ],
        );
        // `-nographic` with the serial port and the monitor named explicitly: the PL011
        // goes to stdout, the monitor nowhere, so stdout carries the console and nothing
        // else, and QEMU needs no stdin.
        push(
            &mut args,
            &[
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ],
        );
        args.push("-kernel".into());
        args.push(self.kernel.clone().into_os_string());
        let mut append = self.append.clone();
        if let Some(initrd) = &self.initrd {
            // A missing file shows up as QEMU's own error; its size here is then 0. A
            // memory size too small for it (or unreadable) puts it at RAM's base, which
            // the kernel refuses with a clear message.
            let size = std::fs::metadata(initrd).map_or(0, |m| m.len());
            let addr = mem_bytes(&self.mem)
                .and_then(|mem| initrd_addr(mem, size))
                .unwrap_or(RAM_BASE);
            let mut loader = OsString::from("loader,file=");
            loader.push(initrd);
            loader.push(format!(",addr={addr:#x},force-raw=on"));
            args.push("-device".into());
            args.push(loader);
            append = format!("initrd={addr:#x},{size} {append}")
                .trim_end()
                .to_string();
        }
        if !append.is_empty() {
            push(&mut args, &["-append", &append]);
        }
        if self.semihosting {
            push(&mut args, &["-semihosting"]);
        }
        if self.icount {
            push(&mut args, &["-icount", "shift=0,sleep=off"]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        args
    }

    /// The QEMU command as one shell line, to rerun a cell by hand.
    pub fn command_line(&self) -> String {
        std::iter::once(OsString::from(&self.qemu))
            .chain(self.qemu_args())
            .map(|arg| shell_quote(&arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Boots the machine and waits for QEMU to exit or for the timeout.
    ///
    /// # Panics
    /// If QEMU cannot be run at all (missing kernel ELF, missing QEMU, I/O failure), with
    /// a message that says what to do. Use [`Machine::try_boot`] to handle that instead.
    #[track_caller]
    pub fn boot(&self) -> Outcome {
        match self.try_boot() {
            Ok(outcome) => outcome,
            Err(error) => panic!("{error}"),
        }
    }

    /// Whether the memory size is one QEMU reads and the initramfs fits in it: said
    /// before QEMU starts, with the minimum, instead of QEMU's "ROM regions are
    /// overlapping" dump.
    pub fn check_memory(&self) -> Result<(), BootError> {
        let Some(mem) = mem_bytes(&self.mem) else {
            return Err(BootError::Memory(format!(
                "memory size {:?}: a number with an optional K, M, G or T",
                self.mem
            )));
        };
        if let Some(initrd) = &self.initrd {
            let size = std::fs::metadata(initrd).map_or(0, |m| m.len());
            if initrd_addr(mem, size).is_none() {
                return Err(BootError::Memory(format!(
                    "-m {}: too small for the initramfs {} ({} KiB), which goes at the top of \
                     RAM above the first {} MiB (DTB, kernel image, frame metadata): use at \
                     least {}M",
                    self.mem,
                    initrd.display(),
                    size >> 10,
                    RAM_RESERVED >> 20,
                    min_mem_for_initrd(size) >> 20
                )));
            }
        }
        Ok(())
    }

    /// Boots the machine and waits for QEMU to exit or for the timeout.
    pub fn try_boot(&self) -> Result<Outcome, BootError> {
        if !self.kernel.is_file() {
            return Err(BootError::KernelMissing(self.kernel.clone()));
        }
        self.check_memory()?;
        let command = self.command_line();
        let start = Instant::now();
        let mut child = Command::new(&self.qemu)
            .args(self.qemu_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(KillOnDrop)
            .map_err(|error| BootError::Spawn {
                qemu: self.qemu.clone(),
                error,
            })?;
        let stdout = read_on_thread(child.0.stdout.take().expect("stdout is piped"));
        let stderr = read_on_thread(child.0.stderr.take().expect("stderr is piped"));
        let (status, timed_out) = child
            .wait_until(start + self.timeout)
            .map_err(BootError::Io)?;
        let wall = start.elapsed();
        Ok(Outcome {
            status: status.code(),
            timed_out,
            console: join_reader(stdout),
            stderr: join_reader(stderr),
            wall,
            command,
        })
    }
}

/// Why QEMU could not be run.
#[derive(Debug)]
pub enum BootError {
    /// The kernel ELF does not exist: it has not been built.
    KernelMissing(PathBuf),
    /// QEMU could not be started.
    Spawn { qemu: String, error: io::Error },
    /// Waiting for QEMU failed.
    Io(io::Error),
    /// The memory size is unreadable or too small for the initramfs.
    Memory(String),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::KernelMissing(path) => write!(
                f,
                "kernel ELF not found at {}: CONTKERNEL_ELF names a kernel that is not \
                 built (unset it to have the test kernel built, or run scripts/test.sh)",
                path.display()
            ),
            BootError::Spawn { qemu, error } => write!(
                f,
                "cannot start {qemu}: {error} (install it with `apt-get install \
                 qemu-system-arm`, or set CONTKERNEL_QEMU)"
            ),
            BootError::Io(error) => write!(f, "waiting for QEMU failed: {error}"),
            BootError::Memory(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BootError {}

/// A QEMU child that is killed and reaped if it is dropped while still running, so that
/// an early return or a panic in the harness cannot leave it behind.
struct KillOnDrop(Child);

impl KillOnDrop {
    /// Waits for the child to exit until `deadline`, then kills it. Returns the exit status
    /// and whether the deadline passed.
    fn wait_until(&mut self, deadline: Instant) -> io::Result<(ExitStatus, bool)> {
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok((status, false));
            }
            let now = Instant::now();
            if now >= deadline {
                // kill() fails only if the child has exited meanwhile; wait() reaps either way.
                let _ = self.0.kill();
                return Ok((self.0.wait()?, true));
            }
            thread::sleep(POLL_INTERVAL.min(deadline - now));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Drains `pipe` to its end on a thread of its own; the pipe ends when QEMU exits.
fn read_on_thread(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture; what was read so far is kept.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn join_reader(reader: JoinHandle<Vec<u8>>) -> String {
    let bytes = reader.join().expect("a pipe reader thread panicked");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn push(args: &mut Vec<OsString>, words: &[&str]) {
    args.extend(words.iter().map(OsString::from));
}

/// The value of an environment variable, with unset and empty treated alike.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn env_parsed<T: std::str::FromStr>(name: &str, expected: &str) -> Option<T> {
    env_value(name).map(|value| {
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: expected {expected}"))
    })
}

/// Quotes `word` for a POSIX shell when it needs quoting.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=,./:+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod placement {
    use super::*;

    #[test]
    fn memory_sizes_read_as_qemu_does() {
        assert_eq!(mem_bytes("1G"), Some(1 << 30));
        assert_eq!(mem_bytes("128M"), Some(128 << 20));
        assert_eq!(mem_bytes("512"), Some(512 << 20));
        assert_eq!(mem_bytes("2x"), None);
        assert_eq!(mem_bytes(""), None);
    }

    #[test]
    fn the_initramfs_sits_at_the_top_of_ram() {
        assert_eq!(initrd_addr(1 << 30, 5 << 20), Some(0x8000_0000 - (6 << 20)));
        assert_eq!(initrd_addr(128 << 20, 1), Some(0x4800_0000 - (2 << 20)));
        assert_eq!(
            initrd_addr(64 << 20, 40 << 20),
            None,
            "no room above 32 MiB"
        );
        assert_eq!(min_mem_for_initrd(40 << 20), 72 << 20);
        assert_eq!(initrd_addr(72 << 20, 40 << 20), Some(RAM_BASE + (32 << 20)));
    }

    #[test]
    fn a_memory_size_too_small_for_the_initramfs_is_refused_with_the_minimum() {
        let dir = std::env::temp_dir().join(format!("contkernel-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let initrd = dir.join("initrd.cpio");
        std::fs::write(&initrd, vec![0u8; 3 << 20]).unwrap();
        let mut m = Machine::new("kernel").mem("32M");
        m.initrd = Some(initrd.clone());
        let why = m.check_memory().unwrap_err().to_string();
        assert!(why.contains("use at least 36M"), "{why}");
        m.mem = "36M".into();
        assert!(m.check_memory().is_ok());
        m.mem = "lots".into();
        assert!(m.check_memory().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod tests {
    //! The QEMU plumbing, checked with tiny hand-assembled guests instead of the kernel:
    //! each boots in well under a second (the timeout test takes its one-second timeout).

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Where the guest image is loaded: above the DTB that QEMU puts at the start of RAM.
    const LOAD_ADDRESS: u64 = 0x4020_0000;

    /// What the guest does after printing its message.
    enum Then {
        /// Semihosting SYS_EXIT with this status.
        Exit(u32),
        /// Spin forever.
        Spin,
    }

    /// A minimal AArch64 ELF that writes `message` to the PL011 data register byte by
    /// byte, then exits or spins. Assembled with `llvm-mc -triple=aarch64`:
    ///
    /// ```text
    /// 0x00  movz x2, #0x900, lsl #16   // PL011 at 0x0900_0000
    /// 0x04  adr  x4, msg               // 0x38
    /// 0x08  1: ldrb w3, [x4], #1
    /// 0x0c  cbz  w3, 2f
    /// 0x10  strb w3, [x2]
    /// 0x14  b    1b
    /// 0x18  2: movz x0, #0x18          // SYS_EXIT (or `b .` to spin)
    /// 0x1c  adr  x1, block             // 0x28
    /// 0x20  hlt  #0xf000               // semihosting call
    /// 0x24  b    .
    /// 0x28  block: .quad 0x20026, STATUS   // ADP_Stopped_ApplicationExit
    /// 0x38  msg: .asciz MESSAGE
    /// ```
    fn guest_elf(message: &str, then: Then) -> Vec<u8> {
        const SPIN: u32 = 0x1400_0000;
        let mut code: [u32; 10] = [
            0xd2a1_2002,
            0x1000_01a4,
            0x3840_1483,
            0x3400_0063,
            0x3900_0043,
            0x17ff_fffd,
            0xd280_0300,
            0x1000_0061,
            0xd45e_0000,
            SPIN,
        ];
        let status = match then {
            Then::Exit(status) => status,
            Then::Spin => {
                code[6] = SPIN;
                0
            }
        };
        let mut image: Vec<u8> = code.iter().flat_map(|word| word.to_le_bytes()).collect();
        image.extend(0x20026u64.to_le_bytes());
        image.extend(u64::from(status).to_le_bytes());
        assert!(!message.contains('\0'));
        image.extend(message.as_bytes());
        image.push(0);

        // ELF64 header and one PT_LOAD segment holding the whole file, code right after them.
        const HEADERS: u64 = 64 + 56;
        let file_size = HEADERS + image.len() as u64;
        let mut elf = Vec::new();
        elf.extend(b"\x7fELF\x02\x01\x01\0"); // 64-bit, little-endian, version 1
        elf.extend([0u8; 8]);
        elf.extend(2u16.to_le_bytes()); // ET_EXEC
        elf.extend(183u16.to_le_bytes()); // EM_AARCH64
        elf.extend(1u32.to_le_bytes()); // EV_CURRENT
        elf.extend((LOAD_ADDRESS + HEADERS).to_le_bytes()); // e_entry
        elf.extend(64u64.to_le_bytes()); // e_phoff
        elf.extend(0u64.to_le_bytes()); // e_shoff
        elf.extend(0u32.to_le_bytes()); // e_flags
        for half in [64u16, 56, 1, 64, 0, 0] {
            // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
            elf.extend(half.to_le_bytes());
        }
        elf.extend(1u32.to_le_bytes()); // PT_LOAD
        elf.extend(5u32.to_le_bytes()); // PF_R | PF_X
        for word in [0, LOAD_ADDRESS, LOAD_ADDRESS, file_size, file_size, 0x1000] {
            // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            elf.extend(word.to_le_bytes());
        }
        elf.extend(image);
        elf
    }

    /// A guest ELF in a temporary file, removed on drop.
    struct GuestFile(PathBuf);

    impl GuestFile {
        fn new(message: &str, then: Then) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "contkernel-tests-guest-{}-{}.elf",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, guest_elf(message, then)).expect("write the guest ELF");
            GuestFile(path)
        }
    }

    impl Drop for GuestFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn exit_status_and_console_are_captured() {
        let transcript =
            "ktest: running 2 tests\nktest: a ... ok\nktest: b ... ok\n2 passed, 0 failed\n";
        let guest = GuestFile::new(transcript, Then::Exit(3));
        let out = Machine::new(&guest.0)
            .timeout(Duration::from_secs(20))
            .boot();
        assert_eq!(out.status, Some(3), "{out}");
        assert!(!out.timed_out, "{out}");
        assert_eq!(out.console, transcript, "{out}");
        assert_eq!(out.ktest_summary(), Some((2, 0)), "{out}");
        assert!(out.wall < Duration::from_secs(5), "{out}");
    }

    #[test]
    fn every_matrix_option_is_accepted_by_qemu() {
        let guest = GuestFile::new("contkernel: ok\n", Then::Exit(0));
        let out = Machine::new(&guest.0)
            .cpu("cortex-a72")
            .smp(2)
            .mem("256M")
            .gic(3)
            .el2(true)
            .icount(true)
            .append("ktest=mm loglevel=debug")
            .timeout(Duration::from_secs(20))
            .boot();
        assert_eq!(out.status, Some(0), "{out}");
        assert_eq!(out.console, "contkernel: ok\n", "{out}");
        assert_eq!(out.stderr, "", "{out}");
    }

    #[test]
    fn timeout_kills_a_spinning_guest() {
        let guest = GuestFile::new("spinning\n", Then::Spin);
        let timeout = Duration::from_secs(1);
        let out = Machine::new(&guest.0).timeout(timeout).boot();
        assert!(out.timed_out, "{out}");
        assert_eq!(
            out.status, None,
            "killed by a signal, so no exit code\n{out}"
        );
        assert!(out.wall >= timeout && out.wall < timeout * 4, "{out}");
        assert_eq!(
            out.console, "spinning\n",
            "output printed before the kill is kept\n{out}"
        );
        assert!(out.to_string().contains("timed out"), "{out}");
    }

    #[test]
    fn a_large_console_does_not_stall_qemu() {
        // Several times a pipe's 64 KiB: QEMU would block on a full pipe nobody reads.
        let line = "contkernel: filler line to fill the pipe buffer, 64 bytes long.\n";
        let message = line.repeat(4096);
        let guest = GuestFile::new(&message, Then::Exit(0));
        let out = Machine::new(&guest.0)
            .timeout(Duration::from_secs(20))
            .boot();
        assert_eq!(out.status, Some(0), "{out}");
        assert_eq!(out.console.len(), message.len(), "{out}");
    }

    #[test]
    fn missing_kernel_says_how_to_build_it() {
        let error = Machine::new("/nonexistent/contkernel")
            .try_boot()
            .unwrap_err();
        assert!(matches!(error, BootError::KernelMissing(_)));
        let message = error.to_string();
        assert!(message.contains("/nonexistent/contkernel"), "{message}");
        assert!(message.contains("scripts/test.sh"), "{message}");
    }

    #[test]
    fn missing_qemu_is_a_spawn_error() {
        let guest = GuestFile::new("", Then::Exit(0));
        let mut machine = Machine::new(&guest.0);
        machine.qemu = "/nonexistent/qemu-system-aarch64".into();
        let error = machine.try_boot().unwrap_err();
        assert!(matches!(error, BootError::Spawn { .. }), "{error}");
    }

    #[test]
    fn qemu_arguments_follow_the_builder() {
        let plain = Machine::new("/k").command_line();
        assert_eq!(
            plain,
            "qemu-system-aarch64 -M virt,gic-version=2 -cpu max -smp 1 -m 1G -nographic \
             -monitor none -serial stdio -no-reboot -kernel /k -semihosting"
        );
        let full = Machine::new("/k")
            .gic(3)
            .el2(true)
            .icount(true)
            .semihosting(false)
            .append("ktest")
            .append("loglevel=debug")
            .arg("-d")
            .arg("int")
            .command_line();
        assert_eq!(
            full,
            "qemu-system-aarch64 -M virt,gic-version=3,virtualization=on -cpu max -smp 1 -m 1G \
             -nographic -monitor none -serial stdio -no-reboot -kernel /k \
             -append 'ktest loglevel=debug' -icount shift=0,sleep=off -d int"
        );
    }

    #[test]
    #[should_panic(expected = "GIC version 4")]
    fn gic_version_is_checked() {
        let _ = Machine::new("/k").gic(4);
    }
}
