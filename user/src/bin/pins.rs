//! Pinned pages and copy-on-write, on contkernel and on Linux (`scripts/linux.sh --
//! pins`): vmsplice hands a pipe the user's pages themselves (pinned, `mm::pin`), so
//! what the pipe gives back must be what the pinning process's page holds, never
//! what another process wrote (CVE-2020-29374). Each test runs for 4 KiB pages and
//! 16 KiB, 64 KiB and 2 MiB folios (only that size `always`), on a region of one
//! folio (at least 64 KiB) aligned to its size and filled with a pattern; a pipe holds
//! 16 pages, so at most 64 KiB of it goes in.
//!
//! `sees_later_writes`: vmsplice, then the same process overwrites the region: the
//! pipe reads the new bytes (the pages were pinned, not copied).
//!
//! `before_fork_child_writes` (`cow`'s "vmsplice() before fork(), unmap in parent
//! after fork()"): vmsplice, fork, the child overwrites the region and exits, the
//! parent unmaps it: the pipe reads the old bytes (fork copied the pinned pages for the
//! child instead of sharing them).
//!
//! `after_fork_child_writes` ("vmsplice() + unmap in parent after fork()"): fork, the
//! parent vmsplices (the read-only pin unshares the pages first), the child overwrites
//! the region, the parent unmaps it: the old bytes.
//!
//! `in_child_parent_writes` ("vmsplice() + unmap in child"): fork, the child vmsplices
//! and unmaps, the parent overwrites the region: the child's pipe reads the old bytes.
//!
//! `outlives_the_writer`: a child vmsplices, writes the region again and exits: the
//! parent reads the child's last bytes from the pipe after the child is gone.
//!
//! `gup_test` (where /sys/kernel/debug/gup_test exists: contkernel; Debian's Linux is
//! built without it): after fork, a long-term read-only pin through
//! PIN_LONGTERM_TEST_START, a write through the page tables, PIN_LONGTERM_TEST_READ
//! reads it (the pin unshared the page); STOP; a second START while one is held is
//! EINVAL, an unaligned range EINVAL.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use rt::fs;
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::pipe::pipe2;
use rt::proc;
use rt::sys::{nr, Errno};
use rt::test::{Context, Fail, Outcome, Suite};
use rt::text::Text;
use rt::thp;
use rt::time::{nanosleep, Timespec};
use rt::{ensure, println};

rt::entry!(main);

const RW: usize = PROT_READ | PROT_WRITE;
/// What one pipe holds: 16 pages.
const PIPE: usize = 16 * PAGE;
const OLD: u8 = 0x5a;
const NEW: u8 = 0xff;
/// Folio sizes tried, in KiB (4: no large folio).
const SIZES_KB: [usize; 4] = [4, 16, 64, 2048];

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("pins");
    let Some(sc) = thp::Scenario::begin("pins", &mut t) else {
        return t.finish();
    };
    for kb in SIZES_KB {
        if let Err(e) = thp::only(if kb == 4 { 0 } else { kb }) {
            t.report("set_policy", Err(e.into()));
            continue;
        }
        t.run(name("sees_later_writes", kb).as_str(), || {
            sees_later_writes(kb)
        });
        t.run(name("before_fork_child_writes", kb).as_str(), || {
            spliced_then_written(kb, Order::BeforeFork)
        });
        t.run(name("after_fork_child_writes", kb).as_str(), || {
            spliced_then_written(kb, Order::AfterFork)
        });
        t.run(name("in_child_parent_writes", kb).as_str(), || {
            in_child_parent_writes(kb)
        });
        t.run(name("outlives_the_writer", kb).as_str(), || {
            outlives_the_writer(kb)
        });
    }
    t.run("gup_test", gup_test);
    sc.end(t)
}

/// `test_<kb>k`.
fn name(test: &str, kb: usize) -> Text<48> {
    let mut t = Text::default();
    let _ = write!(t, "{test}_{kb}k");
    t
}

/// A region of one folio of `kb` KiB (at least 64 KiB), aligned to it, filled with OLD.
fn filled(kb: usize) -> Result<Region, Fail> {
    let len = (kb << 10).max(PIPE);
    let r = Region::anon_aligned(len, len, RW).ctx("mmap")?;
    r.fill(0, len, OLD);
    Ok(r)
}

