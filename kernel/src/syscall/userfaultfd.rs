//! userfaultfd(2) and its descriptor (Linux's `mm/userfaultfd.c`, missing mode): the
//! UFFDIO_API handshake, UFFDIO_REGISTER / UNREGISTER, UFFDIO_COPY, ZEROPAGE and
//! WAKE, read(2) of fault messages and poll; the last close releases the context.
//! Arguments are checked in Linux's order with its errnos. The context and the wait
//! of a faulting thread are `proc::userfault`, the address-space side `mm::userfault`.

use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::aarch64::mm::machine::Mm;
use crate::arch::aarch64::uaccess::{
    copy_from_user, copy_to_user, is_user_range, read_user, write_user,
};
use crate::fs::{self, Stream, O_CLOEXEC, O_NONBLOCK, POLLERR, POLLIN};
use crate::mm::pgtable::USER_VA_END;
use crate::mm::userfault::{uffd_huge_abandon, Fill, FILL_PAGES};
use crate::mm::{VirtAddr, PAGE_SIZE};
use crate::proc::sched::me;
use crate::proc::userfault::{self, Ctx, Event};
use crate::uapi::*;

/// The features this kernel implements (UFFDIO_API reports them; others are EINVAL).
const FEATURES: u64 = UFFD_FEATURE_EVENT_FORK
    | UFFD_FEATURE_MISSING_HUGETLBFS
    | UFFD_FEATURE_MISSING_SHMEM
    | UFFD_FEATURE_THREAD_ID
    | UFFD_FEATURE_EXACT_ADDRESS;
/// UFFDIO_API's `ioctls`: the descriptor's own.
const API_IOCTLS: u64 = 1 << _UFFDIO_REGISTER | 1 << _UFFDIO_UNREGISTER | 1 << _UFFDIO_API;
/// UFFDIO_REGISTER's `ioctls`: those of a registered range.
const RANGE_IOCTLS: u64 = 1 << _UFFDIO_WAKE | 1 << _UFFDIO_COPY | 1 << _UFFDIO_ZEROPAGE;
/// Linux's TASK_SIZE.
const TASK_SIZE: u64 = USER_VA_END.0;
/// `struct uffd_msg`.
const MSG_SIZE: usize = 32;
const PAGE: u64 = PAGE_SIZE as u64;

/// userfaultfd(flags): O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY (the kernel's own
/// user accesses never wait here: they fail with EFAULT, with or without it).
pub fn userfaultfd(flags: u64) -> Result<u64, Errno> {
    let flags = flags as u32 as u64;
    if flags & !(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY) != 0 {
        return Err(EINVAL);
    }
    let t = me();
    install(userfault::new(&t.mm, flags & (O_CLOEXEC | O_NONBLOCK)))
}

/// A descriptor for `ctx` in the caller's table, with the context's O_CLOEXEC and
/// O_NONBLOCK (userfaultfd's, and a fork event's new descriptor).
fn install(ctx: Arc<Ctx>) -> Result<u64, Errno> {
    let cloexec = ctx.flags & O_CLOEXEC != 0;
    let file = fs::File::Stream(Arc::new(UffdFile {
        nonblock: AtomicBool::new(ctx.flags & O_NONBLOCK != 0),
        ctx,
    }));
    let fd = me().files.lock().install(file, 0, cloexec);
    fd
}

/// The open file description of a userfaultfd.
struct UffdFile {
    ctx: Arc<Ctx>,
    nonblock: AtomicBool,
}

/// The last close (Linux's `userfaultfd_release`): the address space forgets the
/// context, then the faults waiting go back to retry, unregistered.
impl Drop for UffdFile {
    fn drop(&mut self) {
        self.ctx.release();
    }
}

/// Linux's `validate_unaligned_range`.
fn validate_unaligned(start: u64, len: u64) -> Result<(), Errno> {
    if !len.is_multiple_of(PAGE) || len == 0 || start >= TASK_SIZE || len > TASK_SIZE - start {
        return Err(EINVAL);
    }
    Ok(())
}

/// Linux's `validate_range`: page-aligned too.
fn validate(start: u64, len: u64) -> Result<(), Errno> {
    if !start.is_multiple_of(PAGE) {
        return Err(EINVAL);
    }
    validate_unaligned(start, len)
}

