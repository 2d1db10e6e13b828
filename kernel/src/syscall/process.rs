//! getpid and friends, clone and clone3 (fork and threads), futex, execve, wait4,
//! getrusage, sched_yield, resource limits, CPU affinity, sysinfo, prctl (THP),
//! set_tid_address, set_robust_list and get_robust_list.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::files::user_path;
use super::Errno;
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::uaccess::{read_user, strncpy_from_user, write_user};
use crate::mm::PAGE_SIZE;
use crate::proc::process;
use crate::proc::sched::{self, me};
use crate::proc::task::{self, Task, RLIMIT_NOFILE, RLIM_NLIMITS};
use crate::uapi::*;

const MAX_ARGS: usize = 256;
const MAX_ARG_LEN: usize = 4096;

pub fn getpid() -> Result<u64, Errno> {
    Ok(me().tgid as u64)
}

pub fn gettid() -> Result<u64, Errno> {
    Ok(me().pid() as u64)
}

pub fn getppid() -> Result<u64, Errno> {
    Ok(me().parent.load(Ordering::Acquire) as u64)
}

pub fn set_tid_address(ptr: u64) -> Result<u64, Errno> {
    let t = me();
    t.clear_child_tid.store(ptr, Ordering::Relaxed);
    Ok(t.pid() as u64)
}

/// set_robust_list(head, len): the list of robust futexes the calling thread holds,
/// walked when it exits or execs (`proc::robust`). As on Linux the head is not read
/// now, only its size checked.
pub fn set_robust_list(head: u64, len: u64) -> Result<u64, Errno> {
    if len != crate::proc::robust::ROBUST_HEAD_SIZE {
        return Err(EINVAL);
    }
    me().robust_list.store(head, Ordering::Release);
    Ok(0)
}

/// get_robust_list(tid, head_ptr, len_ptr): the head thread `tid` (0: the caller)
/// registered, and the size, written in Linux's order (the size first). Every process
/// is root here, so Linux's ptrace check always passes.
pub fn get_robust_list(tid: u64, head_ptr: u64, len_ptr: u64) -> Result<u64, Errno> {
    let t = match tid as i32 {
        0 => me(),
        p if p > 0 => task::get(p as u32).filter(|t| t.is_user()).ok_or(ESRCH)?,
        _ => return Err(ESRCH),
    };
    let head = t.robust_list.load(Ordering::Acquire);
    write_user(len_ptr as usize, &crate::proc::robust::ROBUST_HEAD_SIZE).map_err(|_| EFAULT)?;
    write_user(head_ptr as usize, &head).map_err(|_| EFAULT)?;
    Ok(0)
}

/// What clone accepts for a thread: the flags glibc's pthread_create passes.
const THREAD_FLAGS: u64 = CLONE_VM
    | CLONE_FS
    | CLONE_FILES
    | CLONE_SIGHAND
    | CLONE_THREAD
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_CHILD_SETTID;

pub fn clone(
    frame: &TrapFrame,
    flags: u64,
    newsp: u64,
    ptid: u64,
    tls: u64,
    ctid: u64,
) -> Result<u64, Errno> {
    // Linux's copy_process: a thread shares the signal actions, which need a shared
    // address space.
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0
        || flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0
    {
        return Err(EINVAL);
    }
    let args = process::CloneArgs {
        flags,
        newsp,
        parent_tid: ptid,
        tls,
        child_tid: ctid,
    };
    if flags & CLONE_THREAD != 0 {
        if flags & !(THREAD_FLAGS | CSIGNAL) != 0 {
            return Err(EINVAL);
        }
        return process::clone_thread(frame, &args).map(u64::from);
    }
    if flags & (CLONE_VM | CLONE_SIGHAND | CLONE_VFORK) != 0 {
        // vfork and address spaces shared between processes are not supported.
        return Err(EINVAL);
    }
    process::fork(frame, &args).map(u64::from)
}

/// struct clone_args (clone3): flags, pidfd, child_tid, parent_tid, exit_signal,
/// stack, stack_size, tls, then set_tid, set_tid_size, cgroup (newer sizes).
const CLONE_ARGS_SIZE_VER0: u64 = 64;
const CLONE_ARGS_SIZE_VER2: usize = 88;

