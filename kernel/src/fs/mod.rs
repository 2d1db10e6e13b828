//! Files: the console (fds 0, 1, 2), the initramfs as a read-only root filesystem, and
//! a small pseudo-filesystem of generated files under /proc and /sys, the way Linux
//! exposes kernel state. Each node renders its
//! contents when opened (a read sees one consistent snapshot), and again when the
//! position goes back to 0 (Linux's seq_file starts over there: a program that
//! rewinds /proc/self/maps sees the mappings as they are now); a writable node takes
//! each write as a whole new value, as sysfs does.
//!
//! Subsystems add their nodes to `NODES` or a table of their own (`thp`, `procfs`,
//! `hugetlb`).
//!
//! A descriptor may also name a [`Stream`]: an object whose reads and writes block,
//! implemented above this layer (a pipe end, `proc::pipe`); the system calls take it
//! out of the table and call it with the table unlocked.

// No `unsafe` in the file layer: user memory goes through `arch::aarch64::uaccess`.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::arch::aarch64::uaccess::USER_END;
use crate::mm::addr::PAGE_SHIFT;
use crate::mm::fault::Transfer;
use crate::mm::shmem::Shmem;
use procfs::MemFile;

use crate::uapi::Errno;
use crate::uapi::*;

pub mod caller;
pub mod cpio;
pub mod exception_trace;
mod gup_test;
mod hugetlb;
mod lazyfree;
mod procfs;
pub mod sysctl;
mod thp;
mod vmstat;

/// What a writable node does with a write of its whole new value.
pub type NodeWrite = fn(&str) -> Result<(), Errno>;

/// A file or directory of the pseudo-filesystem.
#[derive(Clone, Copy)]
pub struct Node {
    pub path: &'static str,
    /// `None` for a directory.
    pub render: Option<fn() -> String>,
    /// Accepts a write of the whole new value (sysfs style), if the node is writable.
    pub write: Option<NodeWrite>,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        self.render.is_none()
    }
}

const fn dir(path: &'static str) -> Node {
    Node {
        path,
        render: None,
        write: None,
    }
}

/// The contiguous layer's counters, one `name value` per line.
fn contpte_stats() -> String {
    let c = crate::arch::aarch64::mm::machine::counters().snapshot();
    let mut s = String::new();
    for (name, v) in [
        ("folds", c.folds),
        ("unfolds", c.unfolds),
        ("converts", c.converts),
        ("cont_maps", c.cont_maps),
        ("pmd_splits", c.pmd_splits),
        ("tables_moved", c.tables_moved),
        ("tlbi_page", c.tlbi_page),
        ("tlbi_range", c.tlbi_range),
        ("tlbi_asid", c.tlbi_asid),
        ("tlbi_all", c.tlbi_all),
        ("entries_written", c.entries_written),
        ("spurious_faults", c.spurious_faults),
    ] {
        let _ = writeln!(s, "{name} {v}");
    }
    s
}

static NODES: &[Node] = &[
    dir("/"),
    dir("/dev"),
    dir("/proc"),
    dir("/proc/self"),
    dir("/proc/sys"),
    dir("/proc/sys/kernel"),
    dir("/proc/sys/debug"),
    dir("/sys"),
    dir("/sys/kernel"),
    dir("/sys/kernel/mm"),
    dir("/sys/kernel/mm/contpte"),
    dir("/sys/kernel/debug"),
    Node {
        path: gup_test::PATH,
        render: Some(String::new),
        write: None,
    },
    Node {
        path: "/proc/lazyfree",
        render: Some(lazyfree::render),
        write: Some(lazyfree::write),
    },
    Node {
        path: "/proc/sys/kernel/threads-max",
        render: Some(sysctl::render),
        write: Some(sysctl::write),
    },
    Node {
        path: "/proc/sys/debug/exception-trace",
        render: Some(exception_trace::render),
        write: Some(exception_trace::write),
    },
    Node {
        path: PAGEMAP,
        render: Some(String::new),
        write: None,
    },
    Node {
        path: KPAGEFLAGS,
        render: Some(String::new),
        write: None,
    },
    Node {
        path: MEM,
        render: Some(String::new),
        write: None,
    },
    Node {
        path: "/proc/self/clear_refs",
        render: Some(String::new),
        write: Some(procfs::clear_refs),
    },
    Node {
        path: "/proc/vmstat",
        render: Some(vmstat::render),
        write: None,
    },
    Node {
        path: "/sys/kernel/mm/contpte/stats",
        render: Some(contpte_stats),
        write: None,
    },
    Node {
        path: "/sys/kernel/mm/asid_stats",
        render: Some(|| {
            let (bits, shared) = crate::arch::aarch64::mm::machine::asid_stats();
            alloc::format!("asid_bits {bits}\nshared_handouts {shared}\n")
        }),
        write: None,
    },
    Node {
        path: "/sys/kernel/mm/contpte/mode",
        render: Some(|| alloc::format!("{}\n", crate::arch::aarch64::mm::machine::config().mode)),
        write: None,
    },
];

