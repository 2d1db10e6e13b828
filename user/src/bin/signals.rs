//! Signals with handlers, as Linux 6.12 delivers them on arm64: rt_sigaction's flags
//! (SA_SIGINFO, SA_RESTORER or the kernel's trampoline, SA_NODEFER, SA_RESETHAND,
//! SA_ONSTACK, SA_RESTART), SIG_IGN and the default actions, the mask and pending
//! set, rt_sigsuspend, sigaltstack, the siginfo of kill/tgkill, of faults (si_code
//! and exact si_addr: the handler skips the faulting instruction through the
//! ucontext's pc) and of SIGCHLD; every general and FP/SIMD register restored by
//! rt_sigreturn; hostile frames (PSTATE naming EL1 or masking interrupts, a corrupt
//! context record, an unmapped stack) kill with SIGSEGV; wait4 interrupted returns
//! EINTR or restarts; kill of another process, signal 0, ESRCH.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use rt::mm::{Region, PAGE, PROT_NONE, PROT_READ, PROT_WRITE};
use rt::proc::{self, expect_killed};
use rt::signal::*;
use rt::test::{Context, Outcome, Suite};
use rt::time::{nanosleep, Timespec};
use rt::{ensure, Errno};

rt::entry!(main);

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("signals");
    t.run("handler_runs_through_trampoline", handler_runs);
    t.run("handler_returns_through_sa_restorer", with_restorer);
    t.run("siginfo_of_kill_and_tgkill", siginfo_of_kill);
    t.run("segv_maperr_exact_addr", segv_maperr);
    t.run("segv_accerr_write_read_only", segv_accerr);
    t.run("segv_accerr_prot_none", segv_prot_none);
    t.run("bus_adraln_exact_addr", bus_adraln);
    t.run("every_register_restored", registers_restored);
    t.run("frame_has_fpsimd_record", fpsimd_record);
    t.run("mask_defers_until_unblocked", mask_defers);
    t.run("kill_and_stop_cannot_be_blocked_or_caught", unblockable);
    t.run("nodefer_nests_default_defers", nodefer);
    t.run("resethand_then_default_kills", resethand);
    t.run("ignore_and_default_actions", ignore_and_default);
    t.run("altstack_onstack_eperm_enomem", altstack);
    t.run("sigsuspend_eintr_restores_mask", sigsuspend_check);
    t.run("sigchld_siginfo", sigchld);
    t.run("sigtimedwait_pending_timeout_wakeup", sigtimedwait_check);
    t.run("wait4_eintr_without_sa_restart", || wait_interrupted(0));
    t.run("wait4_restarts_with_sa_restart", || {
        wait_interrupted(SA_RESTART)
    });
    t.run("kill_other_process_signal0_esrch", kill_other);
    t.run("hostile_pstate_el1_segv", || hostile(evil_el1));
    t.run("hostile_pstate_daif_segv", || hostile(evil_daif));
    t.run("hostile_record_segv", || hostile(evil_record));
    t.run("sigreturn_bad_sp_segv", sigreturn_bad_sp);
    t.run("fault_without_handler_kills", || {
        expect_killed("signals", SIGSEGV, || load(0xdead_0000))
    });
    t.finish()
}

static HITS: AtomicU32 = AtomicU32::new(0);
static SIG: AtomicU32 = AtomicU32::new(0);
static CODE: AtomicI32 = AtomicI32::new(0);
static ADDR: AtomicU64 = AtomicU64::new(0);
static PID: AtomicU32 = AtomicU32::new(0);
static STATUS: AtomicI32 = AtomicI32::new(0);
static DEPTH: AtomicU32 = AtomicU32::new(0);
static MAX_DEPTH: AtomicU32 = AtomicU32::new(0);
static SP: AtomicU64 = AtomicU64::new(0);
static FLAGS: AtomicU32 = AtomicU32::new(0);
static ERR: AtomicI32 = AtomicI32::new(0);

