/*
 * Entry, EL2 -> EL1 drop, the boot page tables and the MMU switch-on.
 *
 * QEMU enters _start at its physical address with the MMU off, at EL1 (default) or
 * EL2 (-M virt,virtualization=on). Secondary CPUs enter _secondary_start through PSCI
 * CPU_ON with x0 = physical address of their boot record (see arch::smp).
 * Everything here runs at physical addresses, so it only uses PC-relative addressing
 * (adr/adrp) until the MMU is on and we branch to the high-half link address.
 */

.equ MAIR_VALUE, 0x04ff  /* attr0 normal WB RW-allocate, attr1 device nGnRE: mm::pgtable::MAIR_EL1 */
.equ SCTLR_RES1, ((1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11))
/* M | C | SA | SA0 | I | DZE | UCT | nTWI | nTWE | UCI, plus RES1 (SPAN is cleared later if PAN exists) */
.equ SCTLR_MMU_ON, (SCTLR_RES1 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 18) | (1 << 26))
.equ SCTLR_MMU_OFF, (SCTLR_RES1)

/* Block and table descriptors used only by the boot tables (the typed ones live in mm). */
.equ DESC_TABLE, 0x3
.equ DESC_BLOCK, 0x1
.equ DESC_AF, (1 << 10)
.equ DESC_SH_INNER, (3 << 8)
.equ DESC_ATTR_DEV, (1 << 2)
.equ DESC_ATTR_NORM, (0 << 2)
.equ DESC_XN, ((1 << 53) | (1 << 54))
.equ BLOCK_NORMAL, (DESC_BLOCK | DESC_AF | DESC_SH_INNER | DESC_ATTR_NORM)
.equ BLOCK_DEVICE, (DESC_BLOCK | DESC_AF | DESC_ATTR_DEV | DESC_XN)

.section .text.boot, "ax"

.global _start
_start:
    mrs     x20, CurrentEL
    lsr     x20, x20, #2                /* x20 = entry exception level, kept for the banner */
    adr     x9, early_vectors
    msr     vbar_el1, x9
    bl      el2_to_el1

    /* Zero BSS (it holds the boot page tables). */
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:
    adrp    x0, __boot_stack_top
    add     x0, x0, :lo12:__boot_stack_top
    mov     sp, x0

    bl      build_boot_tables
    adrp    x0, idmap_l0
    adrp    x1, boot_l0
    bl      enable_mmu

    ldr     x9, =primary_high
    br      x9

primary_high:
    ldr     x9, =__boot_stack_top
    mov     sp, x9
    ldr     x9, =exception_vectors
    msr     vbar_el1, x9
    isb
    mov     x0, x20
    bl      primary_main                /* never returns */
3:  wfe
    b       3b