/// The node at `path` (absolute; "." and repeated slashes are tolerated).
pub fn lookup(path: &str) -> Option<&'static Node> {
    let mut norm = String::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        norm.push('/');
        norm.push_str(part);
    }
    if norm.is_empty() {
        norm.push('/');
    }
    NODES
        .iter()
        .chain(thp::NODES.iter())
        .chain(procfs::NODES.iter())
        .chain(hugetlb::nodes())
        .find(|n| n.path == norm)
}

static ROOT: spin::Once<&'static [u8]> = spin::Once::new();

/// The initramfs becomes the root filesystem (boot, once).
pub fn set_root(data: &'static [u8]) {
    ROOT.call_once(|| data);
}

/// The root filesystem: the initramfs, if the machine was booted with one.
pub fn root() -> Option<cpio::Cpio<'static>> {
    ROOT.get().map(|d| cpio::Cpio::new(d))
}

/// What a path names: a pseudo-file node, or a file or directory of the initramfs.
pub enum Target {
    Node(&'static Node),
    Ram {
        data: &'static [u8],
        mode: u32,
        /// The path in the archive, without a leading "/" or "./".
        name: &'static str,
    },
}

impl Target {
    pub fn is_dir(&self) -> bool {
        match self {
            Target::Node(n) => n.is_dir(),
            Target::Ram { mode, .. } => mode & 0o170000 == 0o040000,
        }
    }

    pub fn mode(&self) -> u32 {
        match self {
            Target::Node(n) => node_mode(n),
            Target::Ram { mode, .. } => *mode,
        }
    }
}

/// Resolve a path: pseudo-files first (they are mounted over the initramfs), then the
/// initramfs.
pub fn resolve(path: &str) -> Option<Target> {
    if let Some(n) = lookup(path) {
        return Some(Target::Node(n));
    }
    let e = root()?.find(path)?;
    Some(Target::Ram {
        data: e.data,
        mode: e.mode,
        name: cpio::normalize(e.name),
    })
}

/// What access(2) looks at: the file type and permission bits, and where writes go.
pub struct Access {
    mode: u32,
    writes: Writes,
}

enum Writes {
    /// A file or directory of the initramfs, or a directory of the pseudo-filesystem:
    /// the read-only root.
    ReadOnlyFs,
    /// A generated file that takes writes, or not (open for writing is EACCES).
    Node { writable: bool },
    /// A device (the console, /dev/console): writes go to it, not to the filesystem.
    Device,
}

impl Access {
    pub fn of(t: &Target) -> Self {
        let writes = match t {
            Target::Node(n) if n.path == MEM => Writes::Node { writable: true },
            Target::Node(n) if !n.is_dir() => Writes::Node {
                writable: n.write.is_some(),
            },
            Target::Ram { mode, .. } if is_special(*mode) => Writes::Device,
            _ => Writes::ReadOnlyFs,
        };
        Access {
            mode: t.mode(),
            writes,
        }
    }