fn reset() {
    for s in [&HITS, &SIG, &PID, &DEPTH, &MAX_DEPTH, &FLAGS] {
        s.store(0, SeqCst);
    }
    for s in [&CODE, &STATUS, &ERR] {
        s.store(0, SeqCst);
    }
    ADDR.store(0, SeqCst);
    SP.store(0, SeqCst);
    for sig in [SIGUSR1, SIGUSR2, SIGSEGV, SIGBUS, SIGCHLD] {
        let _ = set(sig, SIG_DFL);
    }
    let _ = sigprocmask(SIG_SETMASK, Some(0));
}

/// Records the signal and its siginfo.
extern "C" fn record(sig: u32, info: &SigInfo, _uc: &mut UContext) {
    HITS.fetch_add(1, SeqCst);
    SIG.store(sig, SeqCst);
    CODE.store(info.code, SeqCst);
    ADDR.store(info.addr(), SeqCst);
    PID.store(info.pid(), SeqCst);
    STATUS.store(info.status(), SeqCst);
}

/// Counts and records the signal only: without SA_SIGINFO, x1 and x2 are not
/// pointers.
extern "C" fn count(sig: u32, _info: &SigInfo, _uc: &mut UContext) {
    HITS.fetch_add(1, SeqCst);
    SIG.store(sig, SeqCst);
}

/// Records, then steps over the faulting instruction.
extern "C" fn skip(sig: u32, info: &SigInfo, uc: &mut UContext) {
    record(sig, info, uc);
    uc.pc += 4;
}

fn handler_runs() -> Outcome {
    reset();
    on(SIGUSR1, count, 0).ctx("sigaction")?;
    raise(SIGUSR1).ctx("kill")?;
    ensure!(
        HITS.load(SeqCst) == 1,
        "handler ran {} times",
        HITS.load(SeqCst)
    );
    ensure!(SIG.load(SeqCst) == SIGUSR1, "x0 {}", SIG.load(SeqCst));
    raise(SIGUSR1).ctx("kill")?;
    ensure!(
        HITS.load(SeqCst) == 2,
        "second signal: {} runs",
        HITS.load(SeqCst)
    );
    reset();
    Ok(())
}

fn with_restorer() -> Outcome {
    reset();
    let act = SigAction {
        handler: record as *const () as usize as u64,
        flags: SA_SIGINFO | SA_RESTORER,
        restorer: rt_sigreturn_restorer as *const () as usize as u64,
        mask: 0,
    };
    sigaction(SIGUSR2, Some(&act)).ctx("sigaction")?;
    let old = sigaction(SIGUSR2, None).ctx("sigaction read")?;
    ensure!(
        old.handler == act.handler && old.flags == act.flags && old.restorer == act.restorer,
        "read back {old:?}"
    );
    raise(SIGUSR2).ctx("kill")?;
    ensure!(
        HITS.load(SeqCst) == 1,
        "handler ran {} times",
        HITS.load(SeqCst)
    );
    reset();
    Ok(())
}

fn siginfo_of_kill() -> Outcome {
    reset();
    let me = proc::getpid().ctx("getpid")?;
    on(SIGUSR1, record, SA_SIGINFO).ctx("sigaction")?;
    raise(SIGUSR1).ctx("kill")?;
    ensure!(
        CODE.load(SeqCst) == SI_USER && PID.load(SeqCst) as usize == me,
        "kill: code {} pid {}",
        CODE.load(SeqCst),
        PID.load(SeqCst)
    );
    tgkill(me as isize, me as isize, SIGUSR1).ctx("tgkill")?;
    ensure!(
        CODE.load(SeqCst) == SI_TKILL && PID.load(SeqCst) as usize == me,
        "tgkill: code {} pid {}",
        CODE.load(SeqCst),
        PID.load(SeqCst)
    );
    reset();
    Ok(())
}

fn load(addr: usize) {
    // SAFETY: the address faults on purpose, in one instruction that a handler steps
    // over (or in a child the fault kills).
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) _) };
}

fn store(addr: usize) {
    // SAFETY: as `load`.
    unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) 0u64) };
}

