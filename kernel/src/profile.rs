//! A sampling profiler, `profile=PERIOD` on the command line (`scripts/profile.sh` runs
//! it): every PERIOD nanoseconds of emulated time, which under `-icount shift=0` are
//! PERIOD instructions, the EL1 physical timer (CNTP, free: the tick uses CNTV) fires
//! and its interrupt records where the CPU was: the interrupted PC, the exception level,
//! and at EL1 the link register and up to `CALLERS` return addresses from the
//! frame-pointer chain (frame records exist in every function of a profile build,
//! `-C force-frame-pointers=yes`, but not in the precompiled `core` and
//! `compiler_builtins`, whose `memcpy` and `memset` only the link register places; in
//! other builds the chain stops early). At power-off (`power::exit`) every CPU's
//! samples go to the console as folded stacks with counts (`profile: COUNT EL PC LR
//! CALLER...`, hex), which the host's `profile-report` symbolises with the kernel ELF.
//!
//! Why the timer and not the PMU's instruction counter overflowing: QEMU 7.2 raises the
//! PMU overflow interrupt late. Measured: a 5 M-iteration loop at EL1 with IRQs on and
//! a counter preset to overflow every 10000 instructions gave 4 interrupts, not ~2000;
//! QEMU notices the overflow only when it brings the counters up to date, at a PMU
//! register access or an exception-level change, so samples piled up at the IRQ unmask
//! after each kernel entry. The timer's interrupt is on time under icount.
//!
//! The sample is an interrupt, so code that runs with IRQs masked is charged to the
//! point where IRQs come back on (as with Linux's perf on arm64 without pseudo-NMI):
//! an IRQ-masked stretch shows up as its unmask site.
//!
//! Protocol: each CPU's buffer is written only by that CPU, in its timer interrupt (IRQs
//! masked): the slot first, then `len` (Release). The dump clears `ACTIVE`, then reads
//! each `len` (Acquire) and sorts the slots below it; a CPU that passed the `ACTIVE`
//! check before it was cleared writes only the slot at its `len`, which the dump does
//! not touch. Buffers are taken from the frame allocator at boot, before /init's frame
//! count is taken, and kept until power-off.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTP_CTL_EL0, CNTP_TVAL_EL0};
use tock_registers::interfaces::{Readable, Writeable};

use crate::arch::aarch64::trap::TrapFrame;
use crate::cmdline::CmdLine;
use crate::mm::{frame, phys_to_virt, PAGE_SIZE};
use crate::percpu::{this_cpu, MAX_CPUS};

/// Return addresses kept per sample.
const CALLERS: usize = 5;
/// One sample: the exception level, the PC, the link register, the callers (0: none).
type Record = [u64; 3 + CALLERS];
/// Each CPU's buffer: 2^10 frames, 65536 samples.
const BUFFER_ORDER: usize = 10;
const CAPACITY: usize = (PAGE_SIZE << BUFFER_ORDER) / core::mem::size_of::<Record>();
/// Below this the handler's own cost would dominate the profile.
const MIN_PERIOD: u32 = 1000;
/// How far above the trap frame a frame record may lie: one kernel stack
/// (`proc::task::KSTACK_ORDER`), all of it mapped kernel memory.
const STACK_SPAN: u64 = 16 << 10;

struct Buffer {
    slots: AtomicPtr<Record>,
    len: AtomicUsize,
    dropped: AtomicU64,
    /// Samples that found the CPU in its idle loop: time asleep (under icount the
    /// clock jumps to the next deadline), not instructions; counted, not kept.
    idle: AtomicU64,
}

static BUFFERS: [Buffer; MAX_CPUS] = [const {
    Buffer {
        slots: AtomicPtr::new(core::ptr::null_mut()),
        len: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        idle: AtomicU64::new(0),
    }
}; MAX_CPUS];

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The sampling period in counter ticks (CNTFRQ_EL0).
static PERIOD_TICKS: AtomicU32 = AtomicU32::new(0);

/// Boot CPU, after `interrupts::init`: start the profiler if `profile=PERIOD` asks for
/// it; `intid` is the EL1 physical timer's.
pub fn init(cmd: &CmdLine<'_>, intid: u32, cpus: usize) {
    let Some(value) = cmd.get("profile") else {
        return;
    };
    let period = match value.parse::<u32>() {
        Ok(p) if p >= MIN_PERIOD => p,
        _ => {
            log::warn!("profile={value}: the period must be a number >= {MIN_PERIOD}: no profile");
            return;
        }
    };
    let ticks = u64::from(period) * platform::timer::frequency() / 1_000_000_000;
    let Ok(ticks) = u32::try_from(ticks.max(1)) else {
        log::warn!("profile={value}: period too long for the timer: no profile");
        return;
    };
    for b in BUFFERS.iter().take(cpus.min(MAX_CPUS)) {
        let Some(pa) = frame::frames().alloc(BUFFER_ORDER) else {
            log::warn!("profile: no memory for the sample buffers");
            return;
        };
        b.slots
            .store(phys_to_virt(pa).as_ptr::<Record>(), Ordering::Release);
    }
    PERIOD_TICKS.store(ticks, Ordering::Relaxed);
    crate::interrupts::set_profile_handler(intid, on_sample);
    ACTIVE.store(true, Ordering::Release);
    crate::console::print(format_args!(
        "profile: sampling every {period} ns ({ticks} timer ticks; instructions under icount) \
         on INTID {intid}, {CAPACITY} samples per CPU\n"
    ));
    start_cpu();
}

