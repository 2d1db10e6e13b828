//! Pipes and descriptors as Linux 6.12 has them: bytes through a pipe and across
//! fork, end of file after the last writer, EPIPE with SIGPIPE after the last reader,
//! O_NONBLOCK (EAGAIN, a 64 KiB capacity), atomic writes of PIPE_BUF bytes from two
//! writers at once, dup/dup3/fcntl (lowest descriptor, F_DUPFD's minimum, close-on-exec,
//! status flags shared by duplicates), O_CLOEXEC across execve, ppoll on pipes and the
//! console (ready bits, timeout, a wake-up from another process), a blocked read
//! interrupted by a signal (EINTR, or restarted with SA_RESTART) or killed, vmsplice
//! into and out of a pipe, and the errnos of bad arguments.
#![no_std]
#![no_main]

use core::ffi::CStr;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use rt::fs::{close, read, write, O_CLOEXEC};
use rt::pipe::*;
use rt::proc::{self, expect_killed};
use rt::signal::{
    self, SigInfo, UContext, SA_RESTART, SIGPIPE, SIGTERM, SIGUSR1, SIG_DFL, SIG_IGN,
};
use rt::sys::nr;
use rt::test::{Context, Outcome, Suite};
use rt::time::{nanosleep, Timespec};
use rt::{ensure, Errno};

rt::entry!(main);

fn main(args: &rt::Args) -> i32 {
    if args.str(1) == Some("exec-check") {
        return exec_check(args);
    }
    let mut t = Suite::new("pipes");
    t.run("bytes_through_a_pipe", through);
    t.run("eof_after_last_writer", eof);
    t.run("epipe_and_sigpipe", epipe);
    t.run("sigpipe_default_kills", || {
        expect_killed("pipes", SIGPIPE, || {
            if let Ok((r, w)) = pipe2(0) {
                let _ = close(r);
                let _ = write(w, b"x");
            }
        })
    });
    t.run("nonblock_eagain_and_capacity", nonblock);
    t.run("blocking_across_fork_256k", across_fork);
    t.run("atomic_pipe_buf_writes_interleave_whole", atomic_writes);
    t.run("dup_dup3_fcntl", dups);
    t.run("cloexec_closed_by_execve", cloexec_exec);
    t.run("ppoll_bits_timeout_wakeup", poll);
    t.run("read_eintr_without_sa_restart", || read_interrupted(0));
    t.run("read_restarts_with_sa_restart", || {
        read_interrupted(SA_RESTART)
    });
    t.run("kill_child_blocked_in_read", kill_blocked);
    t.run("vmsplice_both_ways", vmsplice);
    t.run("bad_arguments", bad_args);
    t.finish()
}

fn sleep_ms(ms: i64) {
    let _ = nanosleep(&Timespec {
        sec: 0,
        nsec: ms * 1_000_000,
    });
}

fn through() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    ensure!(write(w, b"hello, pipe").ctx("write")? == 11, "short write");
    let mut buf = [0u8; 64];
    let n = read(r, &mut buf).ctx("read")?;
    ensure!(&buf[..n] == b"hello, pipe", "read {n} bytes");
    close(r).ctx("close")?;
    close(w).ctx("close")?;
    Ok(())
}

fn eof() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let w2 = dup(w).ctx("dup")?;
    write(w, b"ab").ctx("write")?;
    close(w).ctx("close")?;
    let mut buf = [0u8; 8];
    ensure!(read(r, &mut buf).ctx("read")? == 2, "data before EOF");
    close(w2).ctx("close dup")?;
    ensure!(read(r, &mut buf).ctx("read at EOF")? == 0, "no EOF");
    close(r).ctx("close")?;
    Ok(())
}

static HITS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count(_: u32, _: &SigInfo, _: &mut UContext) {
    HITS.fetch_add(1, SeqCst);
}

fn epipe() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    close(r).ctx("close")?;
    signal::set(SIGPIPE, SIG_IGN).ctx("SIG_IGN")?;
    ensure!(write(w, b"x").err() == Some(Errno(32)), "write: want EPIPE");
    HITS.store(0, SeqCst);
    signal::on(SIGPIPE, count, 0).ctx("sigaction")?;
    let e = write(w, b"x").err();
    signal::set(SIGPIPE, SIG_DFL).ctx("SIG_DFL")?;
    close(w).ctx("close")?;
    ensure!(e == Some(Errno(32)), "write with handler: {e:?}");
    ensure!(
        HITS.load(SeqCst) == 1,
        "SIGPIPE handler ran {} times",
        HITS.load(SeqCst)
    );
    Ok(())
}

