//! Printing to fd 1 and the panic handler. Each `print!` formats into a 512-byte
//! buffer on the stack and writes it with as few `write` calls as fit, so a line from
//! one process is not interleaved with another's.

use crate::fs;
use core::fmt::{self, Write};

const BUF: usize = 512;

struct Out {
    buf: [u8; BUF],
    len: usize,
}

impl Out {
    fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            match fs::write(1, &self.buf[done..self.len]) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        self.len = 0;
    }
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(BUF) {
            if self.len + chunk.len() > BUF {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut out = Out {
        buf: [0; BUF],
        len: 0,
    };
    let _ = out.write_fmt(args);
    out.flush();
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::io::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("panic: {info}");
    crate::proc::exit_group(127)
}