    pub fn of_file(f: &File) -> Self {
        match f {
            File::Console | File::Stream(_) => Access {
                mode: f.mode(),
                writes: Writes::Device,
            },
            File::Node { node, .. } => Access::of(&Target::Node(node)),
            File::Words { .. } => Access {
                mode: f.mode(),
                writes: Writes::Node { writable: false },
            },
            File::Mem { .. } | File::Shm(_) | File::Huge(_) => Access {
                mode: f.mode(),
                writes: Writes::Node { writable: true },
            },
            File::Ram {
                data, mode, name, ..
            } => Access::of(&Target::Ram {
                data,
                mode: *mode,
                name,
            }),
        }
    }

    /// The answer Linux's access(2) gives root, in its order: a write to a regular
    /// file or directory of a read-only filesystem is EROFS (before any other check);
    /// root may read anything and write any writable file; execute needs an execute
    /// bit on a non-directory (EACCES). Reading needs no check: root reads anything.
    pub fn check(&self, write: bool, exec: bool) -> Result<(), Errno> {
        if write && matches!(self.writes, Writes::ReadOnlyFs) {
            return Err(EROFS);
        }
        let dir = self.mode & 0o170000 == 0o040000;
        if exec && !dir && self.mode & 0o111 == 0 {
            return Err(EACCES);
        }
        if write && matches!(self.writes, Writes::Node { writable: false }) {
            return Err(EACCES);
        }
        Ok(())
    }
}

/// A character or block device, FIFO or socket: not a regular file, directory or link.
fn is_special(mode: u32) -> bool {
    !matches!(mode & 0o170000, 0o100000 | 0o040000 | 0o120000)
}

/// Poll bits (`asm-generic/poll.h`).
pub const POLLIN: u16 = 0x1;
pub const POLLOUT: u16 = 0x4;
pub const POLLERR: u16 = 0x8;
pub const POLLHUP: u16 = 0x10;
pub const POLLNVAL: u16 = 0x20;
pub const POLLRDNORM: u16 = 0x40;
pub const POLLWRNORM: u16 = 0x100;

/// A file whose operations may block: they copy to and from user memory themselves
/// and are called with no lock of the descriptor table held. The object is one open
/// file description: descriptors made by dup or fork share it, status flags and all.
pub trait Stream: Send + Sync {
    /// read(2) into the user buffer `[buf, buf + count)`.
    fn read(&self, buf: u64, count: u64) -> Result<u64, Errno>;
    /// write(2) from the user buffer.
    fn write(&self, buf: u64, count: u64) -> Result<u64, Errno>;
    /// vmsplice(2) into the stream: wait for some room (unless `nonblock`), move what
    /// fits, return (a pipe's; other streams refuse it).
    fn splice_write(&self, _buf: u64, _count: u64, _nonblock: bool) -> Result<u64, Errno> {
        Err(EBADF)
    }
    /// ioctl(2) on the stream (ENOTTY: none it knows).
    fn ioctl(&self, _req: u64, _arg: u64) -> Result<u64, Errno> {
        Err(ENOTTY)
    }
    /// The poll bits that hold now.
    fn poll(&self) -> u16;
    /// The file status flags (access mode, O_NONBLOCK) for F_GETFL.
    fn status(&self) -> u64;
    /// F_SETFL: only O_NONBLOCK changes.
    fn set_nonblock(&self, on: bool);
    /// st_mode for fstat.
    fn mode(&self) -> u32;
}

#[derive(Clone)]
pub enum File {
    Console,
    /// A table of 64-bit words generated at each read (`procfs::read_words`), too
    /// large to render at open: `pos` is a byte offset.
    Words {
        table: WordTable,
        pos: usize,
    },
    /// /proc/self/mem: the opener's address space, read and written at `pos`, a
    /// virtual address (`procfs::MemFile`).
    Mem(MemFile),
    Stream(Arc<dyn Stream>),
    Node {
        node: &'static Node,
        data: String,
        pos: usize,
        writable: bool,
    },
    Ram {
        data: &'static [u8],
        mode: u32,
        /// The path in the archive (a directory lists what lies under it).
        name: &'static str,
        /// Bytes read; for a directory, entries listed.
        pos: usize,
    },
    /// A file of the RAM file system: a memfd (`mm::shmem`).
    Shm(ShmFile),
    /// A hugetlb memfd (`memfd_create(MFD_HUGETLB)`): its pages are the pool's.
    Huge(HugeFd),
}

/// An open file of the RAM file system.
#[derive(Clone)]
pub struct ShmFile {
    pub file: Arc<Shmem>,
    pub pos: usize,
    pub writable: bool,
}

/// An open hugetlb memfd (`mm::hugetlb::resv::HugeFile`, Linux's hugetlbfs file).
#[derive(Clone)]
pub struct HugeFd {
    pub file: Arc<crate::mm::hugetlb::resv::HugeFile>,
    pub pos: usize,
}

/// st_mode of a memfd: a regular file, every permission (Linux's `memfd_create`).
const SHM_MODE: u32 = 0o100777;

/// The open files of a process: each descriptor names a file and has its own
/// close-on-exec flag (one bit per descriptor).
#[derive(Clone)]
pub struct Files {
    fds: Vec<Option<File>>,
    cloexec: [u64; MAX_FDS / 64],
    /// RLIMIT_NOFILE's soft limit: descriptors are below it (at most MAX_FDS).
    pub limit: usize,
}

/// Descriptors per process (RLIMIT_NOFILE here; Linux's default soft limit is 1024).
pub const MAX_FDS: usize = 256;

pub const O_ACCMODE: u64 = 3;
pub const O_WRONLY: u64 = 1;
pub const O_RDWR: u64 = 2;
pub const O_CREAT: u64 = 0o100;
pub const O_NONBLOCK: u64 = 0o4000;
pub const O_CLOEXEC: u64 = 0o2000000;
/// arm64's value (asm/fcntl.h; 0o200000 is O_DIRECT there).
pub const O_DIRECTORY: u64 = 0o40000;
/// O_TMPFILE: __O_TMPFILE with O_DIRECTORY.
pub const O_TMPFILE: u64 = 0o20000000 | O_DIRECTORY;

impl Files {
    /// stdin, stdout and stderr on the console.
    pub fn console() -> Self {
        Files {
            fds: alloc::vec![
                Some(File::Console),
                Some(File::Console),
                Some(File::Console)
            ],
            cloexec: [0; MAX_FDS / 64],
            limit: MAX_FDS,
        }
    }

