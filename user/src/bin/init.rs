//! /init: runs each program named on its command line (argv[1..]), or the default
//! list, as `/bin/<name>` with fork + execve + wait4, one after the other; prints
//! `init: <name> exited <code>` (or `exited signal <n>`) per program and then
//! `N passed, N failed`, counting programs (passed = exited 0). As pid 1 it then
//! powers the machine off; run as any other pid (a check on a host) it exits with 0
//! only if every program passed. The environment variable `BIN_DIR` replaces `/bin`
//! (for such host checks). A name may carry arguments after colons:
//! `stress:7:2000` runs `/bin/stress 7 2000`. A name `@FILE` runs each line of FILE
//! instead, a program and its arguments separated by spaces (an argument may hold a
//! colon: `khugepaged -c 4 mthp_khugepaged:anon`, as scripts/selftests.sh packs them).
#![no_std]
#![no_main]

use rt::fs;
use rt::println;
use rt::proc::{self, execve};
use rt::text::Text;

rt::entry!(main);

/// The scenario programs, in order (`user/scenarios.txt`). The glibc programs of
/// `user/c` run only when present.
const DEFAULT: &str = include_str!("../../scenarios.txt");
const OPTIONAL: &[&str] = &[
    "glibc_check",
    "pthreads",
    "contpte_threads",
    "robust",
    "uffd",
];

fn main(args: &rt::Args) -> i32 {
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut one = |name: &str, sep: char| {
        if run(args, name, sep) {
            passed += 1;
        } else {
            failed += 1;
        }
    };
    if args.len() > 1 {
        let mut list = [0u8; 4096];
        for name in (1..args.len()).filter_map(|i| args.str(i)) {
            let Some(file) = name.strip_prefix('@') else {
                one(name, ':');
                continue;
            };
            // Linux's selftests read /proc and /sys and mount nothing themselves.
            rt::thp::mount_pseudo_fs();
            let mut path = Text::<256>::from_fmt(format_args!("{file}"));
            match fs::read_all(path.as_cstr(), &mut list) {
                Ok(n) => core::str::from_utf8(&list[..n])
                    .unwrap_or("")
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .for_each(|line| one(line, ' ')),
                Err(e) => println!("init: {file}: {e}"),
            }
        }
    } else {
        scenarios().for_each(|name| one(name, ':'));
        let present =
            |name: &&&str| fs::read_file(bin_path(args, name).as_cstr(), &mut [0; 1]).is_ok();
        OPTIONAL
            .iter()
            .filter(present)
            .for_each(|name| one(name, ':'));
    }
    println!("{passed} passed, {failed} failed");
    if proc::getpid() == Ok(1) {
        if let Err(e) = proc::power_off() {
            println!("init: reboot(POWER_OFF): {e}");
        }
    }
    (failed != 0) as i32
}

/// The names of `DEFAULT`: its lines without comments and blanks.
fn scenarios() -> impl Iterator<Item = &'static str> {
    DEFAULT
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// `$BIN_DIR/<name>`, `/bin/<name>` by default.
fn bin_path(args: &rt::Args, name: &str) -> Text<256> {
    Text::from_fmt(format_args!(
        "{}/{name}",
        args.var("BIN_DIR").unwrap_or("/bin")
    ))
}

/// Runs /bin/<name> with argv = [path, the words after `sep`s in `name`] and init's
/// environment; true if it exited 0.
fn run(args: &rt::Args, name: &str, sep: char) -> bool {
    let mut words = name.split(sep);
    let mut path = bin_path(args, words.next().unwrap_or(name));
    let path = path.as_cstr();
    let mut argv_text: [Text<128>; 8] = Default::default();
    let n = words
        .zip(argv_text.iter_mut())
        .map(|(w, t)| *t = Text::from_fmt(format_args!("{w}")))
        .count();
    let child = proc::spawn(|| {
        let mut argv = [path; 9];
        for (slot, t) in argv[1..].iter_mut().zip(argv_text.iter_mut().take(n)) {
            *slot = t.as_cstr();
        }
        let mut env = [c""; proc::EXEC_MAX_STRINGS];
        let k = args
            .env()
            .zip(env.iter_mut())
            .map(|(e, slot)| *slot = e)
            .count();
        let e = execve(path, &argv[..=n], &env[..k]);
        println!("init: execve {}: {e}", path.to_str().unwrap_or("?"));
        127
    });
    let status = match child.and_then(proc::wait) {
        Ok(s) => s,
        Err(e) => {
            println!("init: {name}: fork/wait4: {e}");
            return false;
        }
    };
    if status.exited() {
        println!("init: {name} exited {}", status.exit_status());
    } else {
        println!("init: {name} exited {status}");
    }
    status.exited() && status.exit_status() == 0
}