fn fault(sig: u32, code: i32, addr: usize, access: impl FnOnce()) -> Outcome {
    reset();
    on(sig, skip, SA_SIGINFO).ctx("sigaction")?;
    access();
    let (hits, got_sig, got_code, got_addr) = (
        HITS.load(SeqCst),
        SIG.load(SeqCst),
        CODE.load(SeqCst),
        ADDR.load(SeqCst),
    );
    reset();
    ensure!(hits == 1, "handler ran {hits} times");
    ensure!(
        got_sig == sig && got_code == code && got_addr == addr as u64,
        "signal {got_sig} code {got_code} addr {got_addr:#x}, want {sig} {code} {addr:#x}"
    );
    Ok(())
}

fn segv_maperr() -> Outcome {
    fault(SIGSEGV, SEGV_MAPERR, 0xdead_0008, || load(0xdead_0008))
}

fn segv_accerr() -> Outcome {
    let r = Region::anon(PAGE, PROT_READ, 0).ctx("mmap")?;
    fault(SIGSEGV, SEGV_ACCERR, r.addr + 0x18, || store(r.addr + 0x18))
}

fn segv_prot_none() -> Outcome {
    let r = Region::anon(PAGE, PROT_NONE, 0).ctx("mmap")?;
    fault(SIGSEGV, SEGV_ACCERR, r.addr + 0x40, || load(r.addr + 0x40))
}

fn bus_adraln() -> Outcome {
    let r = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    r.fill(0, PAGE, 1);
    let at = r.addr + 0x21;
    fault(SIGBUS, BUS_ADRALN, at, || {
        // SAFETY: an exclusive load off its alignment faults; the handler skips it.
        unsafe { asm!("ldxr {v}, [{a}]", "clrex", a = in(reg) at, v = out(reg) _) }
    })
}

// Layout of the register probe's buffer, in u64s, once for the values loaded (at 0)
// and once for the values read back after the signal (at OUT): x0-x30, q0-q31 from
// PROBE_Q, then FPCR and FPSR.
const PROBE_Q: usize = 32;
const PROBE_FPCR: usize = 96;
const PROBE_FPSR: usize = 97;
const OUT: usize = 100;

global_asm!(
    ".arch_extension fp",
    ".arch_extension simd",
    // regs_probe(buf): load x2-x29, q0-q31, FPCR and FPSR from buf, kill(buf[0],
    // buf[1]) with x8 = 129, store every register to buf + OUT. x30 holds buf.
    ".global regs_probe",
    "regs_probe:",
    "    stp x29, x30, [sp, #-160]!",
    "    stp x19, x20, [sp, #16]",
    "    stp x21, x22, [sp, #32]",
    "    stp x23, x24, [sp, #48]",
    "    stp x25, x26, [sp, #64]",
    "    stp x27, x28, [sp, #80]",
    "    stp d8, d9, [sp, #96]",
    "    stp d10, d11, [sp, #112]",
    "    stp d12, d13, [sp, #128]",
    "    stp d14, d15, [sp, #144]",
    "    mov x30, x0",
    "    ldr x10, [x30, #768]",
    "    msr fpcr, x10",
    "    ldr x10, [x30, #776]",
    "    msr fpsr, x10",
    "    .irp n, 0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30",
    "    ldr q\\n, [x30, #(256 + 16 * \\n)]",
    "    .endr",
    "    .irp n, 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31",
    "    ldr q\\n, [x30, #(256 + 16 * \\n)]",
    "    .endr",
    "    .irp n, 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29",
    "    ldr x\\n, [x30, #(8 * \\n)]",
    "    .endr",
    "    ldp x0, x1, [x30]",
    "    svc #0",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
    "    str x\\n, [x30, #(800 + 8 * \\n)]",
    "    .endr",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    str q\\n, [x30, #(1056 + 16 * \\n)]",
    "    .endr",
    "    mrs x10, fpcr",
    "    str x10, [x30, #1568]",
    "    mrs x10, fpsr",
    "    str x10, [x30, #1576]",
    "    msr fpcr, xzr",
    "    msr fpsr, xzr",
    "    ldp d8, d9, [sp, #96]",
    "    ldp d10, d11, [sp, #112]",
    "    ldp d12, d13, [sp, #128]",
    "    ldp d14, d15, [sp, #144]",
    "    ldp x19, x20, [sp, #16]",
    "    ldp x21, x22, [sp, #32]",
    "    ldp x23, x24, [sp, #48]",
    "    ldp x25, x26, [sp, #64]",
    "    ldp x27, x28, [sp, #80]",
    "    ldp x29, x30, [sp], #160",
    "    ret",
    // The handler: counts, then overwrites every register it can (x0-x29, all of
    // q0-q31, FPCR, FPSR) before returning through x30 to the restorer.
    ".global regs_clobber",
    "regs_clobber:",
    "    adrp x9, REGS_HITS",
    "    add x9, x9, :lo12:REGS_HITS",
    "    ldr x10, [x9]",
    "    add x10, x10, #1",
    "    str x10, [x9]",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    movi v\\n\\().16b, #0xa5",
    "    .endr",
    "    msr fpcr, xzr",
    "    msr fpsr, xzr",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29",
    "    mov x\\n, #0x77",
    "    .endr",
    "    ret",
);

extern "C" {
    fn regs_probe(buf: *mut u64);
    fn regs_clobber(sig: u32, info: &SigInfo, uc: &mut UContext);
}

#[no_mangle]
static REGS_HITS: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(16))]
struct Probe([u64; 2 * OUT]);