    pub fn empty() -> Self {
        Files {
            fds: Vec::new(),
            cloexec: [0; MAX_FDS / 64],
            limit: MAX_FDS,
        }
    }

    /// Put `file` in the lowest free descriptor at or above `min`: EMFILE if none.
    pub fn install(&mut self, file: File, min: usize, cloexec: bool) -> Result<u64, Errno> {
        let fd = (min..self.limit)
            .find(|&i| self.fds.get(i).is_none_or(Option::is_none))
            .ok_or(EMFILE)?;
        self.put(fd, file, cloexec);
        Ok(fd as u64)
    }

    /// Put `file` at descriptor `fd` (< MAX_FDS), which must be free (dup3 closes
    /// it first, so that the caller drops what it named with the table unlocked).
    pub fn put(&mut self, fd: usize, file: File, cloexec: bool) {
        if self.fds.len() <= fd {
            self.fds.resize(fd + 1, None);
        }
        self.fds[fd] = Some(file);
        self.set_cloexec(fd as u64, cloexec);
    }

    pub fn cloexec(&self, fd: u64) -> bool {
        (fd as usize) < MAX_FDS && self.cloexec[fd as usize / 64] & (1 << (fd % 64)) != 0
    }

    pub fn set_cloexec(&mut self, fd: u64, on: bool) {
        let (w, b) = (fd as usize / 64, fd % 64);
        if on {
            self.cloexec[w] |= 1 << b;
        } else {
            self.cloexec[w] &= !(1 << b);
        }
    }

