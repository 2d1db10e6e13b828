//! Exec target: prints `hello from pid N` and exits 0.
#![no_std]
#![no_main]

use rt::{println, proc};

rt::entry!(main);

fn main(_args: &rt::Args) -> i32 {
    match proc::getpid() {
        Ok(pid) => {
            println!("hello from pid {pid}");
            0
        }
        Err(e) => {
            println!("hello: getpid: {e}");
            1
        }
    }
}