fn nonblock() -> Outcome {
    let (r, w) = pipe2(O_NONBLOCK).ctx("pipe2")?;
    let mut buf = [0u8; 4096];
    ensure!(read(r, &mut buf).err() == Some(Errno::EAGAIN), "empty read");
    let mut total = 0;
    loop {
        match write(w, &buf) {
            Ok(n) => total += n,
            Err(Errno::EAGAIN) => break,
            Err(e) => rt::fail!("write: {e}"),
        }
        ensure!(total <= 1 << 20, "no end to the pipe");
    }
    ensure!(total == 65536, "capacity {total}");
    ensure!(
        write(w, b"x").err() == Some(Errno::EAGAIN),
        "write to a full pipe"
    );
    ensure!(read(r, &mut buf).ctx("read")? == 4096, "read a page");
    ensure!(
        write(w, &buf).ctx("write after room")? == 4096,
        "write a page"
    );
    let fl = fcntl(r, F_GETFL, 0).ctx("F_GETFL")?;
    ensure!(fl == O_NONBLOCK, "read end flags {fl:#o}");
    ensure!(
        fcntl(w, F_GETFL, 0).ctx("F_GETFL")? == O_NONBLOCK | 1,
        "write end flags"
    );
    fcntl(r, F_SETFL, 0).ctx("F_SETFL")?;
    ensure!(
        fcntl(r, F_GETFL, 0).ctx("F_GETFL")? == 0,
        "O_NONBLOCK not cleared"
    );
    close(r).ctx("close")?;
    close(w).ctx("close")?;
    Ok(())
}

fn pattern(i: usize) -> u8 {
    (i * 7 + i / 251) as u8
}

fn across_fork() -> Outcome {
    const LEN: usize = 256 * 1024;
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let child = proc::spawn(|| {
        let _ = close(w);
        let mut buf = [0u8; 3000];
        let mut got = 0;
        loop {
            match read(r, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if (0..n).any(|i| buf[i] != pattern(got + i)) {
                        return 2;
                    }
                    got += n;
                }
                Err(_) => return 3,
            }
        }
        (got != LEN) as i32
    })
    .ctx("fork")?;
    close(r).ctx("close")?;
    let mut buf = [0u8; 5000];
    let mut sent = 0;
    while sent < LEN {
        let n = buf.len().min(LEN - sent);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(sent + i);
        }
        sent += write(w, &buf[..n]).ctx("write")?;
    }
    close(w).ctx("close")?;
    let s = proc::wait(child).ctx("wait")?;
    ensure!(s.exited() && s.exit_status() == 0, "reader {s}");
    Ok(())
}

fn atomic_writes() -> Outcome {
    const MSGS: usize = 64;
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let writer = |id: u8| {
        move || {
            let buf = [id; 4096];
            for _ in 0..MSGS {
                if write(w, &buf) != Ok(4096) {
                    return 1;
                }
            }
            0
        }
    };
    let a = proc::spawn(writer(b'a')).ctx("fork")?;
    let b = proc::spawn(writer(b'b')).ctx("fork")?;
    close(w).ctx("close")?;
    let mut msg = [0u8; 4096];
    let mut counts = [0usize; 2];
    loop {
        let mut got = 0;
        while got < 4096 {
            match read(r, &mut msg[got..]).ctx("read")? {
                0 => break,
                n => got += n,
            }
        }
        if got == 0 {
            break;
        }
        ensure!(got == 4096, "torn tail of {got} bytes");
        ensure!(
            msg.iter().all(|&c| c == msg[0]),
            "a 4096-byte write was interleaved"
        );
        counts[(msg[0] - b'a') as usize] += 1;
    }
    close(r).ctx("close")?;
    for p in [a, b] {
        let s = proc::wait(p).ctx("wait")?;
        ensure!(s.exited() && s.exit_status() == 0, "writer {s}");
    }
    ensure!(counts == [MSGS, MSGS], "messages {counts:?}");
    Ok(())
}