impl UffdFile {
    fn initialized(&self) -> bool {
        self.ctx.features.load(Ordering::Relaxed) != 0
    }

    /// UFFDIO_API: the version and features asked for; the answer (or zeros on error).
    fn api(&self, arg: u64) -> Result<u64, Errno> {
        let mut a: [u64; 3] = read_user(arg as usize).map_err(|_| EFAULT)?;
        let asked = a[1];
        let refuse = |e| {
            write_user(arg as usize, &[0u64; 3]).map_err(|_| EFAULT)?;
            Err(e)
        };
        if a[0] != UFFD_API || asked & !FEATURES != 0 {
            return refuse(EINVAL);
        }
        a[1] = FEATURES;
        a[2] = API_IOCTLS;
        write_user(arg as usize, &a).map_err(|_| EFAULT)?;
        let enabled = asked | UFFD_FEATURE_INITIALIZED;
        if self
            .ctx
            .features
            .compare_exchange(0, enabled, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return refuse(EINVAL);
        }
        Ok(0)
    }

    /// Run `f` on the context's address space (ENOMEM if it is gone, as Linux's
    /// `mmget_not_zero` failing).
    fn with_mm<T>(&self, f: impl FnOnce(&mut Mm) -> T) -> Result<T, Errno> {
        let mm = self.ctx.mm.upgrade().ok_or(ENOMEM)?;
        let mut g = mm.lock();
        Ok(f(g.as_mut().ok_or(ENOMEM)?))
    }

    /// UFFDIO_REGISTER (struct uffdio_register: range, mode, ioctls out).
    fn register(&self, arg: u64) -> Result<u64, Errno> {
        let [start, len, mode]: [u64; 3] = read_user(arg as usize).map_err(|_| EFAULT)?;
        if mode == 0
            || mode
                & !(UFFDIO_REGISTER_MODE_MISSING
                    | UFFDIO_REGISTER_MODE_WP
                    | UFFDIO_REGISTER_MODE_MINOR)
                != 0
        {
            return Err(EINVAL);
        }
        // Write-protect and minor faults are not implemented.
        if mode != UFFDIO_REGISTER_MODE_MISSING {
            return Err(EINVAL);
        }
        validate(start, len)?;
        let (a, b) = (VirtAddr(start), VirtAddr(start + len));
        let huge = self.with_mm(|mm| mm.uffd_register(self.ctx.id, a, b))??;
        // Linux's UFFD_API_RANGE_IOCTLS_BASIC where a hugetlb VMA is in the range.
        let ioctls = if huge {
            RANGE_IOCTLS & !(1 << _UFFDIO_ZEROPAGE)
        } else {
            RANGE_IOCTLS
        };
        write_user(arg as usize + 24, &ioctls).map_err(|_| EFAULT)?;
        Ok(0)
    }

    /// UFFDIO_UNREGISTER (struct uffdio_range); the faults waiting there wake.
    fn unregister(&self, arg: u64) -> Result<u64, Errno> {
        let [start, len]: [u64; 2] = read_user(arg as usize).map_err(|_| EFAULT)?;
        validate(start, len)?;
        let (a, b) = (VirtAddr(start), VirtAddr(start + len));
        self.with_mm(|mm| mm.uffd_unregister(self.ctx.id, a, b))??;
        self.ctx.wake(start, len);
        Ok(0)
    }

    /// UFFDIO_WAKE (struct uffdio_range).
    fn wake(&self, arg: u64) -> Result<u64, Errno> {
        let [start, len]: [u64; 2] = read_user(arg as usize).map_err(|_| EFAULT)?;
        validate(start, len)?;
        self.ctx.wake(start, len);
        Ok(0)
    }

