//! The boot CPU's path from `boot.s` to a running kernel, in order: per-CPU data, the
//! DTB, the console, CPU features, the heap, frames, the final kernel map, power and
//! semihosting, interrupts and the tick, secondary CPUs, the banner; then the tests
//! (`ktest`), a deliberate crash (`crashtest=`), a benchmark (`bench=`), /init from the
//! initramfs, or the demo.

use core::sync::atomic::Ordering;

use platform::fdt::BoardInfo;

use crate::arch::aarch64::features::CpuFeatures;
use crate::arch::aarch64::mm::heap;
use crate::arch::aarch64::mm::kmap::{self, ImageLayout};
use crate::arch::aarch64::mm::machine::PtConfig;
use crate::arch::aarch64::mmu;
use crate::cmdline::{CmdLine, Spaced};
use crate::mm::{frame, phys_to_virt, PhysAddr, PAGE_SIZE};
use crate::{console, interrupts, kprintln, power, smp, time};

/// QEMU virt puts the DTB at the start of RAM when the kernel is an ELF.
const DTB_PA: u64 = 0x4000_0000;
/// The PL011 of QEMU virt, used only to report a DTB that cannot be parsed.
const FALLBACK_UART_PA: u64 = 0x0900_0000;

static CMDLINE: spin::Once<CmdLine<'static>> = spin::Once::new();

/// The kernel command line.
pub fn cmdline() -> &'static CmdLine<'static> {
    CMDLINE.get().expect("command line parsed at boot")
}

fn board() -> (BoardInfo<'static>, &'static [u8]) {
    let va = phys_to_virt(PhysAddr::new(DTB_PA)).as_ptr::<u8>();
    // SAFETY: QEMU placed a DTB at the start of RAM; the boot map covers it and
    // nothing writes that range (the frame allocator reserves it).
    let dtb = unsafe { platform::fdt::dtb_size(va).map(|n| core::slice::from_raw_parts(va, n)) };
    let Some(dtb) = dtb else {
        console::init(kmap::pl011(FALLBACK_UART_PA));
        panic!("no DTB at {DTB_PA:#x}");
    };
    match platform::fdt::parse(dtb) {
        Ok(b) => (b, dtb),
        Err(e) => {
            console::init(kmap::pl011(FALLBACK_UART_PA));
            panic!("DTB at {DTB_PA:#x} unusable: {e}");
        }
    }
}

#[no_mangle]
extern "C" fn primary_main(entry_el: u64) -> ! {
    crate::percpu::init_boot_cpu();
    let (board, dtb) = board();
    let cmd = start_console(&board);
    let (features, pt, image, initrd, root) = init_memory(cmd, &board, dtb);
    wire(&board, initrd);
    let online = start_cpus(cmd, &board, root);
    banner(&board, entry_el, online, features, pt, &image);

    run_tests_if_asked(cmd);
    if let Some(name) = cmd.get("bench") {
        if !crate::bench::run(name) {
            kprintln!("contkernel: unknown bench={name} (known: contpte)");
            power::exit(2);
        }
        power::exit(0);
    }
    if initrd.is_some() {
        let path = cmd.get("rdinit").unwrap_or("/init");
        let args: alloc::vec::Vec<&str> = cmd.init_args().collect();
        match crate::proc::process::spawn_init(path, &args) {
            Ok(_) => kprintln!("contkernel: started {path}"),
            Err(e) => panic!("cannot start {path}: errno {e}"),
        }
        crate::proc::sched::idle_loop();
    }
    demo();
    power::exit(0)
}

