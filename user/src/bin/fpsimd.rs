//! The kernel saves and restores each process's FP/SIMD state: v0-v31, FPCR and FPSR
//! are loaded with a pattern, held across sched_yield calls and busy loops spanning
//! several timer ticks (alone, then with a forked child holding its own pattern at
//! the same time), and read back. The runtime itself is built without FP; only the
//! assembly here touches those registers, so the compiler never uses them in between.
#![no_std]
#![no_main]

use core::arch::asm;
use rt::proc;
use rt::test::{Context, Outcome, Suite};
use rt::time::now_ns;
use rt::{ensure, println};

rt::entry!(main);

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("fpsimd");
    let spin = calibrate();
    t.run("alone", || check(0x5a, spin));
    t.run("with_child", || {
        let child = proc::spawn(|| check(0xa5, spin).is_err() as i32).ctx("fork")?;
        let mine = check(0x3c, spin);
        let s = proc::wait(child).ctx("wait4")?;
        mine?;
        ensure!(s.exited() && s.exit_status() == 0, "child's registers: {s}");
        Ok(())
    });
    t.finish()
}

/// Rounds of busy loop + sched_yield per hold.
const ROUNDS: usize = 20;

/// FP state: 32 128-bit registers, FPCR, FPSR.
#[repr(C, align(16))]
#[derive(PartialEq, Eq)]
struct State {
    v: [[u8; 16]; 32],
    fpcr: u64,
    fpsr: u64,
}

impl State {
    /// Distinct bytes per register and per `seed`; FPCR: DN, FZ and a rounding mode
    /// from the seed; FPSR: QC, IXC and IOC or DZC.
    fn pattern(seed: u8) -> State {
        let mut v = [[0u8; 16]; 32];
        for (r, reg) in v.iter_mut().enumerate() {
            for (i, b) in reg.iter_mut().enumerate() {
                *b = seed ^ (r as u8).wrapping_mul(17) ^ (i as u8).wrapping_mul(29);
            }
        }
        let fpcr = 1 << 25 | 1 << 24 | ((seed as u64 & 3) << 22);
        let fpsr = 1 << 27 | 1 << 4 | (1 << (seed & 1));
        State { v, fpcr, fpsr }
    }
}

/// Loads `s`, runs `rounds` x (busy loop of `spin` iterations; sched_yield), and
/// stores the registers back into `s`.
fn hold(s: &mut State, rounds: usize, spin: usize) {
    let p = s as *mut State;
    // SAFETY: reads and writes only *s (32 x 16 bytes, then FPCR and FPSR). The
    // v registers, FPCR and FPSR are not declared as clobbers because this target
    // (softfloat) never allocates them; x0 and x8 are the sched_yield call's.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "mov {q}, {p}",
            "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{q}], #64",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{q}], #64",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{q}], #64",
            "ld1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{q}], #64",
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{q}], #64",
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{q}], #64",
            "ld1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [{q}], #64",
            "ld1 {{v28.16b, v29.16b, v30.16b, v31.16b}}, [{q}], #64",
            "ldp {a}, {b}, [{q}]",
            "msr fpcr, {a}",
            "msr fpsr, {b}",
            "1:",
            "mov {i}, {spin}",
            "2:",
            "subs {i}, {i}, #1",
            "b.ne 2b",
            "mov x8, #124",
            "svc #0",
            "subs {r}, {r}, #1",
            "b.ne 1b",
            "mov {q}, {p}",
            "st1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{q}], #64",
            "st1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{q}], #64",
            "st1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{q}], #64",
            "st1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{q}], #64",
            "st1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{q}], #64",
            "st1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{q}], #64",
            "st1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [{q}], #64",
            "st1 {{v28.16b, v29.16b, v30.16b, v31.16b}}, [{q}], #64",
            "mrs {a}, fpcr",
            "mrs {b}, fpsr",
            "stp {a}, {b}, [{q}]",
            p = in(reg) p,
            spin = in(reg) spin,
            q = out(reg) _,
            a = out(reg) _,
            b = out(reg) _,
            i = out(reg) _,
            r = inout(reg) rounds => _,
            out("x0") _,
            out("x8") _,
            options(nostack),
        );
    }
}

/// A spin count making one round take about 10 ms here, so that a hold of ROUNDS
/// rounds spans about 200 ms of timer ticks. Measured on the second of two holds
/// (the first pays for the first touch of the code and the stack).
fn calibrate() -> usize {
    let mut s = State::pattern(0);
    let spin = 1 << 20;
    hold(&mut s, 1, spin);
    let t0 = now_ns();
    hold(&mut s, 1, spin);
    let ns = (now_ns() - t0).max(1);
    let scaled = (spin as i128 * 10_000_000 / ns).clamp(1 << 12, 1 << 30) as usize;
    println!(
        "fpsimd: {spin} iterations in {} us, {scaled} per round",
        ns / 1000
    );
    scaled
}

fn check(seed: u8, spin: usize) -> Outcome {
    let want = State::pattern(seed);
    let mut got = State::pattern(seed);
    let t0 = now_ns();
    hold(&mut got, ROUNDS, spin);
    let ms = (now_ns() - t0) / 1_000_000;
    if let Some(r) = (0..32).find(|&r| got.v[r] != want.v[r]) {
        rt::fail!(
            "v{r} changed after {ms} ms: {:02x?} want {:02x?}",
            got.v[r],
            want.v[r]
        );
    }
    ensure!(
        got.fpcr == want.fpcr,
        "FPCR {:#x} want {:#x} after {ms} ms",
        got.fpcr,
        want.fpcr
    );
    ensure!(
        got.fpsr == want.fpsr,
        "FPSR {:#x} want {:#x} after {ms} ms",
        got.fpsr,
        want.fpsr
    );
    println!("fpsimd: seed {seed:#x} held {ms} ms");
    Ok(())
}
