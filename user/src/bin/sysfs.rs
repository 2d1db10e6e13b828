//! `sysfs PATH [VALUE]`: with VALUE, writes it (and a newline) to PATH and reads it
//! back, as `echo VALUE > PATH` would; without, prints the file, `PATH: ` before each
//! line. For boots that set a tunable before the programs run and report counters
//! after (`scripts/stress.sh --soak` keeps the collapse thread busy with
//! `sysfs:/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs:1` and
//! ends with `sysfs:/proc/vmstat`). Exits 1 if a read or write fails or the file then
//! reads otherwise.
#![no_std]
#![no_main]

use rt::fs;
use rt::println;
use rt::text::Text;

rt::entry!(main);

fn main(args: &rt::Args) -> i32 {
    let Some(path) = args.str(1) else {
        println!("usage: sysfs PATH [VALUE]");
        return 2;
    };
    let mut p: Text<256> = Text::from_fmt(format_args!("{path}"));
    let value = args.str(2);
    if let Some(value) = value {
        let line: Text<64> = Text::from_fmt(format_args!("{value}\n"));
        if let Err(e) = fs::write_file(p.as_cstr(), line.as_bytes()) {
            println!("sysfs: {path}: {e}");
            return 1;
        }
    }
    let mut buf = [0u8; 4096];
    let n = match fs::read_file(p.as_cstr(), &mut buf) {
        Ok(n) => n,
        Err(e) => {
            println!("sysfs: {path}: read: {e}");
            return 1;
        }
    };
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("?");
    for line in text.lines() {
        println!("{path}: {line}");
    }
    i32::from(value.is_some_and(|v| text.trim_end() != v))
}