    /// UFFDIO_COPY (struct uffdio_copy: dst, src, len, mode, copy out) and
    /// UFFDIO_ZEROPAGE (struct uffdio_zeropage: range, mode, zeropage out): fill in
    /// batches of at most 64 KiB (the source read into a kernel buffer with no lock
    /// held, then mapped under the `Mm` lock); the bytes filled, or the error, go to
    /// the out field; the faults there wake unless DONTWAKE; EAGAIN if short.
    fn fill(&self, arg: u64, copy: bool) -> Result<u64, Errno> {
        let (dst, src, len, mode, out) = fill_args(arg, copy)?;
        let end = VirtAddr(dst + len);
        let mut buf = vec![0u8; if copy { FILL_PAGES * PAGE_SIZE } else { 0 }];
        let mut done = 0u64;
        let mut err = None;
        while done < len {
            let at = VirtAddr(dst + done);
            if let Some(size) = self.with_mm(|mm| mm.uffd_huge_size(at)).ok().flatten() {
                let r = if copy {
                    self.fill_huge(at, src + done, size, end, &mut buf)
                } else {
                    Err(EINVAL)
                };
                match r {
                    Ok(()) => done += size as u64,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
                continue;
            }
            let pages = ((len - done) / PAGE).min(FILL_PAGES as u64) as usize;
            let n = pages * PAGE_SIZE;
            if copy && copy_from_user(&mut buf[..n], (src + done) as usize).is_err() {
                err = Some(EFAULT);
                break;
            }
            let fill = if copy {
                Fill::Copy(&buf[..n])
            } else {
                Fill::Zero
            };
            let (filled, r) = match self.with_mm(|mm| mm.uffd_fill(at, pages, end, fill)) {
                Ok(x) => x,
                Err(e) => (0, Err(e)),
            };
            done += (filled * PAGE_SIZE) as u64;
            if let Err(e) = r {
                err = Some(e);
                break;
            }
        }
        let result: i64 = match (done, err) {
            (0, Some(e)) => -(e as i64),
            _ => done as i64,
        };
        write_user(out, &result).map_err(|_| EFAULT)?;
        if done == 0 {
            return Err(err.unwrap_or(EINVAL));
        }
        if mode & UFFDIO_COPY_MODE_DONTWAKE == 0 {
            self.ctx.wake(dst, done);
        }
        if done == len {
            Ok(0)
        } else {
            Err(EAGAIN)
        }
    }
}

impl UffdFile {
    /// The `struct uffd_msg` of `m`. A fork event installs the child context's
    /// descriptor in the reader's table first (Linux's `resolve_userfault_fork`),
    /// and lets the fork go on. If that fails (EMFILE), the read fails with it and
    /// the child's context is released with the file that could not be installed
    /// (Linux requeues the event instead).
    fn message(&self, m: &userfault::Message) -> Result<[u8; MSG_SIZE], Errno> {
        let mut b = [0u8; MSG_SIZE];
        match &m.what {
            Event::Fault { addr, write, tid } => {
                b[0] = UFFD_EVENT_PAGEFAULT;
                let flags = if *write { UFFD_PAGEFAULT_FLAG_WRITE } else { 0 };
                b[8..16].copy_from_slice(&flags.to_le_bytes());
                b[16..24].copy_from_slice(&addr.to_le_bytes());
                if self.ctx.features.load(Ordering::Relaxed) & UFFD_FEATURE_THREAD_ID != 0 {
                    b[24..28].copy_from_slice(&tid.to_le_bytes());
                }
            }
            Event::Fork(new) => {
                let fd = install(new.clone()).inspect_err(|_| self.ctx.complete(m.token))?;
                self.ctx.complete(m.token);
                b[0] = UFFD_EVENT_FORK;
                b[8..12].copy_from_slice(&(fd as u32).to_le_bytes());
            }
        }
        Ok(b)
    }
}

impl UffdFile {
    /// UFFDIO_COPY of the huge page at `at` from `src` (`mm::userfault`'s hugetlb
    /// part): a pool page taken, filled through `buf` with no lock held, mapped.
    fn fill_huge(
        &self,
        at: VirtAddr,
        src: u64,
        size: usize,
        end: VirtAddr,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let head = self.with_mm(|mm| mm.uffd_huge_take(at, end))??;
        for off in (0..size).step_by(buf.len()) {
            if copy_from_user(buf, src as usize + off).is_err() {
                uffd_huge_abandon(head);
                return Err(EFAULT);
            }
            if self
                .with_mm(|mm| mm.uffd_huge_write(head, off, buf))
                .is_err()
            {
                uffd_huge_abandon(head);
                return Err(ENOMEM);
            }
        }
        self.with_mm(|mm| mm.uffd_huge_map(at, head))
            .inspect_err(|_| uffd_huge_abandon(head))?
    }
}

impl Stream for UffdFile {
    /// Fault messages, as many whole ones as fit; waits for the first unless
    /// O_NONBLOCK (EAGAIN) or a signal comes (ERESTARTSYS).
    fn read(&self, buf: u64, count: u64) -> Result<u64, Errno> {
        if !self.initialized() || (count as usize) < MSG_SIZE {
            return Err(EINVAL);
        }
        if !is_user_range(buf as usize, count as usize) {
            return Err(EFAULT);
        }
        let t = me();
        loop {
            let msgs = self.ctx.take_messages(count as usize / MSG_SIZE);
            if !msgs.is_empty() {
                let mut done = 0;
                for m in msgs {
                    let b = match self.message(&m) {
                        Ok(b) => b,
                        Err(e) if done == 0 => return Err(e),
                        Err(_) => break,
                    };
                    copy_to_user(buf as usize + done, &b).map_err(|_| EFAULT)?;
                    done += MSG_SIZE;
                }
                return Ok(done as u64);
            }
            if self.nonblock.load(Ordering::Relaxed) {
                return Err(EAGAIN);
            }
            self.ctx
                .readable
                .wait_until(|| t.signals.interrupted() || self.ctx.pending());
            if !self.ctx.pending() {
                return Err(ERESTARTSYS);
            }
        }
    }

