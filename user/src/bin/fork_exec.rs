//! fork / execve / exit / wait4: pids and parent pids across fork, exit codes through
//! wait4, waiting for any child, WNOHANG, ECHILD, and an exec of `hello` (found next
//! to this program: the directory of argv[0]).
#![no_std]
#![no_main]

use core::sync::atomic::AtomicI32;
use rt::proc::{self, spawn, wait, wait4, WNOHANG};
use rt::start::at;
use rt::test::{Context, Outcome, Suite};
use rt::time::{nanosleep, Timespec};
use rt::{ensure, fail, println, Errno};

rt::entry!(main);

fn main(args: &rt::Args) -> i32 {
    let mut t = Suite::new("fork_exec");
    t.run("ids", ids);
    t.run("auxv", || auxv(args));
    t.run("fork_pids", fork_pids);
    t.run("exit_codes", exit_codes);
    t.run("wait_any", wait_any);
    t.run("wait_nohang", wait_nohang);
    t.run("echild", echild);
    t.run("exec_hello", || exec_hello(args));
    t.run("exec_enoent", exec_enoent);
    t.finish()
}

static TID: AtomicI32 = AtomicI32::new(0);

/// getpid = gettid = set_tid_address's result in a single-threaded process.
fn ids() -> Outcome {
    let pid = proc::getpid().ctx("getpid")?;
    let tid = proc::gettid().ctx("gettid")?;
    let ppid = proc::getppid().ctx("getppid")?;
    let set = proc::set_tid_address(&TID).ctx("set_tid_address")?;
    ensure!(
        pid > 0 && pid == tid && set == tid,
        "pid {pid} tid {tid} set_tid_address {set}"
    );
    ensure!(ppid != pid, "ppid {ppid} == pid");
    Ok(())
}

/// The initial stack carries an auxiliary vector with the page size and the address
/// of 16 random bytes (static glibc needs AT_RANDOM).
fn auxv(args: &rt::Args) -> Outcome {
    let page = args.aux(at::PAGESZ);
    ensure!(page == Some(4096), "AT_PAGESZ {page:?}");
    ensure!(args.aux(at::RANDOM).is_some_and(|p| p != 0), "no AT_RANDOM");
    Ok(())
}

/// The child sees the pid fork returned and the parent as its parent.
fn fork_pids() -> Outcome {
    let me = proc::getpid().ctx("getpid")?;
    // The child exits 1 if its parent is not us, else 2 + its pid % 200, which the
    // parent compares with what fork returned.
    let pid = spawn(|| match (proc::getpid(), proc::getppid()) {
        (Ok(own), Ok(parent)) if parent == me && own != me => 2 + (own % 200) as i32,
        _ => 1,
    })
    .ctx("fork")?;
    let s = wait(pid).ctx("wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 2 + (pid % 200) as u32,
        "child {s}, fork returned pid {pid}"
    );
    Ok(())
}

/// exit and exit_group codes come back whole through wait4, and the pid is reported.
fn exit_codes() -> Outcome {
    for code in [0, 1, 42, 127, 255] {
        let pid = spawn(|| {
            if code % 2 == 0 {
                proc::exit(code)
            } else {
                code
            }
        })
        .ctx("fork")?;
        let (got, s) = wait4(pid as isize, 0).ctx("wait4")?;
        ensure!(got == pid, "wait4 returned pid {got}, want {pid}");
        ensure!(
            s.exited() && s.exit_status() == code as u32,
            "exit({code}) gave {s}"
        );
        ensure!(!s.signaled(), "exit({code}) reads as signaled: {:#x}", s.0);
    }
    Ok(())
}

/// wait4(-1) collects every child exactly once.
fn wait_any() -> Outcome {
    let mut pids = [0usize; 3];
    for (i, p) in pids.iter_mut().enumerate() {
        *p = spawn(|| 10 + i as i32).ctx("fork")?;
    }
    for _ in 0..pids.len() {
        let (pid, s) = wait4(-1, 0).ctx("wait4(-1)")?;
        let Some(i) = pids.iter().position(|&p| p == pid) else {
            fail!("wait4 returned unknown pid {pid}")
        };
        ensure!(
            s.exited() && s.exit_status() == 10 + i as u32,
            "child {i}: {s}"
        );
        pids[i] = 0;
    }
    match wait4(-1, 0) {
        Err(Errno::ECHILD) => Ok(()),
        r => fail!("wait4 after all reaped: {:?}", r.map(|(p, _)| p)),
    }
}

/// WNOHANG returns 0 while the child runs; a blocking wait4 then reaps it.
fn wait_nohang() -> Outcome {
    let pid = spawn(|| nanosleep(&Timespec::from_ms(200)).map_or(1, |_| 0)).ctx("fork")?;
    let (got, _) = wait4(pid as isize, WNOHANG).ctx("wait4(WNOHANG)")?;
    ensure!(got == 0, "WNOHANG on a sleeping child returned {got}");
    let s = wait(pid).ctx("wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    Ok(())
}

/// No children: ECHILD for -1, for our own pid and for pid 1.
fn echild() -> Outcome {
    let me = proc::getpid().ctx("getpid")? as isize;
    for pid in [-1, me, 1] {
        match wait4(pid, 0) {
            Err(Errno::ECHILD) => {}
            r => fail!("wait4({pid}) without children: {:?}", r.map(|(p, _)| p)),
        }
    }
    Ok(())
}

/// The child execs `hello`, which prints its pid (the child's) and exits 0.
fn exec_hello(args: &rt::Args) -> Outcome {
    let mut path = args.sibling("hello");
    let pid = spawn(|| {
        let path = path.as_cstr();
        let e = proc::execve(path, &[path], &[]);
        println!("fork_exec: execve {}: {e}", path.to_str().unwrap_or("?"));
        100 + e.0
    })
    .ctx("fork")?;
    println!("fork_exec: expect hello from pid {pid}");
    let s = wait(pid).ctx("wait4")?;
    ensure!(s.exited() && s.exit_status() == 0, "exec'd hello: {s}");
    Ok(())
}

/// execve of a missing file fails with ENOENT and leaves the caller running.
fn exec_enoent() -> Outcome {
    let e = proc::execve(c"/nonexistent/program", &[c"program"], &[]);
    ensure!(e == Errno::ENOENT, "execve of a missing path: {e}");
    Ok(())
}