/// The console, the semihosting probe and the boot line (its log level and unknown
/// words reported): everything after this may print and panic with a status.
fn start_console(board: &BoardInfo<'static>) -> &'static CmdLine<'static> {
    console::init(kmap::pl011(board.pl011_base));
    crate::arch::aarch64::trap::set_report_printer(console::emergency_print);
    // First, so that a panic from here on exits with its status (101) through
    // semihosting: a test or script would otherwise see a power-off, status 0.
    power::probe_semihosting();
    let cmd = CMDLINE.call_once(|| CmdLine::parse(board.bootargs));
    let level = cmd.log_level().unwrap_or_else(|bad| {
        kprintln!("contkernel: unknown loglevel={bad}, using info");
        log::LevelFilter::Info
    });
    console::init_log(level);
    for word in cmd.unknown(KNOWN_WORDS) {
        kprintln!(
            "contkernel: unknown boot option {word} (ignored; known: {})",
            Spaced(KNOWN_WORDS)
        );
    }
    #[cfg(feature = "ktest")]
    if cmd.get("crashtest") == Some("early") {
        crate::ktest::crash("early"); // before the heap: the exit status must say so
    }
    cmd
}

/// The MMU's configuration, the heap, the page-table options, the mTHP policy, the
/// frames and hugetlb pools, the zero page and the kernel's own map: returns the CPU
/// features, the page-table options, the image, the initrd's range and the kernel
/// map's root.
fn init_memory(
    cmd: &'static CmdLine<'static>,
    board: &BoardInfo<'_>,
    dtb: &[u8],
) -> (
    &'static CpuFeatures,
    &'static PtConfig,
    ImageLayout,
    Option<(u64, u64)>,
    PhysAddr,
) {
    assert_eq!(
        crate::arch::aarch64::regs::read_sysreg!(mair_el1),
        crate::mm::pgtable::MAIR_EL1,
        "boot.s and mm::pgtable disagree on MAIR_EL1"
    );
    let features = crate::arch::aarch64::features::read_once();
    mmu::configure(features);
    heap::init();
    let pt = crate::arch::aarch64::mm::machine::configure(cmd, features);
    configure_mthp(cmd);

    let image = ImageLayout::current();
    let initrd = initrd_range(cmd, board);
    init_frames(board, dtb, &image, initrd);
    crate::mm::hugetlb::configure(cmd);
    crate::arch::aarch64::mm::machine::init_zero_page();
    let root = kmap::build(
        board.memory_regions().iter().map(|r| (r.base, r.end())),
        &image,
    );
    kmap::install(root);
    kmap::drop_identity_map();
    (features, pt, image, initrd, root)
}

/// PSCI, user access, the trap handlers, the root filesystem and the hooks by which
/// lower layers reach up (arch cannot import proc, nor fs proc).
fn wire(board: &BoardInfo<'_>, initrd: Option<(u64, u64)>) {
    power::set_conduit(
        board
            .psci
            .expect("the DTB offers no PSCI: cannot start CPUs or power off"),
    );
    crate::arch::aarch64::uaccess::init();
    crate::arch::aarch64::trap::set_handlers(crate::arch::aarch64::trap::Handlers {
        irq: interrupts::dispatch,
        syscall: crate::syscall::dispatch,
        user_sync: crate::proc::process::user_sync,
        uaccess_fault: crate::proc::process::uaccess_fault,
        return_to_user: crate::proc::process::return_to_user,
    });
    if let Some((base, size)) = initrd {
        // SAFETY: the range is RAM reserved from the frame allocator above, mapped by
        // the linear map, and never written.
        let data = unsafe {
            core::slice::from_raw_parts(
                phys_to_virt(PhysAddr::new(base)).as_ptr::<u8>(),
                size as usize,
            )
        };
        crate::fs::set_root(data);
    }
    crate::fs::caller::set_hooks(crate::fs::caller::Hooks {
        identity: crate::proc::task::identity,
        with_mm: crate::proc::task::with_mm,
    });
}

/// Interrupts, the profiler, the tick and the secondary CPUs: how many are online.
fn start_cpus(cmd: &CmdLine<'_>, board: &BoardInfo<'_>, root: PhysAddr) -> usize {
    interrupts::init(&board.gic, board.timer_intid);
    crate::profile::init(cmd, board.phys_timer_intid, board.cpu_mpidrs().len());
    time::on_every_tick(crate::proc::sched::on_tick);
    time::start_tick();
    interrupts::enable_timer();
    crate::arch::irq::enable();
    smp::start_secondaries(board.cpu_mpidrs(), root)
}

