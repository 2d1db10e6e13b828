//! ARM PrimeCell PL011 UART, polled.
//!
//! The console: 8 data bits, no parity, one stop bit, FIFOs on, every interrupt
//! masked. Output spins while the transmit FIFO is full; input never blocks.
//! QEMU ignores the baud-rate divisors, but `init` programs 115200 baud from the
//! 24 MHz reference clock QEMU `virt` declares (`apb-pclk`), so the code is right
//! on a real PL011 too.

use core::fmt;

use tock_registers::{
    interfaces::{Readable, Writeable},
    register_bitfields, register_structs,
    registers::{ReadOnly, ReadWrite, WriteOnly},
};

register_bitfields! {u32,
    /// Data register: a read pops the receive FIFO, a write pushes the transmit FIFO.
    DR [
        DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// The UART is still shifting data out.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Integer part of the baud-rate divisor.
    IBRD [
        DIVINT OFFSET(0) NUMBITS(16) []
    ],
    /// Fractional part of the baud-rate divisor, in 64ths.
    FBRD [
        DIVFRAC OFFSET(0) NUMBITS(6) []
    ],
    /// Line control. Writing it also latches IBRD and FBRD.
    LCR_H [
        WLEN OFFSET(5) NUMBITS(2) [
            EightBit = 0b11
        ],
        FEN OFFSET(4) NUMBITS(1) [],
        STP2 OFFSET(3) NUMBITS(1) [],
        PEN OFFSET(1) NUMBITS(1) []
    ],
    /// Control register.
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// Interrupt mask set/clear: a set bit unmasks that interrupt.
    IMSC [
        ALL OFFSET(0) NUMBITS(11) []
    ],
    /// Interrupt clear: a set bit clears that interrupt.
    ICR [
        ALL OFFSET(0) NUMBITS(11) []
    ]
}

register_structs! {
    Registers {
        (0x000 => dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x024 => ibrd: WriteOnly<u32, IBRD::Register>),
        (0x028 => fbrd: WriteOnly<u32, FBRD::Register>),
        (0x02c => lcr_h: WriteOnly<u32, LCR_H::Register>),
        (0x030 => cr: WriteOnly<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x038 => imsc: WriteOnly<u32, IMSC::Register>),
        (0x03c => _reserved3),
        (0x044 => icr: WriteOnly<u32, ICR::Register>),
        (0x048 => @END),
    }
}

/// UART reference clock on QEMU `virt` (the `apb-pclk` fixed clock in its DTB).
const UART_CLOCK_HZ: u32 = 24_000_000;
const BAUD: u32 = 115_200;

/// Baud-rate divisor `clock / (16 * baud)` as (integer, 64ths), rounded to nearest.
const fn divisors(clock_hz: u32, baud: u32) -> (u32, u32) {
    // 64 * clock / (16 * baud) = 4 * clock / baud, plus a half for rounding.
    let in_64ths = (8 * clock_hz as u64 / baud as u64).div_ceil(2);
    ((in_64ths / 64) as u32, (in_64ths % 64) as u32)
}

/// A PL011 at a fixed MMIO address.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the virtual address of a PL011's 4 KiB register frame, mapped as
    /// Device memory for as long as this value is used, and no other code may program
    /// that UART.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: `base` points at a live, mapped PL011 frame.
        unsafe { &*(self.base as *const Registers) }
    }

    /// Programs 8N1 at 115200 baud with FIFOs on and all interrupts masked.
    pub fn init(&self) {
        let regs = self.regs();
        // The PL011 manual's order: disable, drain the transmitter, then flush the FIFOs
        // (clearing FEN) before changing the line settings.
        regs.cr.set(0);
        while regs.fr.is_set(FR::BUSY) {}
        regs.lcr_h.set(0);
        regs.icr.write(ICR::ALL.val(0x7ff));
        regs.imsc.set(0);

        let (int, frac) = divisors(UART_CLOCK_HZ, BAUD);
        regs.ibrd.write(IBRD::DIVINT.val(int));
        regs.fbrd.write(FBRD::DIVFRAC.val(frac));
        regs.lcr_h.write(
            LCR_H::WLEN::EightBit + LCR_H::FEN::SET + LCR_H::STP2::CLEAR + LCR_H::PEN::CLEAR,
        );
        regs.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn putc(&self, b: u8) {
        let regs = self.regs();
        while regs.fr.is_set(FR::TXFF) {}
        regs.dr.write(DR::DATA.val(b.into()));
    }

    /// The next received byte, if one is waiting.
    pub fn getc(&self) -> Option<u8> {
        let regs = self.regs();
        if regs.fr.is_set(FR::RXFE) {
            return None;
        }
        Some(regs.dr.read(DR::DATA) as u8)
    }

    /// Sends `s`, turning each `\n` into the `\r\n` a terminal expects.
    fn puts(&self, s: &str) {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.puts(s);
        Ok(())
    }
}

/// Lets a shared (e.g. `static`) UART be a `fmt::Write` without a lock; concurrent
/// writers interleave characters but cannot corrupt the device.
impl fmt::Write for &Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.puts(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors_for_115200_from_24mhz() {
        // 24e6 / (16 * 115200) = 13.0208 -> 13 + round(0.0208 * 64) / 64 = 13 + 1/64.
        assert_eq!(divisors(UART_CLOCK_HZ, BAUD), (13, 1));
    }

    #[test]
    fn divisors_round_to_nearest() {
        // 3 MHz / (16 * 38400) = 4.8828 -> 4 + 56.5/64, rounds up to 57.
        assert_eq!(divisors(3_000_000, 38_400), (4, 57));
    }
}