fn registers_restored() -> Outcome {
    reset();
    let act = SigAction {
        handler: regs_clobber as *const () as usize as u64,
        flags: SA_SIGINFO,
        ..SigAction::default()
    };
    sigaction(SIGUSR1, Some(&act)).ctx("sigaction")?;
    let mut p = Probe([0; 2 * OUT]);
    for (i, v) in p.0[..OUT].iter_mut().enumerate() {
        *v = 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1) ^ 0x8000_0000_0000_0000;
    }
    p.0[0] = proc::getpid().ctx("getpid")? as u64;
    p.0[1] = SIGUSR1 as u64;
    p.0[8] = 129; // kill
                  // Round toward zero, flush-to-zero, default NaN, alternative half precision.
    p.0[PROBE_FPCR] = 0x07c0_0000;
    // The cumulative exception flags and QC.
    p.0[PROBE_FPSR] = 0x0800_009f;
    let before = REGS_HITS.load(SeqCst);
    // SAFETY: regs_probe saves and restores every callee-saved register and writes
    // only within the buffer.
    unsafe { regs_probe(p.0.as_mut_ptr()) };
    ensure!(
        REGS_HITS.load(SeqCst) == before + 1,
        "the handler did not run"
    );
    let base = p.0.as_ptr() as u64;
    let (inp, out) = p.0.split_at(OUT);
    ensure!(out[0] == 0, "x0 {:#x}: kill's result", out[0]);
    for n in 1..30 {
        ensure!(out[n] == inp[n], "x{n} {:#x}, want {:#x}", out[n], inp[n]);
    }
    ensure!(out[30] == base, "x30 {:#x}", out[30]);
    for n in PROBE_Q..PROBE_FPCR {
        ensure!(
            out[n] == inp[n],
            "q{} half {}: {:#x}, want {:#x}",
            (n - PROBE_Q) / 2,
            n % 2,
            out[n],
            inp[n]
        );
    }
    ensure!(
        out[PROBE_FPCR] == inp[PROBE_FPCR],
        "FPCR {:#x}",
        out[PROBE_FPCR]
    );
    ensure!(
        out[PROBE_FPSR] == inp[PROBE_FPSR],
        "FPSR {:#x}",
        out[PROBE_FPSR]
    );
    reset();
    Ok(())
}

static RECORD0: AtomicU64 = AtomicU64::new(0);
static V7: AtomicU64 = AtomicU64::new(0);