/// The boot banner: what booted, on what, with which options.
fn banner(
    board: &BoardInfo<'_>,
    entry_el: u64,
    online: usize,
    features: &CpuFeatures,
    pt: &PtConfig,
    image: &ImageLayout,
) {
    kprintln!(
        "contkernel: {} MiB RAM, {online}/{} CPUs online, entered at EL{entry_el}, GICv{}",
        board.total_memory() >> 20,
        board.cpu_mpidrs().len(),
        interrupts::gic_version()
    );
    kprintln!("contkernel: features: {features}");
    kprintln!(
        "contkernel: page tables: contpte={} bbml2={} ptcheck={}",
        pt.mode,
        on_off(pt.features.bbml2),
        on_off(pt.check)
    );
    let f = frame::frames();
    kprintln!(
        "contkernel: memory: {} frames managed, {} free; kernel image {:#x}-{:#x}; semihosting {}",
        f.managed_frames(),
        f.free_frames(),
        image.start,
        image.end,
        if power::semihosting() { "on" } else { "off" }
    );
    let ns = time::uptime_ns();
    kprintln!(
        "contkernel: banner at {}.{:03} ms emulated",
        ns / 1_000_000,
        (ns / 1000) % 1000
    );
}

/// Every kernel word this kernel reads (anything else is reported at boot).
/// `console`, `quiet`, `panic`, `rdinit` and `rootwait` are Linux's, accepted so that a
/// command line written for Linux boots here too.
const KNOWN_WORDS: &[&str] = &[
    "loglevel",
    "contpte",
    "bbml2",
    "ptcheck",
    "asid_bits",
    "thp_anon",
    "cow",
    "hugepagesz",
    "hugepages",
    "default_hugepagesz",
    "initrd",
    "ktest",
    "crashtest",
    "bench",
    "profile",
    "rdinit",
    "quiet",
    "console",
    "panic",
    "rootwait",
];

/// `thp_anon=` (Linux's syntax, e.g. `16K-64K:always;2M:never`) and `cow=page|folio`.
fn configure_mthp(cmd: &CmdLine<'_>) {
    if let Some(v) = cmd.get("thp_anon") {
        if let Err(e) = crate::mm::mthp::POLICY.parse_thp_anon(v) {
            log::warn!("thp_anon={v} not understood ({e}): policy unchanged");
        }
    }
    match cmd.get("cow") {
        None | Some("page") => {}
        Some("folio") => crate::mm::cow::COW_COPIES_FOLIO.store(true, Ordering::Relaxed),
        Some(bad) => log::warn!("cow={bad} unknown (page, folio): copying pages"),
    }
}

/// Where the initramfs is: `initrd=ADDR,SIZE` on the command line (scripts/run.sh puts
/// the file there with QEMU's generic loader), else the DTB's /chosen properties.
fn initrd_range(cmd: &CmdLine<'_>, board: &BoardInfo<'_>) -> Option<(u64, u64)> {
    let parse = |s: &str| match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    let (range, from) = match cmd.get("initrd") {
        Some(v) => {
            let range = v
                .split_once(',')
                .and_then(|(a, n)| Some((parse(a)?, parse(n)?)));
            if range.is_none() {
                kprintln!("contkernel: initrd={v} not understood (want initrd=ADDR,SIZE)");
            }
            (range, "initrd=")
        }
        None => (board.initrd.map(|r| (r.base, r.size)), "the DTB"),
    };
    let (base, size) = range?;
    // The range must be RAM, and none of it the kernel's: a wrong address (a machine
    // with less memory than the loader assumed) would otherwise be read as garbage.
    let image = ImageLayout::current();
    let in_ram = base.checked_add(size).is_some_and(|end| {
        board
            .memory_regions()
            .iter()
            .any(|r| r.base <= base && end <= r.end())
    });
    let over_kernel = base < image.end && image.start < base + size;
    if !in_ram || over_kernel || size == 0 {
        kprintln!(
            "contkernel: initramfs {base:#x}+{size:#x} (from {from}) is not free RAM ({} MiB from {:#x}): ignored",
            board.total_memory() >> 20,
            board.memory_regions().first().map_or(0, |r| r.base)
        );
        return None;
    }
    Some((base, size))
}