/* Secondary CPUs: x0 = PA of this CPU's BootRecord { ttbr1, stack_top, percpu, entry }. */
.global _secondary_start
_secondary_start:
    mov     x19, x0
    adr     x9, early_vectors
    msr     vbar_el1, x9
    bl      el2_to_el1
    adrp    x0, idmap_l0
    ldr     x1, [x19, #0]
    bl      enable_mmu
    ldr     x9, =secondary_high
    br      x9
secondary_high:
    ldr     x9, [x19, #8]
    mov     sp, x9
    ldr     x9, =exception_vectors
    msr     vbar_el1, x9
    isb
    ldr     x0, [x19, #16]
    bl      secondary_main              /* never returns */
4:  wfe
    b       4b

/*
 * Leave EL2 for EL1 if we were entered at EL2: EL1 is AArch64, its timers and the
 * GICv3 system-register interface are not trapped, the virtual counter offset is 0,
 * and EL1 sees the real MIDR/MPIDR. Returns at EL1 with DAIF masked.
 */
el2_to_el1:
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    1f
    mov     x9, #(1 << 31)              /* HCR_EL2.RW */
    msr     hcr_el2, x9
    mov     x9, #3                      /* CNTHCTL_EL2.EL1PCTEN | EL1PCEN */
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr
    mov     x9, #0x33ff                 /* CPTR_EL2: RES1 bits, no FP/SIMD trap */
    msr     cptr_el2, x9
    msr     hstr_el2, xzr
    mrs     x9, id_aa64pfr0_el1
    ubfx    x9, x9, #24, #4             /* GIC system registers implemented? */
    cbz     x9, 2f
    mrs     x9, S3_4_C12_C9_5           /* ICC_SRE_EL2 */
    orr     x9, x9, #(1 << 0)           /* SRE */
    orr     x9, x9, #(1 << 3)           /* Enable: EL1 may use ICC_SRE_EL1 */
    msr     S3_4_C12_C9_5, x9
    isb
    msr     S3_4_C12_C11_0, xzr         /* ICH_HCR_EL2: no virtual interface */
2:  mrs     x9, midr_el1
    msr     vpidr_el2, x9
    mrs     x9, mpidr_el1
    msr     vmpidr_el2, x9
    ldr     x9, =SCTLR_MMU_OFF
    msr     sctlr_el1, x9
    mov     x9, #0x3c5                  /* SPSR: EL1h, DAIF masked */
    msr     spsr_el2, x9
    msr     elr_el2, x30
    isb
    eret
1:  ldr     x9, =SCTLR_MMU_OFF
    msr     sctlr_el1, x9
    isb
    ret

/*
 * Two 1 GiB-block tables: an identity map of the first GiB of RAM (TTBR0, used only
 * while the MMU is switched on), and the high-half boot map (TTBR1): device memory
 * for the first GiB of the physical map and the first GiB of RAM as normal memory.
 * mm::kmap replaces the high-half map with the final W^X one straight away.
 */
build_boot_tables:
    adrp    x0, idmap_l0
    adrp    x1, idmap_l1
    orr     x2, x1, #DESC_TABLE
    str     x2, [x0]                    /* L0[0] -> L1 */
    ldr     x2, =(0x40000000 | BLOCK_NORMAL)
    str     x2, [x1, #8]                /* L1[1]: 1 GiB at 0x40000000 */

    adrp    x0, boot_l0
    adrp    x1, boot_l1
    orr     x2, x1, #DESC_TABLE
    str     x2, [x0]
    ldr     x2, =(0x00000000 | BLOCK_DEVICE)
    str     x2, [x1, #0]                /* L1[0]: devices */
    ldr     x2, =(0x40000000 | BLOCK_NORMAL)
    str     x2, [x1, #8]                /* L1[1]: RAM */
    dsb     ishst
    ret

/*
 * x0 = TTBR0 (PA), x1 = TTBR1 (PA). 4 KiB granules, 48-bit VAs in both halves,
 * IPS from ID_AA64MMFR0_EL1.PARange, 16-bit ASIDs when implemented.
 */
.global enable_mmu
enable_mmu:
    ldr     x9, =MAIR_VALUE
    msr     mair_el1, x9
    /* T0SZ=16, IRGN0/ORGN0=WBWA, SH0=inner, TG0=4K, T1SZ=16, IRGN1/ORGN1=WBWA, SH1=inner, TG1=4K */
    ldr     x9, =((16 << 0) | (1 << 8) | (1 << 10) | (3 << 12) | (0 << 14) | (16 << 16) | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30))
    mrs     x10, id_aa64mmfr0_el1
    ubfx    x11, x10, #0, #3            /* PARange -> IPS */
    cmp     x11, #5                     /* we describe at most 48-bit PAs */
    mov     x12, #5
    csel    x11, x11, x12, ls
    orr     x9, x9, x11, lsl #32
    ubfx    x11, x10, #4, #4            /* ASIDBits: 2 means 16 bits */
    cmp     x11, #2
    b.ne    1f
    orr     x9, x9, #(1 << 36)          /* TCR.AS */
1:  msr     tcr_el1, x9
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x1
    mov     x9, #(3 << 20)              /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr     cpacr_el1, x9
    /*
     * CNTKCTL_EL1.EL0VCTEN: EL0 may read CNTVCT_EL0 (and so CNTFRQ_EL0), as Linux
     * allows (arch_timer's user access); the physical counter and the timers stay
     * EL1's. Arm ARM D12.11.x "CNTKCTL_EL1". PMU access at EL0 stays off (PMUSERENR_EL0 = 0).
     */
    mov     x9, #(1 << 1)
    msr     cntkctl_el1, x9
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x9, =SCTLR_MMU_ON
    msr     sctlr_el1, x9
    isb
    ret

/*
 * Switch TTBR1 to new tables (x0 = PA) from the identity map. The old and the new
 * kernel maps describe the same VAs with different block sizes, so TTBR1 goes through
 * an empty table with a full TLB invalidation in between: the break-before-make
 * requirement of "D8.16 Translation table maintenance" (Arm ARM, TLB conflict aborts
 * otherwise possible). Called through its identity-mapped physical address.
 */
.global replace_ttbr1_idmap
replace_ttbr1_idmap:
    adrp    x9, zero_table
    msr     ttbr1_el1, x9
    isb
    tlbi    vmalle1is
    dsb     ish
    isb
    msr     ttbr1_el1, x0
    isb
    ret

/* Before the real vectors are installed: print '!' on the PL011 and stop. */
.balign 2048
early_vectors:
.rept 16
    ldr     x9, =0x09000000
    mov     w10, #'!'
    strb    w10, [x9]
    b       .
.balign 128
.endr

.section .bss.pgtables, "aw", @nobits
.balign 4096
.global idmap_l0
idmap_l0:   .space 4096
idmap_l1:   .space 4096
.global boot_l0
boot_l0:    .space 4096
boot_l1:    .space 4096
.global zero_table
zero_table: .space 4096