/// vmsplice of the first 64 KiB of `r` into `w`; the bytes taken.
fn splice(w: usize, r: &Region) -> Result<usize, Fail> {
    let iov = [[r.addr, PIPE]];
    // SAFETY: the iovec names the region, mapped and readable.
    let n: usize = unsafe { rt::syscall!(nr::VMSPLICE, w, iov.as_ptr(), 1, 0) }.ctx("vmsplice")?;
    ensure!(n == PIPE, "vmsplice took {n} bytes of {PIPE}");
    Ok(n)
}

/// Read `n` bytes from `fd` into a scratch region; whether every byte is `want`.
fn drain(fd: usize, n: usize, want: u8) -> Result<bool, Fail> {
    let buf = Region::anon(n, RW, 0).ctx("mmap")?;
    let mut done = 0;
    while done < n {
        // SAFETY: the scratch region is this program's, mapped read-write, and no
        // Rust reference points into it (`Region`).
        let dst =
            unsafe { core::slice::from_raw_parts_mut((buf.addr + done) as *mut u8, n - done) };
        let k = fs::read(fd, dst).ctx("read the pipe")?;
        ensure!(k > 0, "the pipe ended after {done} bytes of {n}");
        done += k;
    }
    Ok(buf.find_not(0, n, want).is_none())
}

fn sees_later_writes(kb: usize) -> Outcome {
    let r = filled(kb)?;
    let (rd, w) = pipe2(0).ctx("pipe2")?;
    let n = splice(w, &r)?;
    r.fill(0, PIPE, NEW);
    let seen = drain(rd, n, NEW)?;
    fs::close(rd).ctx("close")?;
    fs::close(w).ctx("close")?;
    ensure!(
        seen,
        "the pipe gave the bytes of before the write: a copy, not the page"
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    BeforeFork,
    AfterFork,
}

/// vmsplice before or after fork in the parent; the child overwrites the region and
/// exits; the parent unmaps it and reads the pipe: the old bytes.
fn spliced_then_written(kb: usize, order: Order) -> Outcome {
    let r = filled(kb)?;
    let (rd, w) = pipe2(0).ctx("pipe2")?;
    let mut n = 0;
    if order == Order::BeforeFork {
        n = splice(w, &r)?;
    }
    let (go_r, go_w) = pipe2(0).ctx("pipe2")?;
    let child = proc::spawn(|| {
        // Wait until the parent has spliced.
        let mut b = [0u8];
        let _ = fs::read(go_r, &mut b);
        r.fill(0, r.len, NEW);
        0
    })
    .ctx("fork")?;
    if order == Order::AfterFork {
        n = splice(w, &r)?;
    }
    fs::write(go_w, b"g").ctx("write")?;
    let st = proc::wait(child).ctx("wait")?;
    ensure!(st.exited() && st.exit_status() == 0, "child {st}");
    r.unmap(0, r.len).ctx("munmap")?;
    core::mem::forget(r);
    let old = drain(rd, n, OLD)?;
    for fd in [rd, w, go_r, go_w] {
        fs::close(fd).ctx("close")?;
    }
    ensure!(old, "the child's write leaked into the parent's pipe");
    Ok(())
}

/// The child vmsplices and unmaps; the parent overwrites; the child's pipe reads the
/// old bytes (its exit status says).
fn in_child_parent_writes(kb: usize) -> Outcome {
    let r = filled(kb)?;
    let (ready_r, ready_w) = pipe2(0).ctx("pipe2")?;
    let (go_r, go_w) = pipe2(0).ctx("pipe2")?;
    let child = proc::spawn(|| {
        let Ok((rd, w)) = pipe2(0) else { return 2 };
        let iov = [[r.addr, PIPE]];
        // SAFETY: the iovec names the region, mapped and readable.
        let n: Result<usize, Errno> = unsafe { rt::syscall!(nr::VMSPLICE, w, iov.as_ptr(), 1, 0) };
        let Ok(n) = n else { return 3 };
        if r.unmap(0, r.len).is_err() {
            return 4;
        }
        let _ = fs::write(ready_w, b"r");
        let mut b = [0u8];
        let _ = fs::read(go_r, &mut b);
        match drain(rd, n, OLD) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(_) => 5,
        }
    })
    .ctx("fork")?;
    let mut b = [0u8];
    fs::read(ready_r, &mut b).ctx("read")?;
    r.fill(0, r.len, NEW);
    fs::write(go_w, b"g").ctx("write")?;
    let st = proc::wait(child).ctx("wait")?;
    for fd in [ready_r, ready_w, go_r, go_w] {
        fs::close(fd).ctx("close")?;
    }
    ensure!(
        st.exited() && st.exit_status() == 0,
        "child {st} (1: the parent's write leaked into the child's pipe)"
    );
    Ok(())
}