#[cfg(feature = "ktest")]
fn run_tests_if_asked(cmd: &CmdLine<'_>) {
    if let Some(filter) = cmd.get("ktest") {
        let (_, failed) = crate::ktest::run(filter);
        power::exit(if failed == 0 { 0 } else { 1 });
    }
    if let Some(what) = cmd.get("crashtest") {
        crate::ktest::crash(what);
    }
}

#[cfg(not(feature = "ktest"))]
fn run_tests_if_asked(cmd: &CmdLine<'_>) {
    if cmd.has("ktest") || cmd.has("crashtest") {
        kprintln!("contkernel: this kernel has no tests built in: use scripts/run.sh --ktest or scripts/test.sh");
        power::exit(2);
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Frames: all RAM, less the DTB, the kernel image and the metadata array, which is
/// placed right after the image.
fn init_frames(board: &BoardInfo<'_>, dtb: &[u8], image: &ImageLayout, initrd: Option<(u64, u64)>) {
    let lo = board
        .memory_regions()
        .iter()
        .map(|r| r.base)
        .min()
        .expect("no RAM in the DTB");
    let hi = board
        .memory_regions()
        .iter()
        .map(|r| r.end())
        .max()
        .unwrap();
    let nframes = ((hi - lo) / PAGE_SIZE as u64) as usize;
    let meta_bytes = nframes * core::mem::size_of::<frame::FrameMeta>();
    let meta_pa = image.end;
    let meta_end = (meta_pa + meta_bytes as u64).next_multiple_of(PAGE_SIZE as u64);
    let meta_va = phys_to_virt(PhysAddr::new(meta_pa)).as_ptr::<frame::FrameMeta>();
    // SAFETY: [meta_pa, meta_end) is RAM after the kernel image that nothing else uses
    // (it is excluded from the allocator below); every element is initialised here.
    let meta = unsafe {
        for i in 0..nframes {
            meta_va.add(i).write(frame::FrameMeta::new());
        }
        core::slice::from_raw_parts(meta_va, nframes)
    };
    let alloc = frame::init_global(frame::FrameAllocator::new(meta, PhysAddr::new(lo).pfn()));
    let dtb_end = DTB_PA + dtb.len() as u64;
    let page = PAGE_SIZE as u64;
    let (rd_start, rd_end) = initrd.map_or((0, 0), |(b, n)| {
        (b & !(page - 1), (b + n).next_multiple_of(page))
    });
    let mut reserved = [
        (DTB_PA, dtb_end.next_multiple_of(page)),
        (image.start, meta_end),
        (rd_start, rd_end),
    ];
    reserved.sort_unstable();
    for r in board.memory_regions() {
        let (mut start, end) = (r.base, r.end());
        for &(r0, r1) in &reserved {
            if r1 <= start || r0 >= end {
                continue;
            }
            if r0 > start {
                alloc.add_free_range(PhysAddr::new(start).pfn(), PhysAddr::new(r0).pfn());
            }
            start = start.max(r1);
        }
        if start < end {
            alloc.add_free_range(PhysAddr::new(start).pfn(), PhysAddr::new(end).pfn());
        }
    }
}

/// What `scripts/run.sh` shows: the machine running, every CPU ticking.
fn demo() {
    time::spin_for(50_000_000);
    for i in 0..crate::percpu::possible() {
        let c = crate::percpu::cpu(i);
        kprintln!(
            "contkernel: cpu{i} mpidr {:#x}: {} ticks, online {}",
            c.mpidr.load(Ordering::Relaxed),
            c.ticks.load(Ordering::Relaxed),
            c.online.load(Ordering::Relaxed)
        );
    }
    kprintln!("contkernel: demo done, powering off");
}
