//! `bench_lazyfree`: the cost of MADV_FREE of 64 MiB, and of MADV_PAGEOUT of the same
//! 64 MiB once lazily freed and clean, with 64 KiB folios and with 4 KiB folios. Run
//! it under `scripts/run.sh --icount` (one instruction per emulated nanosecond: the
//! times printed are instruction counts), with `contpte=on` and `contpte=naive`.
//! Prints, per folio size: the instructions of each call, per 4 KiB page, and the
//! splits, deferred splits and contiguous-block unfolds each caused.
#![no_std]
#![no_main]

use rt::mm::{Region, MADV_FREE, MADV_PAGEOUT, PAGE, PROT_READ, PROT_WRITE};
use rt::println;
use rt::thp::{self, ContStats, Delta, Stats};
use rt::time::now_ns;

rt::entry!(main);

const LEN: usize = 64 << 20;

fn main(_args: &rt::Args) -> i32 {
    let mut t = rt::test::Suite::new("bench_lazyfree");
    let Some(sc) = thp::Scenario::begin("bench_lazyfree", &mut t) else {
        return t.finish();
    };
    for kb in [64, 0] {
        if thp::only(kb).is_err() {
            println!("bench_lazyfree: cannot set the mTHP policy");
            return 1;
        }
        let Ok(r) = Region::anon_aligned(LEN, 2 << 20, PROT_READ | PROT_WRITE) else {
            println!("bench_lazyfree: mmap failed");
            return 1;
        };
        for o in (0..LEN).step_by(PAGE) {
            r.store(o, 1);
        }
        let size = if kb == 0 { 4 } else { kb };
        for (what, advice) in [("MADV_FREE", MADV_FREE), ("MADV_PAGEOUT", MADV_PAGEOUT)] {
            let (s0, c0) = (Stats::read(64), ContStats::read());
            let lfd0 = thp::keyed(c"/proc/vmstat", "pglazyfreed");
            let t0 = now_ns();
            let res = r.advise(0, LEN, advice);
            let ns = now_ns() - t0;
            let (s1, c1) = (Stats::read(64), ContStats::read());
            let lfd1 = thp::keyed(c"/proc/vmstat", "pglazyfreed");
            println!(
                "bench_lazyfree: {size}K folios: {what} of 64 MiB: {ns} ns ({} per page), {res:?}, split {} split_deferred {} unfolds {} pglazyfreed {}",
                ns / (LEN / PAGE) as i128,
                Delta(s0.delta(&s1, "split")),
                Delta(s0.delta(&s1, "split_deferred")),
                Delta(c0.delta(&c1, "unfolds")),
                Delta(lfd0.zip(lfd1).map(|(a, b)| b as i64 - a as i64)),
            );
        }
        drop(r);
    }
    sc.end(t)
}