/// Each CPU (the boot CPU from `init`, secondaries at bring-up): start sampling here.
pub fn start_cpu() {
    if !ACTIVE.load(Ordering::Acquire) {
        return;
    }
    arm_timer();
    crate::interrupts::enable_profile_timer();
}

/// The next sample a period from now. TVAL is relative (a signed 32-bit count of
/// ticks); writing it re-arms the timer and deasserts its level interrupt.
fn arm_timer() {
    CNTP_TVAL_EL0.set(u64::from(PERIOD_TICKS.load(Ordering::Relaxed)));
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
    barrier::isb(barrier::SY);
}

/// The timer interrupt (IRQs masked): record one sample of the interrupted context.
fn on_sample(frame: &TrapFrame) {
    if !CNTP_CTL_EL0.is_set(CNTP_CTL_EL0::ISTATUS) {
        return;
    }
    if !ACTIVE.load(Ordering::Relaxed) {
        CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::CLEAR);
        return;
    }
    arm_timer();
    let cpu = this_cpu();
    let b = &BUFFERS[cpu.index];
    if cpu.idle.load(Ordering::Relaxed) {
        b.idle.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let slots = b.slots.load(Ordering::Relaxed);
    let len = b.len.load(Ordering::Relaxed);
    if slots.is_null() || len >= CAPACITY {
        b.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let r = record(frame);
    // SAFETY: slot `len` < CAPACITY lies in this CPU's buffer, which only this CPU
    // writes, here, with IRQs masked; nobody reads it before `len` is published.
    unsafe { slots.add(len).write(r) };
    b.len.store(len + 1, Ordering::Release);
}

/// The interrupted PC, its exception level (SPSR_EL1.M[3:2]) and, at EL1, the link
/// register and the return addresses of the frame records (x29 -> [previous x29, x30])
/// above the trap frame.
fn record(frame: &TrapFrame) -> Record {
    let mut r = [0; 3 + CALLERS];
    let el = (frame.spsr >> 2) & 3;
    r[0] = el;
    r[1] = frame.elr;
    if el != 1 {
        return r;
    }
    r[2] = frame.x[30];
    // The interrupted code's frames lie above the trap frame on the same stack.
    let low = frame as *const TrapFrame as u64;
    let high = low + STACK_SPAN;
    let mut fp = frame.x[29];
    for caller in r[3..].iter_mut() {
        if !fp.is_multiple_of(8) || fp <= low || fp > high - 16 {
            break;
        }
        // SAFETY: two aligned words within STACK_SPAN above the trap frame: the rest of
        // the interrupted kernel stack, or kernel memory the linear map covers.
        let (next, lr) = unsafe { (*(fp as *const u64), *((fp + 8) as *const u64)) };
        if lr == 0 {
            break;
        }
        *caller = lr;
        if next <= fp {
            break;
        }
        fp = next;
    }
    r
}

/// Power-off: stop sampling and print every CPU's samples as folded stacks with counts
/// (without the console lock: this may run on a panic path).
pub fn dump() {
    if !ACTIVE.swap(false, Ordering::AcqRel) {
        return;
    }
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::CLEAR);
    let print = crate::console::emergency_print;
    for (cpu, b) in BUFFERS.iter().enumerate() {
        let slots = b.slots.load(Ordering::Acquire);
        if slots.is_null() {
            continue;
        }
        let len = b.len.load(Ordering::Acquire);
        // SAFETY: the first `len` slots are written and published; their CPU writes
        // only at `len` and beyond (protocol above), so they are ours to sort.
        let samples = unsafe { core::slice::from_raw_parts_mut(slots, len) };
        samples.sort_unstable();
        let dropped = b.dropped.load(Ordering::Relaxed);
        let idle = b.idle.load(Ordering::Relaxed);
        print(format_args!(
            "profile: cpu {cpu} samples {len} dropped {dropped} idle {idle}\n"
        ));
        for same in samples.chunk_by(|a, b| a == b) {
            let r = same[0];
            print(format_args!(
                "profile: {} {} {:x} {:x}",
                same.len(),
                r[0],
                r[1],
                r[2]
            ));
            for &c in r[3..].iter().take_while(|&&c| c != 0) {
                print(format_args!(" {c:x}"));
            }
            print(format_args!("\n"));
        }
    }
    print(format_args!("profile: end\n"));
}
