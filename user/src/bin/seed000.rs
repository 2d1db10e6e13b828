//! Barry Song's fork reproducer (seed 000): a 1 MiB region aligned to 1 MiB is
//! filled with 0x11, the process forks, the child execs `hello`, the parent waits for
//! it and then writes one word at p+10. Once the child has gone, the parent is the only
//! user of every large folio, so a kernel that reuses the whole folio on the CoW fault
//! takes one fault and needs none for the rest of that 64 KiB block; one that copies
//! a single page puts the folio on the deferred-split list. Reported as
//! `seed000: key=value` lines: minor faults of the fill, of the first write and of the
//! other 15 pages of its 64 KiB block (getrusage), and Linux's mTHP counters
//! `split_deferred` and `anon_fault_alloc` of hugepages-64kB before and after (`n/a`
//! where the file does not exist).
//!
//! It sets hugepages-64kB/enabled to `always` first (mounting sysfs on a freshly
//! booted Linux), so runs on both kernels are comparable, and puts the policy back as
//! it found it at the end (checked).
#![no_std]
#![no_main]

use core::ffi::CStr;
use rt::mm::{Region, PAGE, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Outcome, Suite};
use rt::text::Text;
use rt::thp;
use rt::{ensure, fs, println};

rt::entry!(main);

const MIB: usize = 1 << 20;
const BLOCK: usize = 16 * PAGE;
const MTHP: &str = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB";

fn main(args: &rt::Args) -> i32 {
    let mut t = Suite::new("seed000");
    if let Ok(u) = proc::uname() {
        println!(
            "seed000: kernel={} {} {}",
            u.sysname(),
            u.release(),
            u.machine()
        );
    }
    // sysfs and proc mounted first on a machine where nothing is (Linux booted with
    // this program as /init); the policy is saved, 64 KiB folios asked for, and the
    // policy put back at the end, checked, for the programs that follow.
    thp::mount_pseudo_fs();
    let saved = thp::Policy::save();
    let _ = fs::write_file(path("enabled").as_cstr(), b"always");
    println!("seed000: enabled_64k={}", sysfs("enabled"));
    t.run("seed000", || reproduce(args));
    t.run("restore_policy", || match &saved {
        Ok(saved) => saved.restore_checked().map(drop),
        Err(e) => rt::fail!("{e}"),
    });
    t.finish()
}

fn path(file: &str) -> Text<128> {
    Text::from_fmt(format_args!("{MTHP}/{file}"))
}

/// The first line of hugepages-64kB/`file`, or `n/a`.
fn sysfs(file: &str) -> Text<96> {
    let mut buf = [0u8; 95];
    match fs::read_file(path(file).as_cstr(), &mut buf) {
        Ok(n) => {
            let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or_default();
            let mut t = Text::new();
            t.push(line);
            t
        }
        Err(_) => Text::from_fmt(format_args!("n/a")),
    }
}

/// MemFree of /proc/meminfo in KiB, if the file exists.
fn memfree_kb() -> Option<i64> {
    let mut buf = [0u8; 512];
    let n = fs::read_file(c"/proc/meminfo", &mut buf).ok()?;
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemFree:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `after` subtracted from `before`, or `n/a`.
fn kb_delta(before: Option<i64>, after: Option<i64>) -> Text<24> {
    match (before, after) {
        (Some(b), Some(a)) => Text::from_fmt(format_args!("{}", b - a)),
        _ => Text::from_fmt(format_args!("n/a")),
    }
}

/// A 1 MiB region aligned to 1 MiB: 2 MiB mapped, the ends trimmed.
fn aligned_mib() -> Result<Region, rt::test::Fail> {
    let wide = Region::anon(2 * MIB, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    let start = (wide.addr + MIB - 1) & !(MIB - 1);
    let (head, tail) = (start - wide.addr, wide.addr + 2 * MIB - (start + MIB));
    if head > 0 {
        wide.unmap(0, head).ctx("munmap head")?;
    }
    if tail > 0 {
        wide.unmap(head + MIB, tail).ctx("munmap tail")?;
    }
    core::mem::forget(wide);
    // SAFETY: [start, start + MIB) is what is left of the mapping just made, whose
    // owner was forgotten so only this Region unmaps it.
    Ok(unsafe { Region::from_raw(start, MIB) })
}

fn reproduce(args: &rt::Args) -> Outcome {
    let p = aligned_mib()?;
    let counters = [
        ("split_deferred", "stats/split_deferred"),
        ("anon_fault_alloc", "stats/anon_fault_alloc"),
    ]
    .map(|(name, file)| (name, file, sysfs(file)));

    let f0 = thp::minflt()?;
    let m0 = memfree_kb();
    p.fill(0, MIB, 0x11);
    let m1 = memfree_kb();
    println!("seed000: minflt_fill={}", thp::minflt()? - f0);
    // What the fill holds (the 1 MiB and its page tables).
    println!("seed000: held_kb_fill={}", kb_delta(m0, m1));

    let mut hello = args.sibling("hello");
    let child = proc::spawn(|| {
        if p.find_not(0, MIB, 0x11).is_some() {
            return 2;
        }
        let path: &CStr = hello.as_cstr();
        100 + proc::execve(path, &[path], &[]).0
    })
    .ctx("fork")?;
    let s = proc::wait(child).ctx("wait4")?;
    ensure!(
        s.exited() && s.exit_status() == 0,
        "child (fill check, exec hello): {s}"
    );

    let f1 = thp::minflt()?;
    let m2 = memfree_kb();
    p.store_u64(10, 10);
    let f2 = thp::minflt()?;
    // What the parent's write adds: a copied page, or nothing when the folio is reused.
    println!(
        "seed000: held_kb_added_by_write={}",
        kb_delta(m2, memfree_kb())
    );
    (1..16).for_each(|page| p.store(page * PAGE, 0x22));
    let f3 = thp::minflt()?;
    println!("seed000: faults_first_write={}", f2 - f1);
    println!("seed000: faults_rest_of_64k={}", f3 - f2);
    for (name, file, before) in &counters {
        println!("seed000: {name}_before={before}");
        println!("seed000: {name}_after={}", sysfs(file));
    }

    ensure!(
        p.load_u64(10) == 10,
        "word at p+10 reads {:#x}",
        p.load_u64(10)
    );
    // Bytes 10..18 hold the word; the first byte of pages 1..15 holds 0x22.
    let written = |o: usize| (PAGE..BLOCK).contains(&o) && o.is_multiple_of(PAGE);
    let bad = (0..MIB).find(|&o| match o {
        10..18 => false,
        o if written(o) => p.load(o) != 0x22,
        o => p.load(o) != 0x11,
    });
    ensure!(
        bad.is_none(),
        "byte at +{:#x} reads {:#x}",
        bad.unwrap_or(0),
        bad.map_or(0, |o| p.load(o))
    );
    Ok(())
}
