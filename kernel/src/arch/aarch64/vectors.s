/*
 * Exception vector table (VBAR_EL1) and the trap frame.
 *
 * Every entry saves the full register state into a TrapFrame on the current stack
 * (SP_EL1: the kernel stack of the CPU or thread), calls trap_entry(frame, kind) in
 * Rust, and restores from the frame, so Rust may change ELR/SPSR/registers (fault
 * fix-ups, system call returns). Layout must match arch::aarch64::trap::TrapFrame.
 */
.equ FRAME_SIZE, 288   /* x0..x30, sp_el0, elr, spsr, esr, far */

.macro VECTOR kind
.balign 128
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       save_and_dispatch
.endm

.section .text
.balign 2048
.global exception_vectors
exception_vectors:
    VECTOR 0    /* current EL, SP_EL0: sync */
    VECTOR 1    /* irq */
    VECTOR 2    /* fiq */
    VECTOR 3    /* serror */
    VECTOR 4    /* current EL, SP_ELx: sync */
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8    /* lower EL, AArch64: sync */
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12   /* lower EL, AArch32 */
    VECTOR 13
    VECTOR 14
    VECTOR 15

save_and_dispatch:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x9, sp_el0
    stp     x30, x9, [sp, #240]
    mrs     x10, elr_el1
    mrs     x11, spsr_el1
    stp     x10, x11, [sp, #256]
    mrs     x12, esr_el1
    mrs     x13, far_el1
    stp     x12, x13, [sp, #272]
    mov     x1, x0
    mov     x0, sp
    bl      trap_entry

.global trap_return
trap_return:
    ldp     x10, x11, [sp, #256]
    msr     elr_el1, x10
    msr     spsr_el1, x11
    ldp     x30, x9, [sp, #240]
    msr     sp_el0, x9
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #FRAME_SIZE
    eret
