//! Shared memory, on contkernel and on Linux (`scripts/linux.sh -- shmem`).
//!
//! `shared_anon_fork`: with 64 KiB page-cache folios allowed (`hugepages-64kB/
//! shmem_enabled` always), 256 KiB of MAP_SHARED|MAP_ANONYMOUS memory aligned to 64 KiB
//! takes four 64 KiB folios (`shmem_alloc` +4, no anonymous folio); a forked child reads
//! the parent's writes and its own write is the parent's too.
//!
//! `memfd_io`: a memfd written with write(2), read back with read and pread, grown and
//! cut with ftruncate; a shared mapping of it sees the file's bytes and its stores are
//! the file's; a private mapping's store is its own.
//!
//! `sigbus_past_end`: a mapping longer than the file: a load past the end kills with
//! SIGBUS; after ftruncate grows the file the page reads zeros; cut again, the page
//! written is unmapped and a load there is SIGBUS again.
//!
//! `truncate_then_grow`: bytes cut by ftruncate read as zeros when the file grows
//! again; fallocate grows the file.
//!
//! `outlives_its_mappers`: a child's stores through a shared mapping stay in the file
//! after the child exits.
//!
//! `huge_shared`: with `shmem_enabled` always (2 MiB inherits it, Linux's default),
//! 4 MiB of shared anonymous memory aligned to 2 MiB takes two 2 MiB folios mapped as
//! blocks: /proc/meminfo's ShmemHugePages and ShmemPmdMapped grow by 4096 kB and
//! fall back when it is unmapped (the file goes with its last mapping).
//!
//! `seals`: a memfd made without MFD_ALLOW_SEALING has F_SEAL_SEAL; with it, each
//! seal refuses what it should (EPERM): F_SEAL_SHRINK a cut, F_SEAL_GROW growth by
//! ftruncate or write, F_SEAL_WRITE write(2) and a writable shared mapping (a
//! read-only one is allowed, and mprotect to write it is EACCES); F_SEAL_WRITE while a
//! shared mapping exists is EBUSY; F_SEAL_SEAL ends the adding.
//!
//! `punch_hole`: fallocate(FALLOC_FL_PUNCH_HOLE|KEEP_SIZE) over pages 1, 2 and the
//! first 100 bytes of page 3 of a memfd mapped shared and privately: those bytes read
//! zeros through the shared mapping and the file, the rest of page 3 and the size
//! stay; a hole without KEEP_SIZE is EOPNOTSUPP. MADV_REMOVE of pages 5 and 6 through
//! the shared mapping: zeros there, in the file and in the private mapping's view of
//! the file, while the private copy of page 5 keeps its byte; MADV_REMOVE of a private
//! file mapping is EACCES, of private anonymous memory EINVAL.
//!
//! `tmpfile`: open("/", O_TMPFILE) gives an unnamed file (what glibc's `tmpfile()`
//! asks for), written and then mapped shared.
#![no_std]
#![no_main]

use rt::fs::{self, SEEK_SET};
use rt::mm::{Region, MADV_REMOVE, MAP_PRIVATE, MAP_SHARED, PAGE, PROT_READ, PROT_WRITE};
use rt::proc;
use rt::test::{Context, Fail, Outcome};
use rt::thp::{self, Stats};
use rt::Errno;
use rt::{ensure, println};

rt::entry!(main);

const RW: usize = PROT_READ | PROT_WRITE;
const KB64: usize = 64 << 10;
const SEEK_END: usize = 2;

fn main(_args: &rt::Args) -> i32 {
    let mut t = rt::test::Suite::new("shmem");
    let Some(sc) = thp::Scenario::begin("shmem", &mut t) else {
        return t.finish();
    };
    t.run("shared_anon_fork", shared_anon_fork);
    t.run("memfd_io", memfd_io);
    t.run("sigbus_past_end", sigbus_past_end);
    t.run("truncate_then_grow", truncate_then_grow);
    t.run("outlives_its_mappers", outlives_its_mappers);
    t.run("huge_shared", huge_shared);
    t.run("seals", seals);
    t.run("tmpfile", tmpfile);
    t.run("punch_hole", punch_hole);
    sc.end(t)
}

fn pattern(i: usize) -> u8 {
    (i % 251 + 1) as u8
}

/// A new memfd (closed by the caller).
fn memfd() -> Result<usize, Fail> {
    fs::memfd_create(c"shmem-test", fs::MFD_CLOEXEC).ctx("memfd_create")
}

