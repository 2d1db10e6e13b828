//! Process calls as Linux 6.12 has them: sched_getaffinity/sched_setaffinity (the
//! mask read back, inherited by fork, and obeyed: pinned to one CPU, getcpu always
//! names it), sysinfo (memory and uptime that make sense), getrlimit/setrlimit/
//! prlimit64 (RLIMIT_NOFILE enforced: descriptors stop at the soft limit), and
//! prctl(PR_SET_THP_DISABLE) (no 2 MiB folio for a process that disabled THP, even
//! with the policy at `always`; kept across fork).
#![no_std]
#![no_main]

use rt::mm::{Region, MADV_HUGEPAGE, PROT_READ, PROT_WRITE};
use rt::pipe::{fcntl, pipe2, F_DUPFD};
use rt::proc;
use rt::sys::nr;
use rt::test::{Context, Outcome, Suite};
use rt::thp;
use rt::{ensure, Errno};

rt::entry!(main);

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("procs");
    t.run("affinity_read_set_inherited_obeyed", affinity);
    t.run("sysinfo_memory_and_uptime", sysinfo);
    t.run("rlimit_nofile_enforced", rlimits);
    t.run("prctl_thp_disable", thp_disable);
    t.finish()
}

macro_rules! sys {
    ($($t:tt)*) => {
        // SAFETY: every pointer passed points to a local of the right size.
        unsafe { rt::syscall!($($t)*) }
    };
}

fn getaffinity(pid: usize) -> Result<u64, Errno> {
    let mut m = 0u64;
    let n = sys!(nr::SCHED_GETAFFINITY, pid, 8, &mut m as *mut u64)?;
    assert_eq!(n, 8);
    Ok(m)
}

fn setaffinity(pid: usize, mask: u64) -> Result<usize, Errno> {
    sys!(nr::SCHED_SETAFFINITY, pid, 8, &mask as *const u64)
}

fn getcpu() -> Result<u32, Errno> {
    let mut cpu = u32::MAX;
    sys!(nr::GETCPU, &mut cpu as *mut u32, 0, 0)?;
    Ok(cpu)
}

fn affinity() -> Outcome {
    let all = getaffinity(0).ctx("sched_getaffinity")?;
    ensure!(
        all != 0 && (all + 1).is_power_of_two(),
        "online mask {all:#x}"
    );
    let mut m = 0u64;
    ensure!(
        sys!(nr::SCHED_GETAFFINITY, 0, 4, &mut m as *mut u64).err() == Some(Errno::EINVAL),
        "a 4-byte mask accepted"
    );
    ensure!(
        setaffinity(0, 0).err() == Some(Errno::EINVAL),
        "empty mask accepted"
    );
    ensure!(
        getaffinity(0x3fff_ffff).err() == Some(Errno::ESRCH),
        "pid 0x3fffffff found"
    );
    let last = 63 - all.leading_zeros();
    setaffinity(0, 1 << last).ctx("pin")?;
    for _ in 0..20 {
        let c = getcpu().ctx("getcpu")?;
        ensure!(c == last, "pinned to cpu{last}, running on cpu{c}");
        rt::time::sched_yield().ctx("sched_yield")?;
    }
    let s = proc::fork_wait(|| (getaffinity(0) != Ok(1 << last)) as i32).ctx("fork")?;
    setaffinity(0, all).ctx("unpin")?;
    ensure!(s.exited() && s.exit_status() == 0, "child's mask: {s}");
    ensure!(getaffinity(0).ctx("get")? == all, "mask not restored");
    Ok(())
}

#[repr(C)]
#[derive(Default)]
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

fn sysinfo() -> Outcome {
    let mut s = SysInfo::default();
    sys!(nr::SYSINFO, &mut s as *mut SysInfo).ctx("sysinfo")?;
    let unit = s.mem_unit as u64;
    ensure!(unit >= 1, "mem_unit {}", s.mem_unit);
    let (total, free) = (s.totalram * unit, s.freeram * unit);
    ensure!(
        (256 << 20..=64 << 30).contains(&total) && free > 0 && free < total,
        "total {total}, free {free}"
    );
    ensure!(s.procs >= 2, "procs {}", s.procs);
    ensure!(s.uptime >= 0, "uptime {}", s.uptime);
    ensure!(
        sys!(nr::SYSINFO, 0xffff_0000_4000_0000usize).err() == Some(Errno::EFAULT),
        "sysinfo to a kernel address"
    );
    Ok(())
}

const RLIMIT_STACK: usize = 3;
const RLIMIT_NOFILE: usize = 7;

fn getrlimit(r: usize) -> Result<[u64; 2], Errno> {
    let mut l = [0u64; 2];
    sys!(nr::GETRLIMIT, r, &mut l as *mut [u64; 2])?;
    Ok(l)
}

