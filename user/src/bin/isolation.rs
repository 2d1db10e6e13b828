//! Isolation from EL0 (the Isolation promise; the ktests `mm::isolation_*` check the
//! same from the kernel side): every kind of kernel address, read, written or jumped
//! to by a child, kills that child with SIGSEGV, and handed to a system call as a
//! buffer gives EFAULT without the kernel reading or writing it on the caller's
//! behalf. The addresses are contkernel's kernel text, its device map (the PL011),
//! the first and last page of its linear map of 1 GiB of RAM, the top page of the
//! address space, the first address past the 48-bit user half and a non-canonical
//! one. On Linux 6.12 (KASLR, another layout) each is a kernel or unmapped address
//! too, with the same outcome: the same binary passes there.
#![no_std]
#![no_main]

use rt::proc::{self, BadAccess::*};
use rt::sys::nr;
use rt::test::{Context, Outcome, Suite};
use rt::text::Text;
use rt::{ensure, syscall, Errno};

rt::entry!(main);

/// Kernel-half addresses: each must fault from EL0 and be refused as a buffer.
const KERNEL: [(&str, usize); 5] = [
    ("kernel_text", 0xffff_0000_4020_0000),
    ("device_map", 0xffff_0000_0900_0000),
    ("linear_map_first", 0xffff_0000_4000_0000),
    ("linear_map_last", 0xffff_0000_7fff_f000),
    ("top_page", 0xffff_ffff_ffff_f000),
];
/// Addresses outside both halves: each must fault from EL0.
const OUTSIDE: [(&str, usize); 2] = [
    ("past_user_half", 0x0001_0000_0000_0000),
    ("non_canonical", 0x00ff_8000_0000_0000),
];

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("isolation");
    for (name, at) in KERNEL.iter().chain(OUTSIDE.iter()).copied() {
        let probe = |what: &str| Text::<48>::from_fmt(format_args!("{what}_{name}"));
        for (what, bad) in [("read", Read(at)), ("write", Write(at)), ("exec", Jump(at))] {
            t.run(probe(what).as_str(), || proc::expect_segv("isolation", bad));
        }
    }
    for (name, at) in KERNEL {
        let probe = Text::<48>::from_fmt(format_args!("syscall_buf_{name}"));
        t.run(probe.as_str(), || syscall_buf(at));
    }
    t.finish()
}

/// `read` into and `write` from `at`, and `uname` into it: EFAULT each, as on Linux
/// (the kernel must not store into its own memory for the caller).
fn syscall_buf(at: usize) -> Outcome {
    rt::thp::mount_pseudo_fs();
    let fd = rt::fs::openat(rt::fs::AT_FDCWD, c"/proc/meminfo", rt::fs::O_RDONLY, 0)
        .ctx("open /proc/meminfo")?;
    // SAFETY: the kernel must refuse the buffer; none of these touch this process's
    // memory.
    let (r, w, u) = unsafe {
        (
            syscall!(nr::READ, fd, at, 8),
            syscall!(nr::WRITE, 1, at, 8),
            syscall!(nr::UNAME, at),
        )
    };
    let _ = rt::fs::close(fd);
    for (call, got) in [("read", r), ("write", w), ("uname", u)] {
        ensure!(
            got == Err(Errno::EFAULT),
            "{call} with buffer {at:#x}: {got:?}"
        );
    }
    Ok(())
}