/// The file's size (lseek to the end; the position goes back to 0).
fn size_of(fd: usize) -> Result<usize, Fail> {
    let n = fs::lseek(fd, 0, SEEK_END).ctx("lseek")?;
    fs::lseek(fd, 0, SEEK_SET).ctx("lseek")?;
    Ok(n)
}

/// Sets `hugepages-64kB/shmem_enabled` for the length of `f`, then puts it back.
fn with_shmem_64k(value: &str, f: impl FnOnce() -> Outcome) -> Outcome {
    let p = thp::size_path(64, "shmem_enabled");
    let saved = thp::read_policy(&p)?;
    thp::write_policy(&p, value)?;
    let r = f();
    thp::write_policy(&p, saved.as_str())?;
    r
}

fn shared_anon_fork() -> Outcome {
    with_shmem_64k("always", || {
        let len = 4 * KB64;
        let r = Region::anon_aligned(len, KB64, RW).ctx("mmap")?;
        r.map_file_at(0, len, RW, MAP_SHARED, -1, 0)
            .ctx("mmap shared")?;
        let s0 = Stats::read(64);
        for p in 0..len / PAGE {
            r.store(p * PAGE, pattern(p));
        }
        let s1 = Stats::read(64);
        println!(
            "shared_anon_fork: shmem_alloc(64K) +{:?}, anon_fault_alloc(64K) +{:?}",
            s0.delta(&s1, "shmem_alloc"),
            s0.delta(&s1, "anon_fault_alloc")
        );
        s0.expect_delta(&s1, "shmem_alloc", 4)?;
        s0.expect_delta(&s1, "anon_fault_alloc", 0)?;
        let st = proc::fork_wait(|| {
            let seen = (0..len / PAGE).all(|p| r.load(p * PAGE) == pattern(p));
            r.store(5 * PAGE + 1, 0x77);
            if seen {
                0
            } else {
                1
            }
        })
        .ctx("fork")?;
        ensure!(st.exited() && st.exit_status() == 0, "child saw {st}");
        ensure!(
            r.load(5 * PAGE + 1) == 0x77,
            "the child's store is not the parent's"
        );
        Ok(())
    })
}

fn memfd_io() -> Outcome {
    let fd = memfd()?;
    let data: [u8; 10000] = core::array::from_fn(|i| (i % 253) as u8);
    ensure!(
        fs::write(fd, &data).ctx("write")? == data.len(),
        "short write"
    );
    ensure!(size_of(fd)? == data.len(), "size after write");
    let mut back = [0u8; 10000];
    ensure!(
        fs::read(fd, &mut back).ctx("read")? == data.len(),
        "short read"
    );
    ensure!(back == data, "read back differs");
    let mut part = [0u8; 16];
    fs::pread(fd, &mut part, 5000).ctx("pread")?;
    ensure!(part[..] == data[5000..5016], "pread at 5000");
    fs::ftruncate(fd, 3 * PAGE).ctx("ftruncate")?;
    ensure!(size_of(fd)? == 3 * PAGE, "size after ftruncate");
    let r = Region::anon_aligned(3 * PAGE, PAGE, RW).ctx("mmap")?;
    r.map_file_at(0, 3 * PAGE, RW, MAP_SHARED, fd as isize, 0)
        .ctx("mmap shared")?;
    ensure!(
        (0..10000).step_by(97).all(|i| r.load(i) == data[i]),
        "shared mapping bytes"
    );
    ensure!(
        r.load(10000) == 0 && r.load(3 * PAGE - 1) == 0,
        "past the data: zeros"
    );
    r.store(100, 0xee);
    fs::pread(fd, &mut part[..1], 100).ctx("pread")?;
    ensure!(
        part[0] == 0xee,
        "a store through the shared mapping is not the file's"
    );
    let p = Region::anon_aligned(3 * PAGE, PAGE, RW).ctx("mmap")?;
    p.map_file_at(0, 3 * PAGE, RW, MAP_PRIVATE, fd as isize, 0)
        .ctx("mmap private")?;
    ensure!(p.load(100) == 0xee, "private mapping reads the file");
    p.store(200, 0x11);
    fs::pread(fd, &mut part[..1], 200).ctx("pread")?;
    ensure!(part[0] == data[200], "a private store changed the file");
    ensure!(
        r.load(200) == data[200],
        "a private store reached the shared mapping"
    );
    fs::close(fd).ctx("close")?;
    // The mappings hold the file: it is still there.
    ensure!(r.load(100) == 0xee, "the file went with its descriptor");
    Ok(())
}