fn setrlimit(r: usize, l: [u64; 2]) -> Result<usize, Errno> {
    sys!(nr::SETRLIMIT, r, &l as *const [u64; 2])
}

fn rlimits() -> Outcome {
    let stack = getrlimit(RLIMIT_STACK).ctx("getrlimit stack")?;
    ensure!(stack[0] == 8 << 20, "stack limit {:#x}", stack[0]);
    ensure!(getrlimit(99).err() == Some(Errno::EINVAL), "resource 99");
    let old = getrlimit(RLIMIT_NOFILE).ctx("getrlimit nofile")?;
    ensure!(
        setrlimit(RLIMIT_NOFILE, [old[1], old[1] - 1]).err() == Some(Errno::EINVAL),
        "soft above hard"
    );
    setrlimit(RLIMIT_NOFILE, [16, old[1]]).ctx("setrlimit 16")?;
    let mut fds = [0usize; 16];
    let mut n = 0;
    let e = loop {
        match pipe2(0) {
            Ok((r, w)) => {
                fds[n] = r;
                fds[n + 1] = w;
                n += 2;
            }
            Err(e) => break e,
        }
        if n >= fds.len() {
            break Errno(0);
        }
    };
    let dup_high = fcntl(0, F_DUPFD, 16).err();
    for &fd in &fds[..n] {
        let _ = rt::fs::close(fd);
    }
    let back = setrlimit(RLIMIT_NOFILE, old);
    ensure!(e == Errno::EMFILE, "pipe2 at the limit: {e}");
    ensure!(fds[..n].iter().all(|&fd| fd < 16), "a descriptor above 15");
    ensure!(n >= 10, "only {n} descriptors");
    ensure!(dup_high == Some(Errno::EINVAL), "F_DUPFD 16: {dup_high:?}");
    back.ctx("restore")?;
    Ok(())
}

const PR_SET_THP_DISABLE: usize = 41;
const PR_GET_THP_DISABLE: usize = 42;

fn prctl(opt: usize, a: usize, b: usize) -> Result<usize, Errno> {
    sys!(nr::PRCTL, opt, a, b, 0, 0)
}

/// Faults one page of a fresh 2 MiB-aligned, MADV_HUGEPAGE region: whether a 2 MiB
/// folio came of it.
fn pmd_fault() -> Result<bool, Errno> {
    let before = thp::stat(2048, "anon_fault_alloc").unwrap_or(0);
    let r = Region::anon_aligned(2 << 20, 2 << 20, PROT_READ | PROT_WRITE)?;
    // SAFETY: advice on our own mapping.
    unsafe { rt::syscall!(nr::MADVISE, r.addr, 2 << 20, MADV_HUGEPAGE)? };
    r.store(0, 1);
    Ok(thp::stat(2048, "anon_fault_alloc").unwrap_or(0) > before)
}

fn thp_disable() -> Outcome {
    ensure!(
        prctl(PR_GET_THP_DISABLE, 0, 0).ctx("get")? == 0,
        "disabled at start"
    );
    ensure!(
        prctl(PR_SET_THP_DISABLE, 1, 1).err() == Some(Errno::EINVAL),
        "arg3 != 0 accepted"
    );
    thp::mount_pseudo_fs();
    let saved = thp::Policy::save().map_err(|_| rt::test::Fail::new(format_args!("policy")))?;
    let r = (|| -> Outcome {
        thp::only(2048).map_err(|_| rt::test::Fail::new(format_args!("only 2M")))?;
        ensure!(pmd_fault().ctx("fault")?, "no 2 MiB folio with THP enabled");
        prctl(PR_SET_THP_DISABLE, 1, 0).ctx("set")?;
        ensure!(
            prctl(PR_GET_THP_DISABLE, 0, 0).ctx("get")? == 1,
            "not disabled"
        );
        ensure!(
            !pmd_fault().ctx("fault")?,
            "a 2 MiB folio with THP disabled"
        );
        let s = proc::fork_wait(|| {
            (prctl(PR_GET_THP_DISABLE, 0, 0) != Ok(1) || pmd_fault() != Ok(false)) as i32
        })
        .ctx("fork")?;
        ensure!(s.exited() && s.exit_status() == 0, "child: {s}");
        prctl(PR_SET_THP_DISABLE, 0, 0).ctx("clear")?;
        ensure!(
            pmd_fault().ctx("fault")?,
            "no 2 MiB folio after re-enabling"
        );
        Ok(())
    })();
    saved
        .restore()
        .map_err(|_| rt::test::Fail::new(format_args!("restore policy")))?;
    r
}
