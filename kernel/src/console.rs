//! The console: the PL011 as the `log` backend and `kprintln!` for protocol lines
//! (banner, test results), serialised across CPUs by an IRQ-safe lock.
//!
//! Log lines read `[    0.012345] I cpu0 message` (E, W, I, D, T for the level).

use core::fmt::{self, Write as _};

use platform::pl011::Pl011;

use crate::sync::IrqSpinLock;

static UART: spin::Once<Pl011> = spin::Once::new();
static LOCK: IrqSpinLock<()> = IrqSpinLock::new(());

/// Start the console on the PL011 at physical address `pa` (in the device window).
pub fn init(pa: u64) {
    UART.call_once(|| {
        let uart = crate::arch::aarch64::mm::kmap::pl011(pa);
        uart.init();
        uart
    });
}

pub fn print(args: fmt::Arguments<'_>) {
    if let Some(u) = UART.get() {
        let _serial = LOCK.lock();
        let _ = (&*u).write_fmt(args);
    }
}

/// Print without taking the console lock: for panics and fault reports, where the
/// lock may be held by the CPU that is failing. Lines may interleave; nothing hangs.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    if let Some(u) = UART.get() {
        let _ = (&*u).write_fmt(args);
    }
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let us = crate::time::uptime_ns() / 1000;
        let level = match r.level() {
            log::Level::Error => 'E',
            log::Level::Warn => 'W',
            log::Level::Info => 'I',
            log::Level::Debug => 'D',
            log::Level::Trace => 'T',
        };
        let cpu = crate::percpu::this_cpu().index;
        print(format_args!(
            "[{:5}.{:06}] {level} cpu{cpu} {}\n",
            us / 1_000_000,
            us % 1_000_000,
            r.args()
        ));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init_log(level: log::LevelFilter) {
    // set_logger fails only if called twice; boot calls it once.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
