//! More live processes than ASIDs: `LIVE` children at once, each rewriting and
//! checking its own 64 KiB (one word per page, a value only it writes) every 2 ms for
//! seconds, while the others do the same on every CPU. A stale translation (an entry
//! cached for another process under the same ASID) shows as another process's value
//! or a lost write; a fork that fails for want of an ASID fails the test.
//!
//! Booted with `asid_bits=8` (255 ASIDs, the last one shared once the others are in
//! use: `mm::asid`), contkernel must also report in /sys/kernel/mm/asid_stats that
//! address spaces were given the shared ASID, which proves more than 254 were alive
//! at once. On Linux 6.12 (no such file; ASID
//! rollover) the same program checks the data only.
#![no_std]
#![no_main]

use rt::mm::{Region, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Fail, Outcome, Suite};
use rt::time::{nanosleep, now_ns, Timespec};
use rt::{ensure, println, thp};

rt::entry!(main);

const LIVE: usize = 300;
const PAGE: usize = 4096;
const LEN: usize = 16 * PAGE;
/// How long the children run from the first fork. Whether enough were alive at once
/// is what the shared ASID's use says: it is handed out only when every other ASID
/// is held by a live address space.
const HOLD_NS: i128 = 8_000_000_000;

fn main(_args: &rt::Args) -> i32 {
    let mut t = Suite::new("asid_recycle");
    thp::mount_pseudo_fs();
    t.run("more_processes_than_asids", more_processes_than_asids);
    t.finish()
}

/// `asid_bits` and `shared_handouts` of /sys/kernel/mm/asid_stats, None on Linux.
fn asid_stats() -> Result<Option<(u64, u64)>, Fail> {
    if !thp::on_contkernel() {
        return Ok(None);
    }
    let f = c"/sys/kernel/mm/asid_stats";
    let bits = thp::keyed(f, "asid_bits").ctx("asid_stats: asid_bits")?;
    let shared = thp::keyed(f, "shared_handouts").ctx("asid_stats: shared_handouts")?;
    Ok(Some((bits, shared)))
}

fn more_processes_than_asids() -> Outcome {
    let before = asid_stats()?;
    let release = now_ns() + HOLD_NS;
    let mut forked = 0;
    let mut failed_fork = None;
    for i in 0..LIVE {
        match proc::spawn(|| child(i as u64, release)) {
            Ok(_) => forked += 1,
            Err(e) => {
                failed_fork = Some(e);
                break;
            }
        }
    }
    let forks_done = now_ns();
    let mut bad = 0;
    for _ in 0..forked {
        match proc::wait4(-1, 0) {
            Ok((_, s)) if s.exited() && s.exit_status() == 0 => {}
            _ => bad += 1,
        }
    }
    ensure!(failed_fork.is_none(), "fork {forked}: {:?}", failed_fork);
    ensure!(
        bad == 0,
        "{bad} of {LIVE} children saw a wrong value or died"
    );
    println!(
        "asid_recycle: {LIVE} forks in {} ms",
        (forks_done - (release - HOLD_NS)) / 1_000_000
    );
    if let (Some((bits, b)), Some((_, a))) = (before, asid_stats()?) {
        println!(
            "asid_recycle: {bits}-bit ASIDs, {} address spaces given the shared one",
            a - b
        );
        ensure!(
            bits != 8 || a > b,
            "{LIVE} live processes with 8-bit ASIDs, none given the shared ASID"
        );
    }
    Ok(())
}

/// The value child `i` writes in round `round` at page `p`.
fn value(i: u64, round: u64, p: usize) -> u64 {
    i << 40 | round << 8 | p as u64
}

/// Rewrites and checks its region every 2 ms until `release`; 0 if every value read
/// back was its own last one.
fn child(i: u64, release: i128) -> i32 {
    let Ok(r) = Region::anon(LEN, PROT_READ | PROT_WRITE, 0) else {
        return 2;
    };
    let mut round = 0;
    loop {
        for p in 0..LEN / PAGE {
            r.store_u64(p * PAGE, value(i, round, p));
        }
        let _ = nanosleep(&Timespec::from_ms(2));
        for p in 0..LEN / PAGE {
            let got = r.load_u64(p * PAGE);
            if got != value(i, round, p) {
                println!(
                    "asid_recycle: child {i} round {round} page {p}: read {got:#x}, wrote {:#x}",
                    value(i, round, p)
                );
                return 1;
            }
        }
        round += 1;
        if now_ns() >= release {
            return 0;
        }
    }
}