extern "C" fn read_frame(sig: u32, info: &SigInfo, uc: &mut UContext) {
    record(sig, info, uc);
    let (magic, size) = uc.record(0);
    RECORD0.store(((magic as u64) << 32) | size as u64, SeqCst);
    V7.store(uc.vreg(7) as u64, SeqCst);
    SP.store(uc.sp, SeqCst);
}

fn fpsimd_record() -> Outcome {
    reset();
    on(SIGUSR1, read_frame, SA_SIGINFO).ctx("sigaction")?;
    let pid = proc::getpid().ctx("getpid")?;
    let sp: u64;
    // SAFETY: the program is soft-float (v7 holds nothing of Rust's); kill touches
    // no memory.
    unsafe {
        asm!(".arch_extension fp", "mov x9, sp", "fmov d7, x10", "svc #0", out("x9") sp,
             in("x10") 0x1234_5678_9abc_def0u64, inlateout("x0") pid => _, in("x1") SIGUSR1,
             in("x8") 129)
    };
    let rec = RECORD0.load(SeqCst);
    ensure!(
        rec == ((FPSIMD_MAGIC as u64) << 32) | 528,
        "first record {rec:#x}"
    );
    ensure!(
        V7.load(SeqCst) == 0x1234_5678_9abc_def0,
        "v7 {:#x}",
        V7.load(SeqCst)
    );
    ensure!(
        SP.load(SeqCst) == sp,
        "sigcontext sp {:#x}, want {sp:#x}",
        SP.load(SeqCst)
    );
    reset();
    Ok(())
}

fn mask_defers() -> Outcome {
    reset();
    on(SIGUSR1, count, 0).ctx("sigaction")?;
    sigprocmask(SIG_BLOCK, Some(bit(SIGUSR1))).ctx("block")?;
    raise(SIGUSR1).ctx("kill")?;
    ensure!(HITS.load(SeqCst) == 0, "delivered while blocked");
    ensure!(
        sigpending().ctx("sigpending")? == bit(SIGUSR1),
        "pending {:#x}",
        sigpending().unwrap_or(0)
    );
    let old = sigprocmask(SIG_UNBLOCK, Some(bit(SIGUSR1))).ctx("unblock")?;
    ensure!(old == bit(SIGUSR1), "old mask {old:#x}");
    ensure!(HITS.load(SeqCst) == 1, "not delivered on unblock");
    ensure!(sigpending().ctx("sigpending")? == 0, "still pending");
    reset();
    Ok(())
}

fn unblockable() -> Outcome {
    reset();
    sigprocmask(SIG_SETMASK, Some(u64::MAX)).ctx("block all")?;
    let m = sigprocmask(SIG_SETMASK, Some(0)).ctx("unblock all")?;
    ensure!(m == !(bit(SIGKILL) | bit(SIGSTOP)), "mask {m:#x}");
    ensure!(
        on(SIGKILL, record, 0).err() == Some(Errno::EINVAL),
        "SIGKILL handler accepted"
    );
    ensure!(
        set(SIGSTOP, SIG_IGN).err() == Some(Errno::EINVAL),
        "SIGSTOP ignored"
    );
    ensure!(sigaction(SIGKILL, None).is_ok(), "reading SIGKILL's action");
    ensure!(
        sigaction(65, None).err() == Some(Errno::EINVAL),
        "signal 65 accepted"
    );
    ensure!(
        sigprocmask(7, Some(0)).err() == Some(Errno::EINVAL),
        "how 7 accepted"
    );
    Ok(())
}

extern "C" fn nested(sig: u32, _info: &SigInfo, _uc: &mut UContext) {
    let d = DEPTH.fetch_add(1, SeqCst) + 1;
    MAX_DEPTH.fetch_max(d, SeqCst);
    if HITS.fetch_add(1, SeqCst) == 0 {
        let _ = raise(sig);
    }
    DEPTH.fetch_sub(1, SeqCst);
}

