//! Switching between kernel threads of control, and the user FP/SIMD state.
//!
//! A thread's `Context` holds what a function call must preserve (x19-x29, the link
//! register, the stack pointer). `switch_context` saves the current thread into one
//! and resumes another; the scheduler's `finish_switch`, which the resumed thread runs
//! first (after `switch` returns, or from `thread_trampoline` on a first run), is what
//! declares the old thread off this CPU (`proc::sched` has the protocol).
//!
//! The kernel is built soft-float and never touches the FP/SIMD registers, so they
//! hold the user's values for as long as the kernel runs; they are saved and loaded
//! only when the CPU changes from one user thread to another.

#[repr(C)]
#[derive(Default)]
pub struct Context {
    pub x19_x29: [u64; 11],
    pub lr: u64,
    pub sp: u64,
}

/// Q0-Q31, FPCR, FPSR.
#[derive(Default)]
#[repr(C, align(16))]
pub struct FpState {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

core::arch::global_asm!(
    // switch_context(prev: *mut Context, next: *const Context)
    ".global switch_context",
    "switch_context:",
    "    mov x9, sp",
    "    stp x19, x20, [x0, #0]",
    "    stp x21, x22, [x0, #16]",
    "    stp x23, x24, [x0, #32]",
    "    stp x25, x26, [x0, #48]",
    "    stp x27, x28, [x0, #64]",
    "    stp x29, x30, [x0, #80]",
    "    str x9, [x0, #96]",
    "    ldp x19, x20, [x1, #0]",
    "    ldp x21, x22, [x1, #16]",
    "    ldp x23, x24, [x1, #32]",
    "    ldp x25, x26, [x1, #48]",
    "    ldp x27, x28, [x1, #64]",
    "    ldp x29, x30, [x1, #80]",
    "    ldr x9, [x1, #96]",
    "    mov sp, x9",
    "    ret",
    // First run of a thread: x19 = function, x20 = argument (both callee-saved, so
    // they survive finish_switch); IRQs on.
    ".global thread_trampoline",
    "thread_trampoline:",
    "    bl finish_switch",
    "    msr daifclr, #3",
    "    mov x0, x20",
    "    blr x19",
    "    brk #0x1",
    ".arch_extension fp",
    ".arch_extension simd",
    // fpsimd_save(state: *mut FpState)
    ".global fpsimd_save",
    "fpsimd_save:",
    "    stp q0, q1, [x0, #0]",
    "    stp q2, q3, [x0, #32]",
    "    stp q4, q5, [x0, #64]",
    "    stp q6, q7, [x0, #96]",
    "    stp q8, q9, [x0, #128]",
    "    stp q10, q11, [x0, #160]",
    "    stp q12, q13, [x0, #192]",
    "    stp q14, q15, [x0, #224]",
    "    stp q16, q17, [x0, #256]",
    "    stp q18, q19, [x0, #288]",
    "    stp q20, q21, [x0, #320]",
    "    stp q22, q23, [x0, #352]",
    "    stp q24, q25, [x0, #384]",
    "    stp q26, q27, [x0, #416]",
    "    stp q28, q29, [x0, #448]",
    "    stp q30, q31, [x0, #480]",
    "    mrs x1, fpcr",
    "    mrs x2, fpsr",
    "    add x0, x0, #512",
    "    stp x1, x2, [x0]",
    "    ret",
    // fpsimd_load(state: *const FpState)
    ".global fpsimd_load",
    "fpsimd_load:",
    "    ldp q0, q1, [x0, #0]",
    "    ldp q2, q3, [x0, #32]",
    "    ldp q4, q5, [x0, #64]",
    "    ldp q6, q7, [x0, #96]",
    "    ldp q8, q9, [x0, #128]",
    "    ldp q10, q11, [x0, #160]",
    "    ldp q12, q13, [x0, #192]",
    "    ldp q14, q15, [x0, #224]",
    "    ldp q16, q17, [x0, #256]",
    "    ldp q18, q19, [x0, #288]",
    "    ldp q20, q21, [x0, #320]",
    "    ldp q22, q23, [x0, #352]",
    "    ldp q24, q25, [x0, #384]",
    "    ldp q26, q27, [x0, #416]",
    "    ldp q28, q29, [x0, #448]",
    "    ldp q30, q31, [x0, #480]",
    "    add x0, x0, #512",
    "    ldp x1, x2, [x0]",
    "    msr fpcr, x1",
    "    msr fpsr, x2",
    "    ret",
);

extern "C" {
    fn switch_context(prev: *mut Context, next: *const Context);
    fn fpsimd_save(state: *mut FpState);
    fn fpsimd_load(state: *const FpState);
    static thread_trampoline: u8;
}

const _: () = assert!(core::mem::offset_of!(FpState, fpcr) == 512);

/// Save the current thread into `prev` and run `next`; returns when `prev` is resumed.
///
/// # Safety
/// Interrupts are masked; `next` was saved by `switch_context` or prepared by
/// `Context::new_thread`, and no other CPU runs it; `prev` stays valid until the
/// scheduler has seen the switch finish.
pub unsafe fn switch(prev: *mut Context, next: *const Context) {
    // SAFETY: the caller's contract.
    unsafe { switch_context(prev, next) }
}

impl Context {
    /// A context that starts `entry(arg)` on the stack `stack_top`, with IRQs on.
    pub fn new_thread(stack_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> Self {
        let mut c = Context::default();
        c.x19_x29[0] = entry as usize as u64;
        c.x19_x29[1] = arg;
        c.lr = core::ptr::addr_of!(thread_trampoline) as u64;
        c.sp = stack_top;
        c
    }
}

pub fn save_fp(state: &mut FpState) {
    // SAFETY: stores the FP/SIMD registers into a correctly sized, aligned buffer.
    unsafe { fpsimd_save(state) }
}

pub fn load_fp(state: &FpState) {
    // SAFETY: loads the FP/SIMD registers from a saved state.
    unsafe { fpsimd_load(state) }
}