/// clone3(args, size): clone with the arguments in a struct; the stack is given as
/// its lowest address and size. Fields past the ones known must be zero (E2BIG).
pub fn clone3(frame: &TrapFrame, args: u64, size: u64) -> Result<u64, Errno> {
    if !(CLONE_ARGS_SIZE_VER0..=PAGE_SIZE as u64).contains(&size) {
        return Err(if size > PAGE_SIZE as u64 {
            E2BIG
        } else {
            EINVAL
        });
    }
    let mut buf = alloc::vec![0u8; size as usize];
    crate::arch::aarch64::uaccess::copy_from_user(&mut buf, args as usize).map_err(|_| EFAULT)?;
    let word = |i: usize| {
        buf.get(i * 8..i * 8 + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let [flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls] =
        core::array::from_fn(word);
    // Fields past the 88 bytes Linux 6.12 knows must be zero (E2BIG); set_tid,
    // set_tid_size and cgroup are not supported here (EINVAL).
    if buf.iter().skip(CLONE_ARGS_SIZE_VER2).any(|&b| b != 0) {
        return Err(E2BIG);
    }
    if buf[CLONE_ARGS_SIZE_VER0 as usize..].iter().any(|&b| b != 0) {
        return Err(EINVAL);
    }
    if flags & CSIGNAL != 0
        || exit_signal & !CSIGNAL != 0
        || exit_signal > NSIG as u64
        || pidfd != 0 && flags & CLONE_PIDFD == 0
        || flags & CLONE_THREAD != 0 && exit_signal != 0
        || (stack == 0) != (stack_size == 0)
    {
        return Err(EINVAL);
    }
    let sp = if stack == 0 {
        0
    } else {
        stack.checked_add(stack_size).ok_or(EINVAL)?
    };
    clone(frame, flags | exit_signal, sp, parent_tid, tls, child_tid)
}

/// futex(uaddr, op, val, timeout or val2, uaddr2, val3): the operations glibc's
/// locks, condition variables and pthread_join use (`proc::futex`); the
/// priority-inheritance and WAKE_OP ones are ENOSYS, as on a Linux built without
/// them.
pub fn futex(
    addr: u64,
    op: u64,
    val: u64,
    timeout: u64,
    addr2: u64,
    val3: u64,
) -> Result<u64, Errno> {
    use crate::proc::futex;
    let op = op as u32;
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let shared = op & FUTEX_PRIVATE_FLAG == 0;
    let (val, val3) = (val as u32, val3 as u32);
    if op & FUTEX_CLOCK_REALTIME != 0 && cmd != FUTEX_WAIT_BITSET {
        return Err(ENOSYS);
    }
    if !matches!(
        cmd,
        FUTEX_WAIT
            | FUTEX_WAKE
            | FUTEX_REQUEUE
            | FUTEX_CMP_REQUEUE
            | FUTEX_WAIT_BITSET
            | FUTEX_WAKE_BITSET
    ) {
        return Err(ENOSYS);
    }
    // Linux reads and checks the timeout before anything else.
    let wait = matches!(cmd, FUTEX_WAIT | FUTEX_WAIT_BITSET);
    // FUTEX_WAIT's timeout is relative; WAIT_BITSET's an absolute time on the clock
    // the flag names (both are the uptime here: `misc`).
    let deadline = match (timeout, cmd) {
        (_, _) if !wait => u64::MAX,
        (0, _) => u64::MAX,
        (_, FUTEX_WAIT) => super::misc::deadline_after(timeout)?,
        _ => super::misc::read_timespec(timeout)?,
    };
    if !addr.is_multiple_of(4) {
        return Err(EINVAL);
    }
    let t = me();
    // The BITSET operations name which waiters (val3, never 0); the others all.
    let bitset = match cmd {
        FUTEX_WAIT_BITSET | FUTEX_WAKE_BITSET if val3 == 0 => return Err(EINVAL),
        FUTEX_WAIT_BITSET | FUTEX_WAKE_BITSET => val3,
        _ => FUTEX_BITSET_MATCH_ANY,
    };
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => futex::wait(&t, addr, shared, val, bitset, deadline),
        FUTEX_WAKE | FUTEX_WAKE_BITSET => Ok(futex::wake(&t, addr, shared, val, bitset)),
        _ => {
            // val2 travels in the timeout argument; Linux rejects negative counts.
            let (n_wake, n_move) = (val as i32, timeout as u32 as i32);
            if n_wake < 0 || n_move < 0 || !addr2.is_multiple_of(4) {
                return Err(EINVAL);
            }
            if cmd == FUTEX_CMP_REQUEUE {
                let cur: u32 = read_user(addr as usize).map_err(|_| EFAULT)?;
                if cur != val3 {
                    return Err(EAGAIN);
                }
            }
            Ok(futex::requeue(
                &t,
                addr,
                shared,
                n_wake as u32,
                addr2,
                n_move as u32,
            ))
        }
    }
}

/// A NULL-terminated array of strings (argv, envp); NULL itself is an empty array.
fn user_strings(ptr: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if ptr == 0 {
        return Ok(out);
    }
    loop {
        let p: u64 = read_user(ptr as usize + out.len() * 8).map_err(|_| EFAULT)?;
        if p == 0 {
            return Ok(out);
        }
        if out.len() == MAX_ARGS {
            return Err(E2BIG);
        }
        let mut buf = alloc::vec![0u8; MAX_ARG_LEN];
        let n = strncpy_from_user(&mut buf, p as usize)
            .map_err(|_| EFAULT)?
            .ok_or(E2BIG)?;
        buf.truncate(n);
        out.push(buf);
    }
}

pub fn execve(frame: &mut TrapFrame, path: u64, argv: u64, envp: u64) -> Result<u64, Errno> {
    let path: String = user_path(path)?;
    let argv = user_strings(argv)?;
    let envp = user_strings(envp)?;
    let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
    let envp: Vec<&[u8]> = envp.iter().map(Vec::as_slice).collect();
    process::exec(frame, &path, &argv, &envp).map(|()| 0)
}

/// wait4: the child is reaped even if writing the status or rusage faults (as Linux).
pub fn wait4(pid: u64, status: u64, options: u64, rusage: u64) -> Result<u64, Errno> {
    let Some(child) = process::wait(pid as i64, options)? else {
        return Ok(0);
    };
    if status != 0 {
        write_user(status as usize, &child.exit_status.load(Ordering::Acquire))
            .map_err(|_| EFAULT)?;
    }
    if rusage != 0 {
        write_user(rusage as usize, &usage_of(&child)).map_err(|_| EFAULT)?;
    }
    Ok(child.pid() as u64)
}

/// struct rusage: ru_utime and ru_stime (timevals), then 14 longs from ru_maxrss;
/// ru_minflt is the fifth of them (index 8 of 18 words).
fn usage_of(t: &Task) -> [u64; 18] {
    let mut r = [0u64; 18];
    let us = t.ticks.load(Ordering::Relaxed) * 1_000_000 / crate::time::TICK_HZ;
    r[0] = us / 1_000_000;
    r[1] = us % 1_000_000;
    r[8] = t.minflt.load(Ordering::Relaxed);
    r
}

pub fn getrusage(who: u64, ptr: u64) -> Result<u64, Errno> {
    const SELF: i64 = 0;
    const CHILDREN: i64 = -1;
    const THREAD: i64 = 1;
    let r = match who as i64 {
        SELF | THREAD => usage_of(&me()),
        // Reaped children's usage is not accumulated.
        CHILDREN => [0; 18],
        _ => return Err(EINVAL),
    };
    write_user(ptr as usize, &r).map_err(|_| EFAULT)?;
    Ok(0)
}

pub fn sched_yield() -> Result<u64, Errno> {
    sched::schedule();
    Ok(0)
}

/// The task `pid` names (0: the caller): ESRCH if none, or not a process.
fn process(pid: u64) -> Result<Arc<Task>, Errno> {
    match pid as i32 {
        0 => Ok(me()),
        p if p > 0 => task::get(p as u32).filter(|t| t.is_user()).ok_or(ESRCH),
        _ => Err(ESRCH),
    }
}

/// prlimit64(pid, resource, new, old): the old [soft, hard] pair, then the new one
/// (EINVAL if soft > hard). Every process is root here, so raising a hard limit is
/// allowed, but RLIMIT_NOFILE cannot go above the descriptors this kernel has
/// (EPERM, as Linux above nr_open). RLIMIT_NOFILE is enforced; the others are
/// recorded and read back.
pub fn prlimit64(pid: u64, resource: u64, new: u64, old: u64) -> Result<u64, Errno> {
    let t = process(pid)?;
    // resource is an unsigned int.
    let resource = resource as u32 as usize;
    if resource >= RLIM_NLIMITS {
        return Err(EINVAL);
    }
    let new = if new != 0 {
        let [cur, max]: [u64; 2] = read_user(new as usize).map_err(|_| EFAULT)?;
        if cur > max {
            return Err(EINVAL);
        }
        if resource == RLIMIT_NOFILE && max > crate::fs::MAX_FDS as u64 {
            return Err(EPERM);
        }
        Some([cur, max])
    } else {
        None
    };
    let prev = {
        let mut r = t.rlimits.lock();
        let prev = r[resource];
        if let Some(n) = new {
            r[resource] = n;
        }
        prev
    };
    if let Some([cur, _]) = new.filter(|_| resource == RLIMIT_NOFILE) {
        t.files.lock().limit = cur as usize;
    }
    if old != 0 {
        write_user(old as usize, &prev).map_err(|_| EFAULT)?;
    }
    Ok(0)
}

pub fn getrlimit(resource: u64, old: u64) -> Result<u64, Errno> {
    prlimit64(0, resource, 0, old)
}

pub fn setrlimit(resource: u64, new: u64) -> Result<u64, Errno> {
    if new == 0 {
        return Err(EFAULT);
    }
    prlimit64(0, resource, new, 0)
}

/// The CPUs that are online, one bit each.
fn online_cpus() -> u64 {
    let n = crate::percpu::possible();
    if n >= 64 {
        u64::MAX
    } else {
        (1 << n) - 1
    }
}

/// The affinity syscalls' mask size check: whole longs (EINVAL), enough bits for
/// every CPU (EINVAL).
fn mask_len(len: u64) -> Result<usize, Errno> {
    if !len.is_multiple_of(8) || len.saturating_mul(8) < crate::percpu::possible() as u64 {
        return Err(EINVAL);
    }
    Ok(8)
}

/// sched_getaffinity: the mask (8 bytes: up to 64 CPUs) and its size.
pub fn sched_getaffinity(pid: u64, len: u64, ptr: u64) -> Result<u64, Errno> {
    let size = mask_len(len)?;
    let t = process(pid)?;
    let mask = t.affinity.load(Ordering::Relaxed) & online_cpus();
    write_user(ptr as usize, &mask).map_err(|_| EFAULT)?;
    Ok(size as u64)
}

/// sched_setaffinity: the CPUs the task may run on from now on (EINVAL if none is
/// online); a caller no longer allowed here moves at once.
pub fn sched_setaffinity(pid: u64, len: u64, ptr: u64) -> Result<u64, Errno> {
    let mut bytes = [0u8; 8];
    let n = (len as usize).min(8);
    crate::arch::aarch64::uaccess::copy_from_user(&mut bytes[..n], ptr as usize)
        .map_err(|_| EFAULT)?;
    let t = process(pid)?;
    let mask = u64::from_le_bytes(bytes) & online_cpus();
    if mask == 0 {
        return Err(EINVAL);
    }
    t.affinity.store(mask, Ordering::Relaxed);
    if Arc::ptr_eq(&t, &me()) && mask & (1 << crate::percpu::this_cpu().index) == 0 {
        sched::schedule();
    }
    Ok(0)
}

/// getcpu: the CPU the caller runs on (and NUMA node 0: there is one node).
pub fn getcpu(cpu: u64, node: u64) -> Result<u64, Errno> {
    if cpu != 0 {
        write_user(cpu as usize, &(crate::percpu::this_cpu().index as u32)).map_err(|_| EFAULT)?;
    }
    if node != 0 {
        write_user(node as usize, &0u32).map_err(|_| EFAULT)?;
    }
    Ok(0)
}

/// struct sysinfo (64-bit): uptime, loads[3], totalram, freeram, sharedram, bufferram,
/// totalswap, freeswap, procs (u16), totalhigh, freehigh, mem_unit (u32).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SysInfo {
    uptime: i64,
    loads: [u64; 3],
    totalram: u64,
    freeram: u64,
    sharedram: u64,
    bufferram: u64,
    totalswap: u64,
    freeswap: u64,
    procs: u16,
    pad: [u16; 3],
    totalhigh: u64,
    freehigh: u64,
    mem_unit: u32,
    reserved: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<SysInfo>() == 112);

