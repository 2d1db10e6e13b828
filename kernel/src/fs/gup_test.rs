//! /sys/kernel/debug/gup_test: Linux's test interface for pins (`mm/gup_test.c`,
//! CONFIG_GUP_TEST), as far as its mm selftests use it: `cow`'s long-term pin tests
//! pin a range with PIN_LONGTERM_TEST_START, write it through the page tables, read it
//! back through the pins with PIN_LONGTERM_TEST_READ and drop them with
//! PIN_LONGTERM_TEST_STOP (or close). The pins are `mm::pin`'s, read-only unless
//! PIN_LONGTERM_TEST_FLAG_USE_WRITE; "fast" (GUP-fast, Linux's lockless walk) takes the
//! same path here. The GUP benchmarks and dumps of the `gup_test` program are EINVAL.
//! Debian's kernels are built without this file, so on the Linux peers `cow` skips
//! these tests.
//!
//! One open file holds one set of pins (Linux's `gup_test_data`); the frames of all
//! open files' pins together are bounded by `MAX_PINNED` (ENOMEM past it), so a
//! program cannot make the kernel keep lists in proportion to what it asks.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::caller::with_mm;
use super::{Stream, O_RDWR};
use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::arch::aarch64::uaccess::{copy_to_user, read_user};
use crate::mm::{pin, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::sync::SpinLock;
use crate::uapi::{Errno, EBUSY, EFAULT, EINVAL, ENOMEM};

pub const PATH: &str = "/sys/kernel/debug/gup_test";

/// `_IOW('g', 7, struct pin_longterm_test)` (24 bytes), `_IO('g', 8)`, `_IOW('g', 9, u64)`.
const PIN_LONGTERM_TEST_START: u64 = 0x4018_6707;
const PIN_LONGTERM_TEST_STOP: u64 = 0x6708;
const PIN_LONGTERM_TEST_READ: u64 = 0x4008_6709;
const FLAG_USE_WRITE: u32 = 1;
const FLAG_USE_FAST: u32 = 2;

/// Pages all open gup_test files may hold pinned at once (64 MiB: a 32 MiB hugetlb
/// page of `cow` twice over).
const MAX_PINNED: usize = 16384;
static PINNED: AtomicUsize = AtomicUsize::new(0);

/// struct pin_longterm_test.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct PinLongtermTest {
    addr: u64,
    size: u64,
    flags: u32,
    _pad: u32,
}

/// An open /sys/kernel/debug/gup_test.
pub struct GupTest {
    held: SpinLock<Held>,
}

/// What one open file holds. An ioctl that pins or reads works with the lock
/// released (it faults and takes the `Mm` lock) and marks the set `Busy` meanwhile;
/// another ioctl on the same file then gets EBUSY (Linux waits on a mutex).
enum Held {
    Idle,
    Pinned(Vec<PhysAddr>),
    Busy,
}

/// open(): a file of its own.
pub fn open() -> super::File {
    super::File::Stream(Arc::new(GupTest {
        held: SpinLock::new(Held::Idle),
    }))
}

/// Unpin `pages` and give their room back.
fn release(pages: Vec<PhysAddr>) {
    let n = pages.len();
    for pa in pages {
        pin::unpin(pa);
    }
    PINNED.fetch_sub(n, Ordering::Relaxed);
}

impl GupTest {
    /// Take the held set out, leaving `Busy`.
    fn take(&self) -> Result<Held, Errno> {
        let mut h = self.held.lock();
        match *h {
            Held::Busy => Err(EBUSY),
            _ => Ok(core::mem::replace(&mut *h, Held::Busy)),
        }
    }

    fn put(&self, h: Held) {
        *self.held.lock() = h;
    }

    /// PIN_LONGTERM_TEST_START: Linux's checks (a set already held, unknown flags, an
    /// unaligned or empty range: EINVAL), then pin every page or none.
    fn start(&self, arg: u64) -> Result<u64, Errno> {
        let old = self.take()?;
        let r = match old {
            Held::Idle => self.pin(arg),
            _ => Err(EINVAL),
        };
        match r {
            Ok(pages) => {
                self.put(Held::Pinned(pages));
                Ok(0)
            }
            Err(e) => {
                self.put(old);
                Err(e)
            }
        }
    }