fn nodefer() -> Outcome {
    for (flags, want) in [(0, 1), (SA_NODEFER, 2)] {
        reset();
        on(SIGUSR1, nested, flags).ctx("sigaction")?;
        raise(SIGUSR1).ctx("kill")?;
        let (hits, depth) = (HITS.load(SeqCst), MAX_DEPTH.load(SeqCst));
        ensure!(
            hits == 2 && depth == want,
            "flags {flags:#x}: {hits} runs, depth {depth}, want 2 and {want}"
        );
    }
    reset();
    Ok(())
}

fn resethand() -> Outcome {
    reset();
    on(SIGUSR1, count, SA_RESETHAND).ctx("sigaction")?;
    raise(SIGUSR1).ctx("kill")?;
    ensure!(HITS.load(SeqCst) == 1, "handler did not run");
    let now = sigaction(SIGUSR1, None).ctx("sigaction")?;
    ensure!(
        now.handler == SIG_DFL,
        "handler {:#x} after SA_RESETHAND",
        now.handler
    );
    on(SIGUSR1, count, SA_RESETHAND).ctx("sigaction")?;
    expect_killed("signals", SIGUSR1, || {
        let _ = raise(SIGUSR1);
        let _ = raise(SIGUSR1);
    })?;
    reset();
    Ok(())
}

fn ignore_and_default() -> Outcome {
    reset();
    set(SIGUSR1, SIG_IGN).ctx("SIG_IGN")?;
    raise(SIGUSR1).ctx("kill ignored")?;
    raise(SIGCHLD).ctx("kill SIGCHLD")?;
    // An ignored signal is not even pending while blocked-then-ignored.
    sigprocmask(SIG_BLOCK, Some(bit(SIGUSR2))).ctx("block")?;
    raise(SIGUSR2).ctx("kill")?;
    set(SIGUSR2, SIG_IGN).ctx("SIG_IGN")?;
    ensure!(
        sigpending().ctx("sigpending")? == 0,
        "ignored signal still pending"
    );
    reset();
    expect_killed("signals", SIGTERM, || {
        let _ = raise(SIGTERM);
    })
}

static ALT_EPERM: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_alt(sig: u32, info: &SigInfo, uc: &mut UContext) {
    record(sig, info, uc);
    let local = 0u8;
    SP.store(&local as *const u8 as u64, SeqCst);
    if let Ok(s) = sigaltstack(None) {
        FLAGS.store(s.flags, SeqCst);
    }
    let again = Stack {
        sp: 0,
        flags: SS_DISABLE,
        size: 0,
    };
    ALT_EPERM.store(sigaltstack(Some(&again)).err().map_or(0, |e| e.0), SeqCst);
}

