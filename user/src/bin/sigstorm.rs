//! A signal storm: one process (the sender) signals another (the target) `ROUNDS`
//! times from another CPU while the target faults pages in, forks and reaps
//! children, blocks in pipe reads, and spins with every general and FP/SIMD register
//! it can hold in use. Each signal is acknowledged by the target's handler through a
//! pipe before the next is sent, so none may merge with another: the handler must
//! run exactly `ROUNDS` times (no signal lost), every interrupted read and wait4
//! must restart (SA_RESTART), and the registers must come back unchanged after
//! every handler (they are checked after each spin).
#![no_std]
#![no_main]

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use rt::ensure;
use rt::fs::{close, read, write};
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::pipe::pipe2;
use rt::proc;
use rt::signal::{
    self, SigInfo, UContext, SA_RESTART, SA_SIGINFO, SIGPIPE, SIGUSR1, SIG_DFL, SIG_IGN,
};
use rt::test::{Context, Outcome, Suite};

rt::entry!(main);

const ROUNDS: u32 = 200;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("sigstorm");
    t.run("every_signal_handled_registers_intact", storm);
    t.finish()
}

/// Iterations of the register spin: longer than a tick under TCG, so that signals
/// arrive in the middle of it.
const SPIN: u64 = 2_000_000;

static HANDLED: AtomicU32 = AtomicU32::new(0);
static ACK: AtomicUsize = AtomicUsize::new(0);

global_asm!(
    ".arch_extension fp",
    ".arch_extension simd",
    // spin(iterations) -> mismatches: fill x19-x28 and v0-v31 with patterns, count
    // down x0 to 0 (a signal handler may run at any point), then compare.
    ".global storm_spin",
    "storm_spin:",
    "    stp x19, x20, [sp, #-96]!",
    "    stp x21, x22, [sp, #16]",
    "    stp x23, x24, [sp, #32]",
    "    stp x25, x26, [sp, #48]",
    "    stp x27, x28, [sp, #64]",
    "    .irp n, 19,20,21,22,23,24,25,26,27,28",
    "    mov x\\n, #(\\n * 0x101)",
    "    .endr",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    movi v\\n\\().16b, #\\n",
    "    .endr",
    "1:  subs x0, x0, #1",
    "    b.ne 1b",
    "    mov x1, #0",
    "    .irp n, 19,20,21,22,23,24,25,26,27,28",
    "    mov x2, #(\\n * 0x101)",
    "    cmp x\\n, x2",
    "    cinc x1, x1, ne",
    "    .endr",
    "    mov x0, x1",
    "    ldp x21, x22, [sp, #16]",
    "    ldp x23, x24, [sp, #32]",
    "    ldp x25, x26, [sp, #48]",
    "    ldp x27, x28, [sp, #64]",
    "    ldp x19, x20, [sp], #96",
    "    ret",
    // storm_vcheck() -> mismatches: v1-v31 must still hold their index bytes (v0 is
    // the scratch); called right after storm_spin.
    ".global storm_vcheck",
    "storm_vcheck:",
    "    mov x0, #0",
    "    .irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    movi v0.16b, #\\n",
    "    cmeq v0.16b, v0.16b, v\\n\\().16b",
    "    uminv b0, v0.16b",
    "    umov w1, v0.b[0]",
    "    cmp w1, #0xff",
    "    cinc x0, x0, ne",
    "    .endr",
    "    ret",
    // The handler clobbers every vector register before it returns.
    ".global storm_clobber",
    "storm_clobber:",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    movi v\\n\\().16b, #0xee",
    "    .endr",
    "    ret",
);

extern "C" {
    fn storm_spin(iterations: u64) -> u64;
    fn storm_vcheck() -> u64;
    fn storm_clobber();
}

extern "C" fn on_signal(_: u32, _: &SigInfo, _: &mut UContext) {
    HANDLED.fetch_add(1, SeqCst);
    // SAFETY: the program is soft-float: no Rust value lives in a vector register.
    unsafe { storm_clobber() };
    let _ = write(ACK.load(SeqCst), b"a");
}

/// The target: until the data pipe reaches EOF, read a byte, fault pages in, fork
/// now and then, spin with the registers in use. Exit status: 0, or which check
/// failed.
fn target(data: usize) -> i32 {
    let mut byte = [0u8; 1];
    let mut round = 0u32;
    loop {
        match read(data, &mut byte) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return 11,
        }
        round += 1;
        let Ok(r) = Region::anon(4 * PAGE, PROT_READ | PROT_WRITE, 0) else {
            return 12;
        };
        for p in 0..4 {
            r.store(p * PAGE + 7, round as u8);
        }
        if (0..4).any(|p| r.load(p * PAGE + 7) != round as u8) {
            return 13;
        }
        drop(r);
        if round.is_multiple_of(16) {
            match proc::fork_wait(|| 5) {
                Ok(s) if s.exited() && s.exit_status() == 5 => {}
                _ => return 14,
            }
        }
        // SAFETY: both preserve what the ABI asks and touch no memory.
        let bad = unsafe { storm_spin(SPIN) + storm_vcheck() };
        if bad != 0 {
            return 15;
        }
    }
    if HANDLED.load(SeqCst) != ROUNDS {
        return 16;
    }
    0
}

fn storm() -> Outcome {
    // A target that fails exits early: the sender's writes then fail with EPIPE
    // instead of killing it, so that the check reports the target's status.
    signal::set(SIGPIPE, SIG_IGN).ctx("SIG_IGN")?;
    let r = storm_rounds();
    signal::set(SIGPIPE, SIG_DFL).ctx("SIG_DFL")?;
    r
}

fn storm_rounds() -> Outcome {
    let (data_r, data_w) = pipe2(0).ctx("pipe2")?;
    let (ack_r, ack_w) = pipe2(0).ctx("pipe2")?;
    // The target inherits its handler: none of its signals can come before it.
    ACK.store(ack_w, SeqCst);
    signal::on(SIGUSR1, on_signal, SA_SIGINFO | SA_RESTART).ctx("sigaction")?;
    let t = proc::spawn(|| {
        let _ = close(data_w);
        let _ = close(ack_r);
        target(data_r)
    });
    signal::set(SIGUSR1, SIG_DFL).ctx("SIG_DFL")?;
    let t = t.ctx("fork target")?;
    close(data_r).ctx("close")?;
    close(ack_w).ctx("close")?;
    let mut acked = 0;
    let mut a = [0u8; 1];
    for _ in 0..ROUNDS {
        // The byte first: the signal then lands while the target faults, forks or
        // spins (a running target takes it on its next tick).
        if write(data_w, b"d").is_err() || signal::kill(t as isize, SIGUSR1).is_err() {
            break;
        }
        if read(ack_r, &mut a) != Ok(1) {
            break;
        }
        acked += 1;
    }
    close(data_w).ctx("close")?;
    let s = proc::wait(t).ctx("wait")?;
    close(ack_r).ctx("close")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "target {s} after {acked} rounds"
    );
    ensure!(acked == ROUNDS, "{acked} acknowledgements of {ROUNDS}");
    Ok(())
}