    fn pin(&self, arg: u64) -> Result<Vec<PhysAddr>, Errno> {
        let args: PinLongtermTest = read_user(arg as usize).map_err(|_| EFAULT)?;
        if args.flags & !(FLAG_USE_WRITE | FLAG_USE_FAST) != 0
            || !(args.addr | args.size).is_multiple_of(PAGE_SIZE as u64)
            || args.size > i64::MAX as u64
            || args.size == 0
        {
            return Err(EINVAL);
        }
        let n = (args.size / PAGE_SIZE as u64) as usize;
        if PINNED.fetch_add(n, Ordering::Relaxed) + n > MAX_PINNED {
            PINNED.fetch_sub(n, Ordering::Relaxed);
            return Err(ENOMEM);
        }
        let mut pages = vec![PhysAddr::new(0); n];
        let write = args.flags & FLAG_USE_WRITE != 0;
        let got = with_mm(|mm| match mm {
            Some(mm) => pin_all(mm, VirtAddr(args.addr), &mut pages, write),
            None => Err(EFAULT),
        });
        match got {
            Ok(()) => Ok(pages),
            Err(e) => {
                PINNED.fetch_sub(n, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// PIN_LONGTERM_TEST_READ: every pinned page, in order, to the user buffer whose
    /// address `arg` points to.
    fn read(&self, arg: u64) -> Result<u64, Errno> {
        let h = self.take()?;
        let r = match &h {
            Held::Pinned(pages) => copy_out(pages, arg),
            _ => Err(EINVAL),
        };
        self.put(h);
        r.map(|()| 0)
    }

    fn stop(&self) -> Result<u64, Errno> {
        if let Held::Pinned(p) = self.take()? {
            release(p);
        }
        self.put(Held::Idle);
        Ok(0)
    }
}

/// The pinned `pages` to the user buffer whose address is at `arg`.
fn copy_out(pages: &[PhysAddr], arg: u64) -> Result<(), Errno> {
    let mut to: u64 = read_user(arg as usize).map_err(|_| EFAULT)?;
    let mut buf = vec![0u8; PAGE_SIZE];
    for &pa in pages {
        pin::read_pinned(&KernelMachine, pa, &mut buf);
        copy_to_user(to as usize, &buf).map_err(|_| EFAULT)?;
        to = to.wrapping_add(PAGE_SIZE as u64);
    }
    Ok(())
}

/// Pin all of `pages.len()` pages from `start`, or none (Linux's loop over
/// `pin_user_pages` stops, and drops what it has, at the first error).
fn pin_all(
    mm: &mut crate::arch::aarch64::mm::machine::Mm,
    start: VirtAddr,
    pages: &mut [PhysAddr],
    write: bool,
) -> Result<(), Errno> {
    let mut done = 0;
    while done < pages.len() {
        let at = VirtAddr(start.as_u64() + (done * PAGE_SIZE) as u64);
        match mm.pin_pages(at, &mut pages[done..], write) {
            Ok(k) => done += k,
            Err(e) => {
                for &pa in &pages[..done] {
                    pin::unpin(pa);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

impl Drop for GupTest {
    fn drop(&mut self) {
        if let Held::Pinned(p) = core::mem::replace(&mut *self.held.lock(), Held::Idle) {
            release(p);
        }
    }
}

impl Stream for GupTest {
    fn read(&self, _buf: u64, _count: u64) -> Result<u64, Errno> {
        Err(EINVAL)
    }

    fn write(&self, _buf: u64, _count: u64) -> Result<u64, Errno> {
        Err(EINVAL)
    }

    fn ioctl(&self, req: u64, arg: u64) -> Result<u64, Errno> {
        match req {
            PIN_LONGTERM_TEST_START => self.start(arg),
            PIN_LONGTERM_TEST_READ => self.read(arg),
            PIN_LONGTERM_TEST_STOP => self.stop(),
            _ => Err(EINVAL),
        }
    }

    fn poll(&self) -> u16 {
        0
    }

    fn status(&self) -> u64 {
        O_RDWR
    }

    fn set_nonblock(&self, _on: bool) {}

    fn mode(&self) -> u32 {
        // debugfs: a regular file, root's only.
        0o100600
    }
}