fn dups() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let d = dup(w).ctx("dup")?;
    ensure!(d == w + 1, "dup gave {d}, lowest free is {}", w + 1);
    let hi = fcntl(w, F_DUPFD, 100).ctx("F_DUPFD")?;
    ensure!(hi == 100, "F_DUPFD 100 gave {hi}");
    ensure!(
        fcntl(hi, F_GETFD, 0).ctx("F_GETFD")? == 0,
        "F_DUPFD set FD_CLOEXEC"
    );
    let hc = fcntl(w, F_DUPFD_CLOEXEC, 100).ctx("F_DUPFD_CLOEXEC")?;
    ensure!(hc == 101, "F_DUPFD_CLOEXEC gave {hc}");
    ensure!(
        fcntl(hc, F_GETFD, 0).ctx("F_GETFD")? == FD_CLOEXEC,
        "no FD_CLOEXEC"
    );
    fcntl(hc, F_SETFD, 0).ctx("F_SETFD")?;
    ensure!(
        fcntl(hc, F_GETFD, 0).ctx("F_GETFD")? == 0,
        "FD_CLOEXEC not cleared"
    );
    ensure!(dup3(w, w, 0).err() == Some(Errno::EINVAL), "dup3 to itself");
    ensure!(dup3(w, 90, 0x1).err() == Some(Errno::EINVAL), "dup3 flag 1");
    ensure!(dup3(w, 90, O_CLOEXEC).ctx("dup3")? == 90, "dup3 target");
    ensure!(
        fcntl(90, F_GETFD, 0).ctx("F_GETFD")? == FD_CLOEXEC,
        "dup3 O_CLOEXEC"
    );
    // Status flags belong to the open file: a duplicate sees O_NONBLOCK.
    fcntl(d, F_SETFL, O_NONBLOCK).ctx("F_SETFL")?;
    ensure!(
        fcntl(w, F_GETFL, 0).ctx("F_GETFL")? & O_NONBLOCK != 0,
        "O_NONBLOCK not shared by dup"
    );
    // dup3 over an open descriptor closes it: 90 now names the read end.
    dup3(r, 90, 0).ctx("dup3 over")?;
    write(100, b"via 100").ctx("write dup")?;
    let mut buf = [0u8; 16];
    ensure!(
        read(90, &mut buf).ctx("read dup")? == 7,
        "read through dup3"
    );
    for fd in [r, w, d, hi, hc, 90] {
        close(fd).ctx("close")?;
    }
    Ok(())
}

/// The exec'd half of `cloexec_exec`: argv[2] must be closed, argv[3] open.
fn exec_check(args: &rt::Args) -> i32 {
    let fd = |i| {
        args.str(i)
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(999)
    };
    let closed = fcntl(fd(2), F_GETFD, 0) == Err(Errno::EBADF);
    let open = fcntl(fd(3), F_GETFD, 0) == Ok(0);
    match (closed, open) {
        (true, true) => 0,
        (false, _) => 1,
        (_, false) => 2,
    }
}

fn cloexec_exec() -> Outcome {
    let (a, b) = pipe2(O_CLOEXEC).ctx("pipe2 O_CLOEXEC")?;
    let (c, d) = pipe2(0).ctx("pipe2")?;
    let mut fa = rt::text::Text::<16>::from_fmt(format_args!("{a}"));
    let mut fc = rt::text::Text::<16>::from_fmt(format_args!("{c}"));
    let child = proc::spawn(|| {
        let path: &CStr = c"/bin/pipes";
        let e = proc::execve(
            path,
            &[path, c"exec-check", fa.as_cstr(), fc.as_cstr()],
            &[],
        );
        100 + e.0
    })
    .ctx("fork")?;
    let s = proc::wait(child).ctx("wait")?;
    for fd in [a, b, c, d] {
        close(fd).ctx("close")?;
    }
    ensure!(s.exited() && s.exit_status() == 0, "exec'd check {s}");
    Ok(())
}

