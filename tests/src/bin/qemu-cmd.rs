//! Prints the QEMU command line of one machine, one word per line (the QEMU binary
//! first), for `scripts/lib.sh`: the scripts and the tests build the command in one
//! place, `Machine::qemu_args`.
//!
//! `qemu-cmd ELF CPU SMP MEM GIC EL2(0|1) ICOUNT(0|1) APPEND [INITRD]`

use contkernel_tests::Machine;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(8..=9).contains(&args.len()) {
        eprintln!("usage: qemu-cmd ELF CPU SMP MEM GIC EL2 ICOUNT APPEND [INITRD]");
        std::process::exit(2);
    }
    let number = |i: usize, what: &str| -> u32 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("qemu-cmd: {what} {:?} is not a number", args[i]);
            std::process::exit(2)
        })
    };
    let mut m = Machine::new(&args[0])
        .cpu(&args[1])
        .smp(number(2, "CPU count").max(1))
        .mem(&args[3])
        .gic(number(4, "GIC version") as u8)
        .el2(args[5] == "1")
        .icount(args[6] == "1")
        .append(&args[7]);
    if let Some(initrd) = args.get(8).filter(|s| !s.is_empty()) {
        m.initrd = Some(initrd.into());
    }
    if let Ok(qemu) = std::env::var("QEMU") {
        m.qemu = qemu;
    }
    if let Err(why) = m.check_memory() {
        eprintln!("qemu-cmd: {why}");
        std::process::exit(2);
    }
    println!("{}", m.qemu);
    for arg in m.qemu_args() {
        println!("{}", arg.to_string_lossy());
    }
}