/// A child vmsplices, writes NEW over the region and exits; the parent reads NEW.
fn outlives_the_writer(kb: usize) -> Outcome {
    let (rd, w) = pipe2(0).ctx("pipe2")?;
    let child = proc::spawn(|| {
        let Ok(r) = filled(kb) else { return 2 };
        if splice(w, &r).is_err() {
            return 3;
        }
        r.fill(0, PIPE, NEW);
        0
    })
    .ctx("fork")?;
    let st = proc::wait(child).ctx("wait")?;
    ensure!(st.exited() && st.exit_status() == 0, "child {st}");
    let seen = drain(rd, PIPE, NEW)?;
    fs::close(rd).ctx("close")?;
    fs::close(w).ctx("close")?;
    ensure!(seen, "the pipe lost the child's last write");
    Ok(())
}

/// `_IOW('g', 7, struct pin_longterm_test)`, `_IO('g', 8)`, `_IOW('g', 9, __u64)`.
const PIN_LONGTERM_TEST_START: usize = 0x4018_6707;
const PIN_LONGTERM_TEST_STOP: usize = 0x6708;
const PIN_LONGTERM_TEST_READ: usize = 0x4008_6709;

fn ioctl(fd: usize, req: usize, arg: usize) -> Result<usize, Errno> {
    // SAFETY: `arg` points at this program's memory as `req` needs it.
    unsafe { rt::syscall!(nr::IOCTL, fd, req, arg) }
}

fn gup_test() -> Outcome {
    let fd = match fs::openat(fs::AT_FDCWD, c"/sys/kernel/debug/gup_test", fs::O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) => {
            ensure!(!thp::on_contkernel(), "open gup_test: {e:?}");
            println!("pins: gup_test: not on this kernel ({e:?}), skipped");
            return Ok(());
        }
    };
    let r = filled(64)?;
    let child = proc::spawn(|| {
        let _ = nanosleep(&Timespec::from_ms(200));
        0
    })
    .ctx("fork")?;
    // The pages are shared with the child: the read-only pin unshares them.
    let args: [u64; 3] = [r.addr as u64, PIPE as u64, 0];
    ioctl(fd, PIN_LONGTERM_TEST_START, args.as_ptr() as usize).ctx("START")?;
    let again = ioctl(fd, PIN_LONGTERM_TEST_START, args.as_ptr() as usize);
    r.fill(0, PIPE, NEW);
    let out = Region::anon(PIPE, RW, 0).ctx("mmap")?;
    let to = out.addr as u64;
    ioctl(fd, PIN_LONGTERM_TEST_READ, &to as *const u64 as usize).ctx("READ")?;
    ioctl(fd, PIN_LONGTERM_TEST_STOP, 0).ctx("STOP")?;
    let unaligned: [u64; 3] = [r.addr as u64 + 1, PAGE as u64, 0];
    let bad = ioctl(fd, PIN_LONGTERM_TEST_START, unaligned.as_ptr() as usize);
    fs::close(fd).ctx("close")?;
    let st = proc::wait(child).ctx("wait")?;
    ensure!(st.exited(), "child {st}");
    ensure!(
        again.err() == Some(Errno::EINVAL),
        "a second START: {again:?}"
    );
    ensure!(
        bad.err() == Some(Errno::EINVAL),
        "an unaligned START: {bad:?}"
    );
    ensure!(
        out.find_not(0, PIPE, NEW).is_none(),
        "the long-term pin does not see the write"
    );
    Ok(())
}