fn poll() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let mut p = [
        PollFd {
            fd: r as i32,
            events: POLLIN,
            revents: 0,
        },
        PollFd {
            fd: w as i32,
            events: POLLOUT,
            revents: 0,
        },
        PollFd {
            fd: -1,
            events: POLLIN,
            revents: 0,
        },
        PollFd {
            fd: 200,
            events: POLLIN,
            revents: 0,
        },
        PollFd {
            fd: 1,
            events: POLLOUT,
            revents: 0,
        },
    ];
    let n = ppoll(&mut p, Some(0)).ctx("ppoll")?;
    let rev = p.map(|x| x.revents);
    ensure!(
        n == 3 && rev == [0, POLLOUT, 0, POLLNVAL, POLLOUT],
        "empty pipe: {n} ready, {rev:?}"
    );
    // Nothing to read: the timeout passes.
    let t0 = rt::time::now_ns();
    let n = ppoll(&mut p[..1], Some(50)).ctx("ppoll timeout")?;
    let waited = rt::time::now_ns() - t0;
    ensure!(
        n == 0 && waited >= 50_000_000,
        "timeout: {n} ready after {waited} ns"
    );
    // Another process writes while we wait with no timeout.
    let child = proc::spawn(|| {
        sleep_ms(50);
        (write(w, b"wake") != Ok(4)) as i32
    })
    .ctx("fork")?;
    let n = ppoll(&mut p[..1], None).ctx("ppoll wait")?;
    ensure!(
        n == 1 && p[0].revents == POLLIN,
        "woken: {n}, {:#x}",
        p[0].revents
    );
    proc::wait(child).ctx("wait")?;
    close(w).ctx("close")?;
    let mut buf = [0u8; 8];
    read(r, &mut buf).ctx("read")?;
    let n = ppoll(&mut p[..1], Some(0)).ctx("ppoll hup")?;
    ensure!(
        n == 1 && p[0].revents == POLLHUP,
        "no writer: {:#x}",
        p[0].revents
    );
    close(r).ctx("close")?;
    let (r, w) = pipe2(0).ctx("pipe2")?;
    close(r).ctx("close")?;
    let mut q = [PollFd {
        fd: w as i32,
        events: POLLOUT,
        revents: 0,
    }];
    ppoll(&mut q, Some(0)).ctx("ppoll err")?;
    ensure!(
        q[0].revents & POLLERR != 0,
        "no reader: {:#x}",
        q[0].revents
    );
    close(w).ctx("close")?;
    Ok(())
}

/// A read blocked on an empty pipe; the child signals, then writes.
fn read_interrupted(flags: u64) -> Outcome {
    HITS.store(0, SeqCst);
    signal::on(SIGUSR1, count, flags).ctx("sigaction")?;
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let parent = proc::getpid().ctx("getpid")?;
    let child = proc::spawn(|| {
        sleep_ms(100);
        let _ = signal::kill(parent as isize, SIGUSR1);
        sleep_ms(100);
        (write(w, b"late") != Ok(4)) as i32
    })
    .ctx("fork")?;
    let mut buf = [0u8; 8];
    let got = read(r, &mut buf);
    let hits = HITS.load(SeqCst);
    let s = proc::wait(child).ctx("wait")?;
    signal::set(SIGUSR1, SIG_DFL).ctx("SIG_DFL")?;
    close(r).ctx("close")?;
    close(w).ctx("close")?;
    ensure!(hits == 1, "handler ran {hits} times");
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    if flags & SA_RESTART != 0 {
        ensure!(
            got == Ok(4) && &buf[..4] == b"late",
            "restarted read: {got:?}"
        );
    } else {
        ensure!(got == Err(Errno::EINTR), "read: {got:?}");
    }
    Ok(())
}

fn kill_blocked() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let child = proc::spawn(|| {
        let mut buf = [0u8; 1];
        let _ = read(r, &mut buf);
        7
    })
    .ctx("fork")?;
    sleep_ms(50);
    signal::kill(child as isize, SIGTERM).ctx("kill")?;
    let s = proc::wait(child).ctx("wait")?;
    close(r).ctx("close")?;
    close(w).ctx("close")?;
    ensure!(s.signaled() && s.term_sig() == SIGTERM, "child {s}");
    Ok(())
}

/// vmsplice(fd, iov, nr_segs, flags) through the raw call.
fn vmsplice_raw(fd: usize, iov: &[[usize; 2]], flags: usize) -> Result<usize, Errno> {
    // SAFETY: each iovec names a buffer of this program, readable and writable.
    unsafe { rt::syscall!(nr::VMSPLICE, fd, iov.as_ptr(), iov.len(), flags) }
}