    /// exec: close every descriptor marked close-on-exec.
    pub fn close_on_exec(&mut self) {
        for fd in 0..self.fds.len() {
            if self.cloexec(fd as u64) {
                self.fds[fd] = None;
                self.set_cloexec(fd as u64, false);
            }
        }
    }

    pub fn get(&mut self, fd: u64) -> Result<&mut File, Errno> {
        self.fds
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
            .ok_or(EBADF)
    }

    pub fn open(&mut self, path: &str, flags: u64) -> Result<u64, Errno> {
        let target = resolve(path).ok_or(if flags & O_CREAT != 0 { EROFS } else { ENOENT })?;
        let writable = flags & O_ACCMODE != 0;
        if flags & O_TMPFILE & !O_DIRECTORY != 0 {
            return self.open_tmpfile(&target, flags);
        }
        if target.is_dir() && writable {
            return Err(EISDIR);
        }
        if !target.is_dir() && flags & O_DIRECTORY != 0 {
            return Err(ENOTDIR);
        }
        let file = match target {
            Target::Node(node) if node.path == MEM => File::Mem(MemFile::open(writable)?),
            Target::Node(node) if node.path == gup_test::PATH => gup_test::open(),
            Target::Node(node) if writable && node.write.is_none() => return Err(EACCES),
            Target::Node(node) if node.path == PAGEMAP => File::Words {
                table: WordTable::Pagemap,
                pos: 0,
            },
            Target::Node(node) if node.path == KPAGEFLAGS => File::Words {
                table: WordTable::Kpageflags,
                pos: 0,
            },
            Target::Node(node) => File::Node {
                node,
                data: node.render.map_or(String::new(), |r| r()),
                pos: 0,
                writable,
            },
            Target::Ram { .. } if writable => return Err(EROFS),
            Target::Ram { data, mode, name } => File::Ram {
                data,
                mode,
                name,
                pos: 0,
            },
        };
        self.install(file, 0, flags & O_CLOEXEC != 0)
    }

    /// open(dir, O_TMPFILE): a new unnamed file of the RAM file system (`mm::shmem`),
    /// as the initramfs of Linux (a tmpfs) gives in any of its directories. Linux's
    /// checks: O_TMPFILE without O_DIRECTORY's bit or without write access is EINVAL,
    /// a path that is not a directory ENOTDIR.
    fn open_tmpfile(&mut self, dir: &Target, flags: u64) -> Result<u64, Errno> {
        if flags & O_TMPFILE != O_TMPFILE || flags & O_ACCMODE == 0 {
            return Err(EINVAL);
        }
        if !dir.is_dir() {
            return Err(ENOTDIR);
        }
        if let Target::Node(n) = dir {
            if n.path.starts_with("/proc") || n.path.starts_with("/sys") {
                // procfs and sysfs hold no files of their own.
                return Err(EOPNOTSUPP);
            }
        }
        let file = Shmem::new(|ino| alloc::format!("/tmp/#{ino}"), 0);
        let f = File::Shm(ShmFile {
            file,
            pos: 0,
            writable: true,
        });
        self.install(f, 0, flags & O_CLOEXEC != 0)
    }