fn sigbus_past_end() -> Outcome {
    let fd = memfd()?;
    fs::ftruncate(fd, PAGE).ctx("ftruncate")?;
    let r = Region::anon_aligned(2 * PAGE, PAGE, RW).ctx("mmap")?;
    r.map_file_at(0, 2 * PAGE, RW, MAP_SHARED, fd as isize, 0)
        .ctx("mmap shared")?;
    r.store(0, 1);
    proc::expect_killed("shmem", 7, || {
        r.load(PAGE);
    })?;
    fs::ftruncate(fd, 2 * PAGE).ctx("ftruncate")?;
    ensure!(r.load(PAGE) == 0, "the grown page is not zero");
    r.store(PAGE, 5);
    // Cut again: the mapped page goes from every mapping, a child's access is SIGBUS.
    fs::ftruncate(fd, PAGE).ctx("ftruncate")?;
    proc::expect_killed("shmem", 7, || {
        r.load(PAGE);
    })?;
    fs::close(fd).ctx("close")?;
    Ok(())
}

fn truncate_then_grow() -> Outcome {
    let fd = memfd()?;
    let data = [0x5au8; 2 * PAGE];
    fs::write(fd, &data).ctx("write")?;
    fs::ftruncate(fd, 100).ctx("ftruncate")?;
    fs::ftruncate(fd, 2 * PAGE).ctx("ftruncate")?;
    let mut back = [0u8; 2 * PAGE];
    fs::pread(fd, &mut back, 0).ctx("pread")?;
    ensure!(back[..100].iter().all(|&b| b == 0x5a), "kept bytes");
    ensure!(
        back[100..].iter().all(|&b| b == 0),
        "cut bytes do not read as zeros"
    );
    fs::fallocate(fd, 0, 0, 5 * PAGE).ctx("fallocate")?;
    ensure!(size_of(fd)? == 5 * PAGE, "fallocate did not grow the file");
    fs::close(fd).ctx("close")?;
    Ok(())
}

fn outlives_its_mappers() -> Outcome {
    let fd = memfd()?;
    fs::ftruncate(fd, KB64).ctx("ftruncate")?;
    let st = proc::fork_wait(|| {
        let Ok(r) = Region::anon_aligned(KB64, KB64, RW) else {
            return 1;
        };
        if r.map_file_at(0, KB64, RW, MAP_SHARED, fd as isize, 0)
            .is_err()
        {
            return 2;
        }
        for p in 0..KB64 / PAGE {
            r.store(p * PAGE, pattern(p));
        }
        0
    })
    .ctx("fork")?;
    ensure!(st.exited() && st.exit_status() == 0, "child {st}");
    let mut b = [0u8];
    for p in 0..KB64 / PAGE {
        fs::pread(fd, &mut b, p * PAGE).ctx("pread")?;
        ensure!(b[0] == pattern(p), "page {p} lost after the child exited");
    }
    fs::close(fd).ctx("close")?;
    Ok(())
}

fn huge_shared() -> Outcome {
    let top = thp::path(format_args!(
        "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
    ));
    let saved = thp::read_policy(&top)?;
    thp::write_policy(&top, "always")?;
    let r = (|| -> Outcome {
        let mb2 = 2 << 20;
        let kb = |k: &str| thp::meminfo_kb(k).unwrap_or(0) as i64;
        let (huge0, pmd0) = (kb("ShmemHugePages"), kb("ShmemPmdMapped"));
        let r = Region::anon_aligned(2 * mb2, mb2, RW).ctx("mmap")?;
        r.map_file_at(0, 2 * mb2, RW, MAP_SHARED, -1, 0)
            .ctx("mmap shared")?;
        r.store(0, 1);
        r.store(mb2 + 5, 2);
        let (huge1, pmd1) = (kb("ShmemHugePages"), kb("ShmemPmdMapped"));
        drop(r);
        let (huge2, pmd2) = (kb("ShmemHugePages"), kb("ShmemPmdMapped"));
        println!(
            "huge_shared: ShmemHugePages +{} kB, ShmemPmdMapped +{} kB; after munmap +{} / +{}",
            huge1 - huge0,
            pmd1 - pmd0,
            huge2 - huge0,
            pmd2 - pmd0
        );
        ensure!(
            huge1 - huge0 == 4096 && pmd1 - pmd0 == 4096,
            "two 2 MiB folios mapped as blocks"
        );
        ensure!(
            huge2 == huge0 && pmd2 == pmd0,
            "the folios outlived their only mapping"
        );
        Ok(())
    })();
    thp::write_policy(&top, saved.as_str())?;
    r
}