    /// The descriptor is open for reading only (Linux's `O_RDONLY` anonymous file).
    fn write(&self, _buf: u64, _count: u64) -> Result<u64, Errno> {
        Err(EBADF)
    }

    fn ioctl(&self, req: u64, arg: u64) -> Result<u64, Errno> {
        if req != UFFDIO_API && !self.initialized() {
            return Err(EINVAL);
        }
        match req {
            UFFDIO_API => self.api(arg),
            UFFDIO_REGISTER => self.register(arg),
            UFFDIO_UNREGISTER => self.unregister(arg),
            UFFDIO_WAKE => self.wake(arg),
            UFFDIO_COPY => self.fill(arg, true),
            UFFDIO_ZEROPAGE => self.fill(arg, false),
            _ => Err(EINVAL),
        }
    }

    /// Linux's `userfaultfd_poll`: POLLERR before the handshake and for a blocking
    /// descriptor (a message may be taken before the read); POLLIN while one waits.
    fn poll(&self) -> u16 {
        if !self.initialized() || !self.nonblock.load(Ordering::Relaxed) {
            POLLERR
        } else if self.ctx.pending() {
            POLLIN
        } else {
            0
        }
    }

    fn status(&self) -> u64 {
        if self.nonblock.load(Ordering::Relaxed) {
            O_NONBLOCK
        } else {
            0
        }
    }

    fn set_nonblock(&self, on: bool) {
        self.nonblock.store(on, Ordering::Relaxed);
    }

    /// An anonymous inode's: read and write for the owner, no file type.
    fn mode(&self) -> u32 {
        0o600
    }
}

/// UFFDIO_COPY's (`copy`) or UFFDIO_ZEROPAGE's argument at `arg`, checked in Linux's
/// order: (dst, src, len, mode, where the result goes).
fn fill_args(arg: u64, copy: bool) -> Result<(u64, u64, u64, u64, usize), Errno> {
    let (dst, src, len, mode, out) = if copy {
        let [dst, src, len, mode]: [u64; 4] = read_user(arg as usize).map_err(|_| EFAULT)?;
        validate_unaligned(src, len)?;
        (dst, src, len, mode, arg as usize + 32)
    } else {
        let [dst, len, mode]: [u64; 3] = read_user(arg as usize).map_err(|_| EFAULT)?;
        (dst, 0, len, mode, arg as usize + 24)
    };
    validate(dst, len)?;
    let modes = if copy {
        UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP
    } else {
        UFFDIO_COPY_MODE_DONTWAKE
    };
    if mode & !modes != 0 {
        return Err(EINVAL);
    }
    // Write-protected copies are not implemented.
    if mode & UFFDIO_COPY_MODE_WP != 0 {
        return Err(EINVAL);
    }
    Ok((dst, src, len, mode, out))
}