fn altstack() -> Outcome {
    reset();
    const SIZE: usize = 16 * PAGE;
    let r = Region::anon(SIZE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    let small = Stack {
        sp: r.addr as u64,
        flags: 0,
        size: 4096,
    };
    ensure!(
        sigaltstack(Some(&small)).err() == Some(Errno::ENOMEM),
        "4 KiB altstack accepted"
    );
    let bad = Stack {
        flags: 0x10,
        size: SIZE as u64,
        ..small
    };
    ensure!(
        sigaltstack(Some(&bad)).err() == Some(Errno::EINVAL),
        "flags 0x10 accepted"
    );
    let good = Stack {
        size: SIZE as u64,
        ..small
    };
    let old = sigaltstack(Some(&good)).ctx("sigaltstack")?;
    ensure!(old.flags == SS_DISABLE, "old flags {}", old.flags);
    on(SIGUSR1, on_alt, SA_ONSTACK | SA_SIGINFO).ctx("sigaction")?;
    raise(SIGUSR1).ctx("kill")?;
    let sp = SP.load(SeqCst);
    let (flags, eperm) = (FLAGS.load(SeqCst), ALT_EPERM.load(SeqCst));
    let now = sigaltstack(Some(&Stack {
        sp: 0,
        flags: SS_DISABLE,
        size: 0,
    }))
    .ctx("disable")?;
    reset();
    ensure!(
        (r.addr as u64..(r.addr + SIZE) as u64).contains(&sp),
        "handler's stack {sp:#x} not on the altstack at {:#x}",
        r.addr
    );
    ensure!(flags == SS_ONSTACK, "flags in the handler {flags}");
    ensure!(eperm == Errno::EPERM.0, "changing it on it: {eperm}");
    ensure!(
        now.sp == r.addr as u64 && now.size == SIZE as u64 && now.flags == 0,
        "after: {now:?}"
    );
    Ok(())
}

fn sigsuspend_check() -> Outcome {
    reset();
    on(SIGUSR1, count, 0).ctx("sigaction")?;
    sigprocmask(SIG_BLOCK, Some(bit(SIGUSR1))).ctx("block")?;
    let parent = proc::getpid().ctx("getpid")?;
    let child = proc::spawn(|| kill(parent as isize, SIGUSR1).is_err() as i32).ctx("fork")?;
    let e = sigsuspend(0);
    let hits = HITS.load(SeqCst);
    let mask = sigprocmask(SIG_BLOCK, None).ctx("mask")?;
    let s = proc::wait(child).ctx("wait")?;
    reset();
    ensure!(e == Errno::EINTR, "sigsuspend: {e}");
    ensure!(hits == 1, "handler ran {hits} times");
    ensure!(mask == bit(SIGUSR1), "mask after {mask:#x}");
    ensure!(s.exited() && s.exit_status() == 0, "child {s}");
    Ok(())
}

fn sigchld() -> Outcome {
    reset();
    on(SIGCHLD, record, SA_SIGINFO | SA_RESTART).ctx("sigaction")?;
    let pid = proc::spawn(|| 3).ctx("fork")?;
    proc::wait(pid).ctx("wait")?;
    let got = (
        HITS.load(SeqCst),
        CODE.load(SeqCst),
        PID.load(SeqCst),
        STATUS.load(SeqCst),
    );
    ensure!(
        got == (1, CLD_EXITED, pid as u32, 3),
        "hits, code, pid, status {got:?}, want (1, {CLD_EXITED}, {pid}, 3)"
    );
    reset();
    on(SIGCHLD, record, SA_SIGINFO | SA_RESTART).ctx("sigaction")?;
    let pid = proc::spawn(|| {
        let _ = raise(SIGTERM);
        0
    })
    .ctx("fork")?;
    proc::wait(pid).ctx("wait")?;
    let got = (CODE.load(SeqCst), STATUS.load(SeqCst));
    reset();
    ensure!(got == (CLD_KILLED, SIGTERM as i32), "code, status {got:?}");
    Ok(())
}

fn sigtimedwait_check() -> Outcome {
    reset();
    let me = proc::getpid().ctx("getpid")?;
    sigprocmask(SIG_BLOCK, Some(bit(SIGUSR2))).ctx("block")?;
    raise(SIGUSR2).ctx("kill")?;
    let mut info = SigInfo::default();
    let sig = sigtimedwait(bit(SIGUSR2), &mut info, None).ctx("pending")?;
    ensure!(
        sig == SIGUSR2 && info.signo == SIGUSR2 as i32 && info.code == SI_USER,
        "took {sig}, signo {} code {}",
        info.signo,
        info.code
    );
    ensure!(info.pid() as usize == me, "si_pid {}", info.pid());
    ensure!(sigpending().ctx("sigpending")? == 0, "still pending");
    let e = sigtimedwait(bit(SIGUSR2), &mut info, Some(20)).err();
    ensure!(e == Some(Errno::EAGAIN), "timeout: {e:?}");
    let child = proc::spawn(|| {
        sleep_ms(50);
        kill(me as isize, SIGUSR2).is_err() as i32
    })
    .ctx("fork")?;
    let got = sigtimedwait(bit(SIGUSR2), &mut info, Some(5000));
    proc::wait(child).ctx("wait")?;
    reset();
    ensure!(got == Ok(SIGUSR2), "woken: {got:?}");
    Ok(())
}

fn sleep_ms(ms: i64) {
    let _ = nanosleep(&Timespec {
        sec: 0,
        nsec: ms * 1_000_000,
    });
}

/// The child signals the parent while it waits for the child, then exits later.
fn wait_interrupted(flags: u64) -> Outcome {
    reset();
    on(SIGUSR1, count, flags).ctx("sigaction")?;
    let parent = proc::getpid().ctx("getpid")?;
    let child = proc::spawn(|| {
        sleep_ms(100);
        let _ = kill(parent as isize, SIGUSR1);
        sleep_ms(100);
        0
    })
    .ctx("fork")?;
    let first = proc::wait4(child as isize, 0);
    let hits = HITS.load(SeqCst);
    let second = if first.is_err() {
        proc::wait4(child as isize, 0)
    } else {
        first
    };
    reset();
    ensure!(hits == 1, "handler ran {hits} times");
    if flags & SA_RESTART != 0 {
        ensure!(
            first.map(|(p, _)| p) == Ok(child),
            "wait4 with SA_RESTART: {:?}",
            first.map(|(p, _)| p)
        );
    } else {
        ensure!(
            first.err() == Some(Errno::EINTR),
            "wait4: {:?}",
            first.map(|(p, _)| p)
        );
    }
    ensure!(second.is_ok(), "reaping the child: {:?}", second.err());
    Ok(())
}

fn kill_other() -> Outcome {
    reset();
    let child = proc::spawn(|| loop {
        sigsuspend(0);
    })
    .ctx("fork")?;
    kill(child as isize, 0).ctx("signal 0")?;
    ensure!(
        kill(child as isize, 65).err() == Some(Errno::EINVAL),
        "signal 65 accepted"
    );
    ensure!(
        tgkill(child as isize, child as isize + 1000, 0).err() == Some(Errno::ESRCH),
        "tgkill of a thread in another group"
    );
    ensure!(
        tgkill(0, child as isize, 0).err() == Some(Errno::EINVAL),
        "tgkill with tgid 0"
    );
    kill(child as isize, SIGTERM).ctx("SIGTERM")?;
    let s = proc::wait(child).ctx("wait")?;
    ensure!(s.signaled() && s.term_sig() == SIGTERM, "child {s}");
    ensure!(
        kill(child as isize, 0).err() == Some(Errno::ESRCH),
        "reaped child still exists"
    );
    ensure!(
        kill(0x3fff_ffff, 0).err() == Some(Errno::ESRCH),
        "pid 0x3fffffff exists"
    );
    Ok(())
}

extern "C" fn evil_el1(_: u32, _: &SigInfo, uc: &mut UContext) {
    uc.pstate |= 0x5; // EL1h
}

extern "C" fn evil_daif(_: u32, _: &SigInfo, uc: &mut UContext) {
    uc.pstate |= 0x3c0; // D, A, I, F
}

extern "C" fn evil_record(_: u32, _: &SigInfo, uc: &mut UContext) {
    uc.set_record_magic(0, 0x1234_5678);
}

/// A handler that corrupts its frame: rt_sigreturn must kill with SIGSEGV (the child
/// has no SIGSEGV handler), never return to a raised exception level.
fn hostile(evil: Handler) -> Outcome {
    expect_killed("signals", SIGSEGV, || {
        if on(SIGUSR1, evil, SA_SIGINFO).is_ok() {
            let _ = raise(SIGUSR1);
        }
        proc::exit_group(9);
    })
}

fn sigreturn_bad_sp() -> Outcome {
    for sp in [0xdead_0000u64, 0x1000_0008, 0xffff_0000_4000_0000] {
        expect_killed("signals", SIGSEGV, || {
            // SAFETY: rt_sigreturn with a stack pointer that holds no frame: the
            // kernel kills the child before anything runs on that stack.
            unsafe { asm!("mov sp, {0}", "mov x8, #139", "svc #0", in(reg) sp, options(noreturn)) }
        })?;
    }
    Ok(())
}