fn seals() -> Outcome {
    use rt::pipe::fcntl;
    use rt::sys::Errno;
    const F_ADD_SEALS: usize = 1033;
    const F_GET_SEALS: usize = 1034;
    const SEAL: usize = 1;
    const SHRINK: usize = 2;
    const GROW: usize = 4;
    const WRITE: usize = 8;
    const MFD_ALLOW_SEALING: usize = 2;
    let plain = memfd()?;
    ensure!(
        fcntl(plain, F_GET_SEALS, 0) == Ok(SEAL),
        "a plain memfd is not F_SEAL_SEAL"
    );
    ensure!(
        fcntl(plain, F_ADD_SEALS, SHRINK) == Err(Errno::EPERM),
        "sealed a plain memfd"
    );
    fs::close(plain).ctx("close")?;
    let fd =
        fs::memfd_create(c"sealed", fs::MFD_CLOEXEC | MFD_ALLOW_SEALING).ctx("memfd_create")?;
    ensure!(
        fcntl(fd, F_GET_SEALS, 0) == Ok(0),
        "MFD_ALLOW_SEALING starts with seals"
    );
    fs::ftruncate(fd, 2 * PAGE).ctx("ftruncate")?;
    fcntl(fd, F_ADD_SEALS, SHRINK).ctx("F_SEAL_SHRINK")?;
    ensure!(
        fs::ftruncate(fd, PAGE) == Err(Errno::EPERM),
        "a cut past F_SEAL_SHRINK"
    );
    fs::ftruncate(fd, 3 * PAGE).ctx("growth under F_SEAL_SHRINK")?;
    fcntl(fd, F_ADD_SEALS, GROW).ctx("F_SEAL_GROW")?;
    ensure!(
        fs::ftruncate(fd, 4 * PAGE) == Err(Errno::EPERM),
        "growth past F_SEAL_GROW"
    );
    ensure!(
        fs::pwrite(fd, b"x", 3 * PAGE) == Err(Errno::EPERM),
        "a write past the end under F_SEAL_GROW"
    );
    fs::pwrite(fd, b"in", 0).ctx("a write inside under F_SEAL_GROW")?;
    {
        let r = Region::anon_aligned(PAGE, PAGE, RW).ctx("mmap")?;
        r.map_file_at(0, PAGE, RW, MAP_SHARED, fd as isize, 0)
            .ctx("mmap shared")?;
        ensure!(
            fcntl(fd, F_ADD_SEALS, WRITE) == Err(Errno::EBUSY),
            "F_SEAL_WRITE beside a shared mapping"
        );
    }
    fcntl(fd, F_ADD_SEALS, WRITE).ctx("F_SEAL_WRITE")?;
    ensure!(
        fs::pwrite(fd, b"y", 0) == Err(Errno::EPERM),
        "a write past F_SEAL_WRITE"
    );
    let r = Region::anon_aligned(PAGE, PAGE, RW).ctx("mmap")?;
    ensure!(
        r.map_file_at(0, PAGE, RW, MAP_SHARED, fd as isize, 0) == Err(Errno::EPERM),
        "a writable shared mapping of a write-sealed file"
    );
    r.map_file_at(0, PAGE, PROT_READ, MAP_SHARED, fd as isize, 0)
        .ctx("read-only shared mapping")?;
    ensure!(
        r.load(0) == b'i' && r.load(1) == b'n',
        "the sealed file's bytes"
    );
    ensure!(
        r.protect(0, PAGE, RW) == Err(Errno::EACCES),
        "mprotect to write a sealed mapping"
    );
    r.map_file_at(0, PAGE, RW, MAP_PRIVATE, fd as isize, 0)
        .ctx("private mapping")?;
    r.store(0, b'p');
    fcntl(fd, F_ADD_SEALS, SEAL).ctx("F_SEAL_SEAL")?;
    ensure!(
        fcntl(fd, F_ADD_SEALS, GROW) == Err(Errno::EPERM),
        "a seal after F_SEAL_SEAL"
    );
    ensure!(
        fcntl(fd, F_GET_SEALS, 0) == Ok(SEAL | SHRINK | GROW | WRITE),
        "F_GET_SEALS: {:?}",
        fcntl(fd, F_GET_SEALS, 0)
    );
    fs::close(fd).ctx("close")?;
    Ok(())
}

