//! hugetlb (issue 26), the same checks on contkernel and on Linux 6.12 and 7.3
//! (`scripts/linux.sh -- hugetlb`):
//!
//! - the pools of 64 KiB, 2 MiB and 32 MiB pages: each size's sysfs directory, its
//!   `nr_hugepages` grown through sysfs and shrunk back (`free_hugepages` follows), the
//!   default size's `/proc/sys/vm/nr_hugepages` and /proc/meminfo lines agreeing with
//!   the 2 MiB files, bad writes (EINVAL: not a number; `nr_overcommit_hugepages` of a
//!   gigantic 32 MiB pool).
//!
//! Every pool is left as it was found.
#![no_std]
#![no_main]

use core::ffi::CStr;

use rt::test::{Context, Outcome, Suite};
use rt::text::Text;
use rt::thp::meminfo_kb;
use rt::{ensure, fs, Errno};

rt::entry!(main);

/// The sizes, in kB, with the pages each check takes of it.
const SIZES: [(usize, u64); 3] = [(64, 4), (2048, 2), (32768, 1)];

fn main(_args: &rt::Args) -> i32 {
    rt::thp::mount_pseudo_fs();
    let mut t = Suite::new("hugetlb");
    for (kb, n) in SIZES {
        let name = Text::<40>::from_fmt(format_args!("pool_{kb}kB_grows_and_shrinks"));
        t.run(name.as_str(), || pool_grows_and_shrinks(kb, n));
    }
    t.run("default_size_files_agree", default_size_files);
    t.run("bad_writes_are_einval", bad_writes);
    t.finish()
}

/// `/sys/kernel/mm/hugepages/hugepages-<kb>kB/<file>`.
fn path(kb: usize, file: &str) -> Text<96> {
    Text::from_fmt(format_args!(
        "/sys/kernel/mm/hugepages/hugepages-{kb}kB/{file}"
    ))
}

fn read(kb: usize, file: &str) -> Result<u64, rt::test::Fail> {
    let mut p = path(kb, file);
    fs::read_u64(p.as_cstr()).ctx(p.as_str())
}

fn write_to(p: &CStr, v: u64) -> Result<usize, Errno> {
    let text = Text::<24>::from_fmt(format_args!("{v}\n"));
    fs::write_file(p, text.as_bytes())
}

fn set(kb: usize, file: &str, v: u64) -> Outcome {
    let mut p = path(kb, file);
    write_to(p.as_cstr(), v).ctx(p.as_str())?;
    Ok(())
}

/// Grow the pool by `n` pages and shrink it back: `nr_hugepages` and `free_hugepages`
/// follow (this machine and both Linux peers have the memory for it).
fn pool_grows_and_shrinks(kb: usize, n: u64) -> Outcome {
    let nr = read(kb, "nr_hugepages")?;
    let free = read(kb, "free_hugepages")?;
    for f in [
        "resv_hugepages",
        "surplus_hugepages",
        "nr_overcommit_hugepages",
    ] {
        read(kb, f)?;
    }
    set(kb, "nr_hugepages", nr + n)?;
    let (grown, grown_free) = (read(kb, "nr_hugepages")?, read(kb, "free_hugepages")?);
    set(kb, "nr_hugepages", nr)?;
    ensure!(
        grown == nr + n && grown_free == free + n,
        "after asking for {n} more: nr {grown} free {grown_free}, was nr {nr} free {free}"
    );
    let (back, back_free) = (read(kb, "nr_hugepages")?, read(kb, "free_hugepages")?);
    ensure!(
        back == nr && back_free == free,
        "shrunk back: nr {back} free {back_free}, was nr {nr} free {free}"
    );
    Ok(())
}

/// The default size is 2 MiB on both kernels: /proc/sys/vm/nr_hugepages and meminfo's
/// lines show the 2 MiB pool.
fn default_size_files() -> Outcome {
    let nr = read(2048, "nr_hugepages")?;
    set(2048, "nr_hugepages", nr + 1)?;
    let sysctl = fs::read_u64(c"/proc/sys/vm/nr_hugepages").ctx("/proc/sys/vm/nr_hugepages");
    let total = meminfo_kb("HugePages_Total");
    let free = meminfo_kb("HugePages_Free");
    let size = meminfo_kb("Hugepagesize");
    let hugetlb = meminfo_kb("Hugetlb");
    let sysfs_free = read(2048, "free_hugepages")?;
    set(2048, "nr_hugepages", nr)?;
    let sysctl = sysctl?;
    ensure!(
        sysctl == nr + 1,
        "/proc/sys/vm/nr_hugepages {sysctl}, want {}",
        nr + 1
    );
    ensure!(
        total == Some(nr + 1) && free == Some(sysfs_free) && size == Some(2048),
        "meminfo: HugePages_Total {total:?} HugePages_Free {free:?} Hugepagesize {size:?}"
    );
    ensure!(
        hugetlb.is_some_and(|kb| kb >= 2048),
        "meminfo: Hugetlb {hugetlb:?} kB"
    );
    // Through /proc/sys too, back and forth.
    write_to(c"/proc/sys/vm/nr_hugepages", nr + 1).ctx("write /proc/sys/vm/nr_hugepages")?;
    let via_sysctl = read(2048, "nr_hugepages")?;
    write_to(c"/proc/sys/vm/nr_hugepages", nr).ctx("write /proc/sys/vm/nr_hugepages")?;
    ensure!(
        via_sysctl == nr + 1,
        "nr_hugepages {via_sysctl} after the sysctl write"
    );
    Ok(())
}

fn bad_writes() -> Outcome {
    for (kb, file, text) in [
        (2048, "nr_hugepages", "many\n"),
        (64, "nr_hugepages", "-1\n"),
        (2048, "nr_overcommit_hugepages", "1x\n"),
    ] {
        let mut p = path(kb, file);
        let r = fs::write_file(p.as_cstr(), text.as_bytes());
        ensure!(
            r == Err(Errno::EINVAL),
            "{} <- {text:?}: {r:?}, want EINVAL",
            p.as_str()
        );
    }
    let over = read(32768, "nr_overcommit_hugepages")?;
    let mut p = path(32768, "nr_overcommit_hugepages");
    let r = write_to(p.as_cstr(), 1);
    ensure!(
        r == Err(Errno::EINVAL),
        "32 MiB pages overcommitted: {r:?}, want EINVAL"
    );
    ensure!(
        read(32768, "nr_overcommit_hugepages")? == over,
        "the value changed"
    );
    Ok(())
}
