//! Decoding of the exception syndrome (ESR_ELx) into names, for fault reports and for
//! the fault handlers. Arm ARM D24.2.40 "ESR_EL1, Exception Syndrome Register (EL1)":
//! EC is bits [31:26]; for aborts, ISS holds the fault status code (xFSC, bits [5:0])
//! and, for data aborts, WnR (bit 6).

use core::fmt;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Esr(pub u64);

/// Exception classes the kernel tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfiWfe,
    FpAccess,
    IllegalState,
    Svc64,
    SysReg,
    InstrAbortLower,
    InstrAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    FpException,
    SError,
    BreakpointLower,
    BreakpointSame,
    StepLower,
    StepSame,
    WatchpointLower,
    WatchpointSame,
    Brk,
    Other(u8),
}

/// Fault status codes of instruction and data aborts (DFSC/IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize { level: u8 },
    Translation { level: u8 },
    AccessFlag { level: u8 },
    Permission { level: u8 },
    SyncExternal,
    Alignment,
    TlbConflict,
    UnsupportedAtomicUpdate,
    Other(u8),
}

/// The signal an EL0 abort gets when the memory manager does not handle it (or cannot
/// resolve it): Linux's arm64 `fault_info` table (arch/arm64/mm/fault.c, 6.12), by
/// fault status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortSignal {
    /// SIGSEGV with the si_code: translation (SEGV_MAPERR), access-flag and permission
    /// faults (SEGV_ACCERR) the memory manager could not resolve; MTE tag check faults
    /// (SEGV_MTESERR).
    Segv(&'static str),
    /// SIGBUS with the si_code: alignment faults (BUS_ADRALN); synchronous external
    /// aborts and parity/ECC errors not on a table walk, unsupported exclusive
    /// (BUS_OBJERR).
    Bus(&'static str),
    /// SIGKILL (SI_KERNEL): everything else: address size faults, external aborts and
    /// parity errors on a table walk, TLB conflict aborts, unsupported atomic hardware
    /// updates, lockdown, reserved codes.
    Kill,
}

impl Esr {
    pub fn ec(self) -> ExceptionClass {
        use ExceptionClass::*;
        match ((self.0 >> 26) & 0x3f) as u8 {
            0x00 => Unknown,
            0x01 => WfiWfe,
            0x07 => FpAccess,
            0x0e => IllegalState,
            0x15 => Svc64,
            0x18 => SysReg,
            0x20 => InstrAbortLower,
            0x21 => InstrAbortSame,
            0x22 => PcAlignment,
            0x24 => DataAbortLower,
            0x25 => DataAbortSame,
            0x26 => SpAlignment,
            0x2c => FpException,
            0x2f => SError,
            0x30 => BreakpointLower,
            0x31 => BreakpointSame,
            0x32 => StepLower,
            0x33 => StepSame,
            0x34 => WatchpointLower,
            0x35 => WatchpointSame,
            0x3c => Brk,
            other => Other(other),
        }
    }

    pub fn ec_raw(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    pub fn is_abort(self) -> bool {
        use ExceptionClass::*;
        matches!(
            self.ec(),
            InstrAbortLower | InstrAbortSame | DataAbortLower | DataAbortSame
        )
    }

    pub fn is_data_abort(self) -> bool {
        matches!(
            self.ec(),
            ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
        )
    }

    /// Data abort caused by a write (WnR). Cache maintenance reports WnR=1 too (CM bit);
    /// the kernel never faults on those.
    pub fn is_write(self) -> bool {
        self.is_data_abort() && self.0 & (1 << 6) != 0
    }

    pub fn fault_status(self) -> FaultStatus {
        use FaultStatus::*;
        let fsc = (self.0 & 0x3f) as u8;
        let level = fsc & 3;
        match fsc {
            0b00_0000..=0b00_0011 => AddressSize { level },
            0b00_0100..=0b00_0111 => Translation { level },
            0b00_1001..=0b00_1011 => AccessFlag { level },
            0b00_1101..=0b00_1111 => Permission { level },
            0b01_0000 => SyncExternal,
            0b10_0001 => Alignment,
            0b11_0000 => TlbConflict,
            0b11_0001 => UnsupportedAtomicUpdate,
            other => Other(other),
        }
    }

    /// A fault the memory manager handles (Linux's `do_translation_fault` and
    /// `do_page_fault` entries): translation, access flag and permission faults of an
    /// instruction or data abort. Every other abort is reported to the process by
    /// signal ([`Esr::abort_signal`]) without looking at the page tables: re-running the
    /// access would fault the same way forever (an alignment fault hits a mapped page).
    pub fn is_mm_fault(self) -> bool {
        self.is_abort()
            && matches!(
                self.fault_status(),
                FaultStatus::Translation { .. }
                    | FaultStatus::AccessFlag { .. }
                    | FaultStatus::Permission { .. }
            )
    }

    /// For an abort from EL0: the signal Linux sends for its fault status code (for
    /// memory-management faults, the one sent when they cannot be resolved).
    pub fn abort_signal(self) -> AbortSignal {
        use AbortSignal::*;
        match self.fsc_raw() {
            // Translation faults, levels 0-3 and -1 (FEAT_LPA2).
            0x04..=0x07 | 0x2b => Segv("SEGV_MAPERR"),
            // Access flag and permission faults, levels 1-3.
            0x09..=0x0b | 0x0d..=0x0f => Segv("SEGV_ACCERR"),
            0x11 => Segv("SEGV_MTESERR"),
            // Synchronous external abort, parity or ECC error (not on a walk).
            0x10 | 0x18 => Bus("BUS_OBJERR"),
            0x21 => Bus("BUS_ADRALN"),
            // Implementation fault (unsupported exclusive or atomic).
            0x35 => Bus("BUS_OBJERR"),
            _ => Kill,
        }
    }

    pub fn fsc_raw(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// For an abort: what the access was (`read`, `write`, or an instruction `fetch`).
    pub fn access(self) -> &'static str {
        if self.is_write() {
            "write"
        } else if self.is_data_abort() {
            "read"
        } else {
            "fetch"
        }
    }
}

impl fmt::Display for ExceptionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ExceptionClass::*;
        let name = match self {
            Unknown => "Unknown reason (undefined instruction)",
            WfiWfe => "WFI/WFE trapped",
            FpAccess => "FP/SIMD access trapped",
            IllegalState => "Illegal execution state",
            Svc64 => "SVC from AArch64",
            SysReg => "System register access trapped",
            InstrAbortLower => "Instruction abort from a lower EL",
            InstrAbortSame => "Instruction abort from the same EL",
            PcAlignment => "PC alignment fault",
            DataAbortLower => "Data abort from a lower EL",
            DataAbortSame => "Data abort from the same EL",
            SpAlignment => "SP alignment fault",
            FpException => "Floating-point exception",
            SError => "SError interrupt",
            BreakpointLower | BreakpointSame => "Breakpoint",
            StepLower | StepSame => "Software step",
            WatchpointLower | WatchpointSame => "Watchpoint",
            Brk => "BRK instruction",
            Other(_) => "Exception class not decoded",
        };
        f.write_str(name)
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FaultStatus::*;
        match self {
            AddressSize { level } => write!(f, "Address size fault, level {level}"),
            Translation { level } => write!(f, "Translation fault, level {level}"),
            AccessFlag { level } => write!(f, "Access flag fault, level {level}"),
            Permission { level } => write!(f, "Permission fault, level {level}"),
            SyncExternal => f.write_str("Synchronous external abort"),
            Alignment => f.write_str("Alignment fault"),
            TlbConflict => f.write_str("TLB conflict abort"),
            UnsupportedAtomicUpdate => f.write_str("Unsupported atomic hardware update"),
            Other(c) => write!(f, "Fault status {c:#04x} not decoded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_translation_level0_read() {
        // What a read of an unmapped TTBR1 address at EL1 reports.
        let e = Esr(0x9600_0004);
        assert_eq!(e.ec(), ExceptionClass::DataAbortSame);
        assert_eq!(e.fault_status(), FaultStatus::Translation { level: 0 });
        assert!(!e.is_write());
        assert_eq!(e.ec().to_string(), "Data abort from the same EL");
        assert_eq!(e.fault_status().to_string(), "Translation fault, level 0");
    }

    #[test]
    fn write_permission_and_access_flag() {
        let e = Esr((0x24 << 26) | (1 << 25) | (1 << 6) | 0b00_1111);
        assert_eq!(e.ec(), ExceptionClass::DataAbortLower);
        assert!(e.is_write());
        assert_eq!(e.fault_status(), FaultStatus::Permission { level: 3 });
        assert_eq!(
            Esr((0x20 << 26) | 0b00_1011).fault_status(),
            FaultStatus::AccessFlag { level: 3 }
        );
        assert!(
            !Esr((0x20 << 26) | (1 << 6)).is_write(),
            "WnR means nothing for instruction aborts"
        );
    }

    #[test]
    fn access_kinds() {
        assert_eq!(Esr(0x9600_0004).access(), "read");
        assert_eq!(Esr(0x9600_0044).access(), "write");
        assert_eq!(Esr(0x8200_000f).access(), "fetch");
    }

    #[test]
    fn other_classes() {
        assert_eq!(Esr(0x5600_0000).ec(), ExceptionClass::Svc64);
        assert_eq!(Esr(0x0200_0000).ec(), ExceptionClass::Unknown);
        assert_eq!(Esr(0x3f << 26).ec(), ExceptionClass::Other(0x3f));
        assert_eq!(
            Esr((0x25 << 26) | 0b11_0000).fault_status(),
            FaultStatus::TlbConflict
        );
        assert!(!Esr(0x5600_0000).is_abort());
    }

    /// Only translation, access flag and permission faults go to the memory manager;
    /// the rest get Linux's signal at once (an alignment fault on a mapped page used to
    /// be "resolved" as an access-flag fault and re-taken forever).
    #[test]
    fn only_mm_faults_go_to_the_memory_manager() {
        let dabt = |fsc: u64| Esr((0x24 << 26) | (1 << 25) | fsc);
        let iabt = |fsc: u64| Esr((0x20 << 26) | (1 << 25) | fsc);
        let mm: alloc::vec::Vec<u64> = (0..64).filter(|&f| dabt(f).is_mm_fault()).collect();
        assert_eq!(mm, [4, 5, 6, 7, 9, 10, 11, 13, 14, 15]);
        assert!(iabt(0x0f).is_mm_fault() && !iabt(0x21).is_mm_fault());
        // Not an abort at all: an SVC whose ISS happens to look like a translation fault.
        assert!(!Esr((0x15 << 26) | 0x07).is_mm_fault());
        assert_eq!(dabt(0x21).fault_status(), FaultStatus::Alignment);
        assert!(!dabt(0x21).is_mm_fault());
    }

    /// Linux 6.12's fault_info table, entry by entry where it is not SIGKILL.
    #[test]
    fn signals_follow_linux_fault_info() {
        use AbortSignal::*;
        let sig = |fsc: u64| Esr((0x24 << 26) | (1 << 25) | fsc).abort_signal();
        assert_eq!(sig(0x21), Bus("BUS_ADRALN"), "alignment fault");
        assert_eq!(sig(0x10), Bus("BUS_OBJERR"), "synchronous external abort");
        assert_eq!(sig(0x18), Bus("BUS_OBJERR"), "parity or ECC error");
        assert_eq!(sig(0x35), Bus("BUS_OBJERR"), "unsupported exclusive");
        assert_eq!(sig(0x30), Kill, "TLB conflict abort");
        assert_eq!(sig(0x31), Kill, "unsupported atomic hardware update");
        assert_eq!(sig(0x14), Kill, "external abort on a table walk");
        assert_eq!(sig(0x02), Kill, "address size fault");
        assert_eq!(sig(0x07), Segv("SEGV_MAPERR"));
        assert_eq!(sig(0x0b), Segv("SEGV_ACCERR"));
        assert_eq!(sig(0x0f), Segv("SEGV_ACCERR"));
        assert_eq!(
            sig(0x08),
            Kill,
            "level-0 access flag: reserved without LPA2"
        );
        let segv = (0..64).filter(|&f| matches!(sig(f), Segv(_))).count();
        let bus = (0..64).filter(|&f| matches!(sig(f), Bus(_))).count();
        assert_eq!((segv, bus), (12, 4));
    }
}