fn tmpfile() -> Outcome {
    const O_TMPFILE: usize = 0o20000000 | fs::O_DIRECTORY;
    let fd = fs::openat(fs::AT_FDCWD, c"/", O_TMPFILE | fs::O_RDWR, 0o600).ctx("open O_TMPFILE")?;
    ensure!(
        fs::openat(fs::AT_FDCWD, c"/", O_TMPFILE, 0o600) == Err(rt::sys::Errno::EINVAL),
        "O_TMPFILE without write access is not EINVAL"
    );
    fs::write(fd, b"tmp").ctx("write")?;
    let r = Region::anon_aligned(PAGE, PAGE, RW).ctx("mmap")?;
    r.map_file_at(0, PAGE, RW, MAP_SHARED, fd as isize, 0)
        .ctx("mmap shared")?;
    ensure!(
        r.load(0) == b't' && r.load(2) == b'p' && r.load(3) == 0,
        "mapped bytes"
    );
    fs::close(fd).ctx("close")?;
    Ok(())
}

fn punch_hole() -> Outcome {
    const PUNCH: usize = 3; // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    let fd = memfd()?;
    fs::ftruncate(fd, 8 * PAGE).ctx("ftruncate")?;
    let r = Region::anon_aligned(8 * PAGE, PAGE, RW).ctx("mmap")?;
    r.map_file_at(0, 8 * PAGE, RW, MAP_SHARED, fd as isize, 0)
        .ctx("mmap shared")?;
    let p = Region::anon_aligned(8 * PAGE, PAGE, RW).ctx("mmap")?;
    p.map_file_at(0, 8 * PAGE, RW, MAP_PRIVATE, fd as isize, 0)
        .ctx("mmap private")?;
    for i in 0..8 {
        r.store(i * PAGE, pattern(i));
        r.store(i * PAGE + PAGE - 1, pattern(i));
    }
    p.store(5 * PAGE, 0x77);
    ensure!(p.load(6 * PAGE) == pattern(6), "the private view of page 6");
    fs::fallocate(fd, PUNCH, PAGE, 2 * PAGE + 100).ctx("fallocate(PUNCH_HOLE)")?;
    ensure!(
        r.load(PAGE) == 0 && r.load(2 * PAGE + PAGE - 1) == 0 && r.load(3 * PAGE) == 0,
        "the hole does not read zeros"
    );
    ensure!(
        r.load(3 * PAGE + PAGE - 1) == pattern(3) && r.load(0) == pattern(0),
        "bytes outside the hole changed"
    );
    ensure!(size_of(fd)? == 8 * PAGE, "the hole changed the size");
    let e = fs::fallocate(fd, 2, 0, PAGE).err();
    ensure!(
        e == Some(Errno::EOPNOTSUPP),
        "a hole without KEEP_SIZE: {e:?}"
    );
    r.advise(5 * PAGE, 2 * PAGE, MADV_REMOVE)
        .ctx("MADV_REMOVE")?;
    let mut b = [0u8];
    fs::pread(fd, &mut b, 6 * PAGE).ctx("pread")?;
    ensure!(
        r.load(5 * PAGE) == 0 && r.load(6 * PAGE) == 0 && b[0] == 0,
        "MADV_REMOVE left the data"
    );
    ensure!(p.load(5 * PAGE) == 0x77, "the private copy lost its byte");
    ensure!(p.load(6 * PAGE) == 0, "the private view of a removed page");
    let e = p.advise(0, PAGE, MADV_REMOVE).err();
    ensure!(
        e == Some(Errno::EACCES),
        "MADV_REMOVE of a private file mapping: {e:?}"
    );
    let a = Region::anon(PAGE, RW, 0).ctx("mmap")?;
    let e = a.advise(0, PAGE, MADV_REMOVE).err();
    ensure!(
        e == Some(Errno::EINVAL),
        "MADV_REMOVE of anonymous memory: {e:?}"
    );
    fs::close(fd).ctx("close")?;
    Ok(())
}
