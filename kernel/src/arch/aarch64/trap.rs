//! Exception entry from `vectors.s`: the saved register state (`TrapFrame`), dispatch by
//! vector, fix-ups for instructions that are allowed to fault, and the decoded report
//! for everything else.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::esr::Esr;

/// Register state saved by `vectors.s`; the layout is fixed by its offsets.
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 288);

/// Which of the 16 vectors was taken (the `kind` `vectors.s` passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vector {
    Sync,
    Irq,
    Fiq,
    SError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Current EL while running on SP_EL0: the kernel never does this.
    CurrentSp0,
    CurrentSpx,
    LowerA64,
    LowerA32,
}

/// What to do when a known instruction faults: resume at `resume` with x0 = u64::MAX.
#[derive(Clone, Copy)]
pub struct Fixup {
    pub insn: usize,
    pub resume: usize,
}

const MAX_FIXUPS: usize = 16;
static FIXUPS: [AtomicUsize; 2 * MAX_FIXUPS] = [const { AtomicUsize::new(0) }; 2 * MAX_FIXUPS];

/// Whether QEMU answers semihosting: without `-semihosting` it makes the HLT an
/// undefined instruction, which the fix-up registered here turns into x0 = u64::MAX.
/// Safe: the request (SYS_ERRNO) takes no parameter block, and the trap is fixed up.
pub fn semihosting_answers() -> bool {
    /// SYS_ERRNO: harmless, answered by any semihosting host.
    const SYS_ERRNO: u64 = 0x13;
    let hlt = platform::semihost::hlt_address();
    register_fixup(Fixup {
        insn: hlt,
        resume: hlt + 4,
    });
    // SAFETY: SYS_ERRNO takes no parameter block; a trap is fixed up as above.
    let r = unsafe { platform::semihost::call(SYS_ERRNO, 0) };
    r != u64::MAX
}

/// Register an instruction that may fault at EL1 (semihosting probe, user-memory probes).
pub fn register_fixup(f: Fixup) {
    if let Some(i) = (0..MAX_FIXUPS).find(|&i| FIXUPS[2 * i].load(Ordering::Acquire) == f.insn) {
        FIXUPS[2 * i + 1].store(f.resume, Ordering::Release);
        return;
    }
    for i in 0..MAX_FIXUPS {
        if FIXUPS[2 * i]
            .compare_exchange(0, f.insn, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            FIXUPS[2 * i + 1].store(f.resume, Ordering::Release);
            return;
        }
    }
    panic!("fixup table full");
}

fn find_fixup(pc: usize) -> Option<usize> {
    (0..MAX_FIXUPS)
        .find(|&i| FIXUPS[2 * i].load(Ordering::Acquire) == pc)
        .map(|i| FIXUPS[2 * i + 1].load(Ordering::Acquire))
}

/// What the kernel does with the exceptions the architecture layer cannot handle
/// itself. Registered once at boot (arch never calls up into the kernel directly).
pub struct Handlers {
    /// An interrupt (GIC acknowledge, handle, EOI), given the interrupted context.
    pub irq: fn(&TrapFrame),
    /// SVC from EL0: a system call; the result goes into the frame.
    pub syscall: fn(&mut TrapFrame),
    /// Any other synchronous exception from EL0 (aborts, undefined instructions...).
    pub user_sync: fn(&mut TrapFrame),
    /// An EL1 abort on a user address by a user-access routine: `(far, write)`;
    /// true if the memory manager resolved it and the access should be retried.
    pub uaccess_fault: fn(usize, bool) -> bool,
    /// Last step before returning to EL0 (rescheduling, pending exit).
    pub return_to_user: fn(&mut TrapFrame),
}

static HANDLERS: spin::Once<Handlers> = spin::Once::new();

pub fn set_handlers(h: Handlers) {
    HANDLERS.call_once(|| h);
}