    /// Close `fd`; the file is returned so that the caller drops it (a pipe end
    /// wakes the other side) after the table's lock is released.
    pub fn close(&mut self, fd: u64) -> Result<File, Errno> {
        let slot = self.fds.get_mut(fd as usize).ok_or(EBADF)?;
        slot.take().ok_or(EBADF)
    }
}

impl File {
    /// Read into `buf` from the current position; 0 at the end (the console's input is empty).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            File::Console => Ok(0),
            File::Words { table, pos } => procfs::read_words(*table, pos, buf),
            File::Mem(m) => m.access(Transfer::Read(buf)),
            File::Stream(_) => Err(EINVAL),
            File::Node { node, .. } if node.is_dir() => Err(EISDIR),
            File::Node { data, pos, .. } => Ok(read_at(data.as_bytes(), pos, buf)),
            File::Ram { mode, .. } if *mode & 0o170000 == 0o040000 => Err(EISDIR),
            File::Ram { data, pos, .. } => Ok(read_at(data, pos, buf)),
            File::Shm(f) => {
                let n = f.file.read(&KernelMachine, f.pos as u64, buf);
                f.pos += n;
                Ok(n)
            }
            File::Huge(f) => {
                let n =
                    crate::mm::hugetlb::map::read_file(&KernelMachine, &f.file, f.pos as u64, buf);
                f.pos += n;
                Ok(n)
            }
        }
    }

    /// A directory's absolute path and how many of its entries were listed.
    pub fn directory(&mut self) -> Option<(String, &mut usize)> {
        match self {
            File::Node { node, pos, .. } if node.is_dir() => Some((node.path.into(), pos)),
            File::Ram {
                mode, name, pos, ..
            } if *mode & 0o170000 == 0o040000 => {
                let path = if name.is_empty() || *name == "." {
                    String::from("/")
                } else {
                    alloc::format!("/{name}")
                };
                Some((path, pos))
            }
            _ => None,
        }
    }

    /// The contents and position of a seekable file.
    /// The position goes back to the start: a generated file is rendered anew (module
    /// doc), as Linux's seq_file regenerates from position 0.
    pub fn rewind(&mut self) {
        if let File::Node { node, data, .. } = self {
            if let Some(render) = node.render {
                *data = render();
            }
        }
    }

    pub fn seekable(&mut self) -> Option<(usize, &mut usize)> {
        match self {
            File::Console | File::Stream(_) => None,
            File::Words { table, pos } => Some((table.len(), pos)),
            File::Mem(m) => Some((USER_END, &mut m.pos)),
            File::Node { data, pos, .. } => Some((data.len(), pos)),
            File::Ram { data, pos, .. } => Some((data.len(), pos)),
            File::Shm(f) => Some((f.file.size() as usize, &mut f.pos)),
            File::Huge(f) => Some((f.file.length() as usize, &mut f.pos)),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, Errno> {
        match self {
            File::Console => {
                // The console's lock masks IRQs (handlers log): print in pieces the
                // size of a user line (rt prints lines of up to 512 bytes whole).
                for piece in bytes.chunks(CONSOLE_PIECE) {
                    crate::console::print(format_args!("{}", String::from_utf8_lossy(piece)));
                }
                Ok(bytes.len())
            }
            File::Mem(m) => m.access(Transfer::Write(bytes)),
            File::Node {
                writable: false, ..
            }
            | File::Words { .. }
            | File::Ram { .. } => Err(EBADF),
            // hugetlbfs has no write (Linux's vfs_write without a write_iter).
            File::Stream(_) | File::Huge(_) => Err(EINVAL),
            File::Shm(f) if !f.writable => Err(EBADF),
            File::Shm(f) => {
                let n = f.file.write(&KernelMachine, f.pos as u64, bytes)?;
                f.pos += n;
                Ok(n)
            }
            File::Node { node, .. } => {
                let text = core::str::from_utf8(bytes).map_err(|_| EINVAL)?;
                (node.write.ok_or(EACCES)?)(text)?;
                Ok(bytes.len())
            }
        }
    }

    /// st_mode for fstat: a character device for the console, else a file or directory.
    pub fn mode(&self) -> u32 {
        match self {
            File::Console => 0o020620,
            File::Words { .. } => 0o100444,
            File::Mem(_) => MEM_MODE,
            File::Stream(s) => s.mode(),
            File::Node { node, .. } => node_mode(node),
            File::Ram { mode, .. } => *mode,
            File::Shm(_) | File::Huge(_) => SHM_MODE,
        }
    }

    pub fn size(&self) -> usize {
        match self {
            File::Console
            | File::Node { .. }
            | File::Words { .. }
            | File::Mem(_)
            | File::Stream(_) => 0,
            File::Ram { data, .. } => data.len(),
            File::Shm(f) => f.file.size() as usize,
            File::Huge(f) => f.file.length() as usize,
        }
    }

    /// The stream behind this file, if it is one.
    pub fn stream(&self) -> Option<Arc<dyn Stream>> {
        match self {
            File::Stream(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The file status flags for F_GETFL: the access mode (and O_NONBLOCK).
    pub fn status(&self) -> u64 {
        match self {
            File::Console | File::Huge(_) => O_RDWR,
            File::Stream(s) => s.status(),
            File::Node { writable, .. }
            | File::Mem(MemFile { writable, .. })
            | File::Shm(ShmFile { writable, .. }) => {
                if *writable {
                    O_RDWR
                } else {
                    0
                }
            }
            File::Words { .. } | File::Ram { .. } => 0,
        }
    }

    /// What poll reports: a stream asks its object; the console takes writes at once
    /// and never has input; other files are always ready.
    pub fn poll(&self) -> u16 {
        match self {
            File::Console => POLLOUT | POLLWRNORM,
            File::Stream(s) => s.poll(),
            _ => POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM,
        }
    }
}

/// The entries of directory `dir` (absolute): ".", "..", the pseudo-files and
/// directories under it, then the initramfs's (those a pseudo-node hides are left
/// out); `f(name, is_dir)` for each, in a fixed order.
pub fn dir_entries(dir: &str, mut f: impl FnMut(&str, bool)) {
    let dir = dir.trim_end_matches('/');
    let child = |path: &'static str| -> Option<&'static str> {
        let rest = path.strip_prefix(dir)?.strip_prefix('/')?;
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    };
    f(".", true);
    f("..", true);
    for n in NODES
        .iter()
        .chain(thp::NODES.iter())
        .chain(procfs::NODES.iter())
        .chain(hugetlb::nodes())
    {
        if let Some(name) = child(n.path) {
            f(name, n.is_dir());
        }
    }
    let Some(cpio) = root() else {
        return;
    };
    for e in cpio.entries().map_while(Result::ok) {
        let path = cpio::normalize(e.name);
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        let name = path.rsplit_once('/').map_or(path, |(_, n)| n);
        if name.is_empty()
            || name == "."
            || alloc::format!("/{parent}").trim_end_matches('/') != dir
        {
            continue;
        }
        if lookup(&alloc::format!("{dir}/{name}")).is_none() {
            f(name, e.is_dir());
        }
    }
}

/// The tables of 64-bit words: /proc/self/pagemap, one per page of the reader's
/// address space (`Mm::pagemap`), and /proc/kpageflags, one per physical frame
/// (`mm::report::kpageflags`).
#[derive(Clone, Copy)]
pub enum WordTable {
    Pagemap,
    Kpageflags,
}

const PAGEMAP: &str = "/proc/self/pagemap";
const KPAGEFLAGS: &str = "/proc/kpageflags";
const MEM: &str = "/proc/self/mem";
/// /proc/self/mem is readable and writable by its owner only, as Linux's.
const MEM_MODE: u32 = 0o100600;
const WORD: usize = 8;

impl WordTable {
    /// Bytes: a word per page of the 48-bit user address space, or per frame of the
    /// 48-bit physical one.
    fn len(self) -> usize {
        match self {
            WordTable::Pagemap => (USER_END >> PAGE_SHIFT) * WORD,
            WordTable::Kpageflags => ((1usize << 48) >> PAGE_SHIFT) * WORD,
        }
    }
}

/// Bytes of a console write printed under one hold of the console's lock.
const CONSOLE_PIECE: usize = 512;

fn read_at(data: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    // pread may ask past the end.
    let n = buf.len().min(data.len().saturating_sub(*pos));
    if n == 0 {
        return 0;
    }
    buf[..n].copy_from_slice(&data[*pos..*pos + n]);
    *pos += n;
    n
}

pub fn node_mode(node: &Node) -> u32 {
    if node.path == MEM {
        return MEM_MODE;
    }
    match (node.is_dir(), node.write.is_some()) {
        (true, _) => 0o040555,
        (false, true) => 0o100644,
        (false, false) => 0o100444,
    }
}