/// sysinfo: uptime, memory in bytes (mem_unit 1) and the number of tasks. Load
/// averages are not computed here (0); there is no swap.
pub fn sysinfo(ptr: u64) -> Result<u64, Errno> {
    let f = crate::mm::frame::frames();
    let page = crate::mm::PAGE_SIZE as u64;
    let info = SysInfo {
        uptime: (crate::time::uptime_ns() / 1_000_000_000) as i64,
        totalram: f.managed_frames() as u64 * page,
        freeram: f.free_frames() as u64 * page,
        procs: task::count().min(u16::MAX as usize) as u16,
        mem_unit: 1,
        ..SysInfo::default()
    };
    write_user(ptr as usize, &info).map_err(|_| EFAULT)?;
    Ok(0)
}

const PR_SET_THP_DISABLE: u64 = 41;
const PR_GET_THP_DISABLE: u64 = 42;

/// prctl: PR_SET_THP_DISABLE / PR_GET_THP_DISABLE (the process's THP switch, kept
/// across fork and exec; the unused arguments must be 0, as Linux checks). Other
/// options are EINVAL.
pub fn prctl(option: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> Result<u64, Errno> {
    let t = me();
    let mut mm = t.mm.lock();
    let mm = mm.as_mut().ok_or(EINVAL)?;
    match option as u32 as u64 {
        PR_SET_THP_DISABLE if a3 | a4 | a5 == 0 => {
            mm.thp_disabled = a2 != 0;
            Ok(0)
        }
        PR_GET_THP_DISABLE if a2 | a3 | a4 | a5 == 0 => Ok(mm.thp_disabled as u64),
        _ => Err(EINVAL),
    }
}