/// A decoded report of an exception, one `fault:` line per item.
pub struct Report<'a> {
    pub cpu: usize,
    pub vector: Vector,
    pub origin: Origin,
    pub frame: &'a TrapFrame,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = Esr(self.frame.esr);
        let from = match self.origin {
            Origin::CurrentSp0 | Origin::CurrentSpx => "EL1",
            Origin::LowerA64 | Origin::LowerA32 => "EL0",
        };
        let kind = match self.vector {
            Vector::Sync => "synchronous exception",
            Vector::Irq => "IRQ",
            Vector::Fiq => "FIQ",
            Vector::SError => "SError",
        };
        writeln!(
            f,
            "fault: cpu{} {from} {kind}: {} (EC {:#04x})",
            self.cpu,
            esr.ec(),
            esr.ec_raw()
        )?;
        if esr.is_abort() {
            writeln!(
                f,
                "fault:   FSC {:#04x} {} ({}); FAR {:#018x}",
                esr.fsc_raw(),
                esr.fault_status(),
                esr.access(),
                self.frame.far
            )?;
        }
        writeln!(
            f,
            "fault:   ELR {:#018x} SPSR {:#010x} ESR {:#010x}",
            self.frame.elr, self.frame.spsr, self.frame.esr
        )?;
        write!(
            f,
            "fault:   SP_EL0 {:#018x} LR {:#018x}",
            self.frame.sp_el0, self.frame.x[30]
        )
    }
}

fn decode_kind(kind: u64) -> (Origin, Vector) {
    let origin = match kind / 4 {
        0 => Origin::CurrentSp0,
        1 => Origin::CurrentSpx,
        2 => Origin::LowerA64,
        _ => Origin::LowerA32,
    };
    let vector = match kind % 4 {
        0 => Vector::Sync,
        1 => Vector::Irq,
        2 => Vector::Fiq,
        _ => Vector::SError,
    };
    (origin, vector)
}

/// A user-access instruction (one with a fix-up) faulted at EL1: whether the memory
/// manager resolved the fault, so that the access is retried. Only a data abort on a
/// user address with a memory-management fault status (translation, access flag,
/// permission: [`Esr::is_mm_fault`]) goes to `resolve`; any other fault (alignment,
/// external abort, TLB conflict) would only be taken again on retry, so it fails at
/// once: the fix-up makes the copy return an error, EFAULT for the caller.
pub fn uaccess_retry(esr: Esr, far: u64, resolve: Option<fn(usize, bool) -> bool>) -> bool {
    let user_addr = (far as usize) < super::uaccess::USER_END;
    esr.is_data_abort()
        && esr.is_mm_fault()
        && user_addr
        && resolve.is_some_and(|f| f(far as usize, esr.is_write()))
}

#[no_mangle]
extern "C" fn trap_entry(frame: &mut TrapFrame, kind: u64) {
    let (origin, vector) = decode_kind(kind);
    let h = HANDLERS.get();
    match (origin, vector, h) {
        (Origin::CurrentSpx, Vector::Irq, Some(h)) => return (h.irq)(frame),
        (Origin::LowerA64, Vector::Irq, Some(h)) => {
            (h.irq)(frame);
            return (h.return_to_user)(frame);
        }
        (Origin::LowerA64, Vector::Sync, Some(h)) => {
            if Esr(frame.esr).ec() == super::esr::ExceptionClass::Svc64 {
                (h.syscall)(frame);
            } else {
                (h.user_sync)(frame);
            }
            return (h.return_to_user)(frame);
        }
        (Origin::CurrentSpx, Vector::Sync, _) => {
            if let Some(resume) = find_fixup(frame.elr as usize) {
                let esr = Esr(frame.esr);
                if uaccess_retry(esr, frame.far, h.map(|h| h.uaccess_fault)) {
                    return; // resolved: retry the access
                }
                frame.x[0] = u64::MAX;
                frame.elr = resume as u64;
                return;
            }
        }
        _ => {}
    }
    let report = Report {
        cpu: crate::percpu::this_cpu().index,
        vector,
        origin,
        frame,
    };
    crate::console::emergency_print(format_args!("{report}\n"));
    panic!("unhandled exception");
}