/// Three buffers spliced into the write end come out of the read end in order; out of
/// the read end into two buffers (what a pin means for the bytes: the `pins` program);
/// SPLICE_F_NONBLOCK on an empty pipe is EAGAIN; bad flags, a file that is no pipe,
/// and more than 1024 segments are refused as Linux does.
fn vmsplice() -> Outcome {
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let (a, b, c) = (*b"contiguous ", *b"bit, ", *b"spliced");
    let iov = [
        [a.as_ptr() as usize, a.len()],
        [b.as_ptr() as usize, b.len()],
        [c.as_ptr() as usize, c.len()],
    ];
    let n = vmsplice_raw(w, &iov, 0).ctx("vmsplice into the pipe")?;
    ensure!(n == 23, "vmsplice moved {n} bytes of 23");
    let (mut x, mut y) = ([0u8; 11], [0u8; 12]);
    let out = [
        [x.as_mut_ptr() as usize, x.len()],
        [y.as_mut_ptr() as usize, y.len()],
    ];
    let n = vmsplice_raw(r, &out, 0).ctx("vmsplice out of the pipe")?;
    ensure!(n == 23, "vmsplice out moved {n} bytes of 23");
    ensure!(
        &x == b"contiguous " && &y == b"bit, spliced",
        "out of order or wrong bytes"
    );
    const SPLICE_F_NONBLOCK: usize = 2;
    ensure!(
        vmsplice_raw(r, &out, SPLICE_F_NONBLOCK).err() == Some(Errno::EAGAIN),
        "SPLICE_F_NONBLOCK on an empty pipe"
    );
    ensure!(
        vmsplice_raw(w, &iov, 0x10).err() == Some(Errno::EINVAL),
        "flag 0x10"
    );
    ensure!(
        vmsplice_raw(0, &iov, 0).err() == Some(Errno::EBADF),
        "vmsplice to the console (no pipe)"
    );
    // 128 KiB into an empty 64 KiB pipe: what fits goes in and the call returns (it
    // waits only for the first room, as Linux's vmsplice_to_pipe): Linux's cow
    // selftest splices 128 KiB folios and reads back `transferred` bytes.
    let big = rt::mm::Region::anon(128 << 10, rt::mm::PROT_READ | rt::mm::PROT_WRITE, 0)
        .ctx("mmap 128 KiB")?;
    big.fill(0, 128 << 10, 0x5a);
    let n = vmsplice_raw(w, &[[big.addr, 128 << 10]], 0).ctx("vmsplice 128 KiB")?;
    ensure!(
        n == 64 << 10,
        "vmsplice of 128 KiB into an empty pipe moved {n} bytes"
    );
    let mut back = [0u8; 4096];
    let mut total = 0;
    while total < n {
        let k = read(r, &mut back).ctx("read back")?;
        ensure!(back[..k].iter().all(|&v| v == 0x5a), "wrong bytes back");
        total += k;
    }
    let many = [[a.as_ptr() as usize, 1]; 1025];
    ensure!(
        vmsplice_raw(w, &many, 0).err() == Some(Errno::EINVAL),
        "1025 segments"
    );
    close(r).ctx("close")?;
    close(w).ctx("close")?;
    Ok(())
}

fn bad_args() -> Outcome {
    ensure!(pipe2(0x1).err() == Some(Errno::EINVAL), "pipe2 flag 1");
    // SAFETY: a kernel address: the kernel must refuse it without writing.
    let e = unsafe { rt::syscall!(nr::PIPE2, 0xffff_0000_4000_0000usize, 0) };
    ensure!(
        e.err() == Some(Errno::EFAULT),
        "pipe2 to a kernel address: {e:?}"
    );
    let (r, w) = pipe2(0).ctx("pipe2")?;
    let mut buf = [0u8; 4];
    ensure!(
        read(w, &mut buf).err() == Some(Errno::EBADF),
        "read the write end"
    );
    ensure!(
        write(r, &buf).err() == Some(Errno::EBADF),
        "write the read end"
    );
    // SAFETY: lseek takes no pointer.
    let e = unsafe { rt::syscall!(nr::LSEEK, r, 0, 0) };
    ensure!(e.err() == Some(Errno(29)), "lseek on a pipe: {e:?}");
    ensure!(
        fcntl(r, 9999, 0).err() == Some(Errno::EINVAL),
        "fcntl cmd 9999"
    );
    ensure!(
        fcntl(300, F_GETFD, 0).err() == Some(Errno::EBADF),
        "fcntl fd 300"
    );
    ensure!(
        dup3(r, 1 << 20, 0).err() == Some(Errno::EBADF),
        "dup3 to 1<<20"
    );
    let mut p = [PollFd::default(); 1];
    // SAFETY: ppoll with an nfds far beyond the descriptor limit reads nothing.
    let e = unsafe { rt::syscall!(nr::PPOLL, p.as_mut_ptr(), 1usize << 30, 0, 0, 8) };
    ensure!(e.err() == Some(Errno::EINVAL), "ppoll nfds 1<<30: {e:?}");
    close(r).ctx("close")?;
    close(w).ctx("close")?;
    Ok(())
}
