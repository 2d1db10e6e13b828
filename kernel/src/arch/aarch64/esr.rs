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
}
