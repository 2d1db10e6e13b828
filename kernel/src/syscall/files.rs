//! read, write, readv, writev, pread64, pwrite64, openat, close, lseek, fstat, newfstatat, faccessat,
//! ioctl, readlinkat, mkdirat, getdents64: the console and the pseudo-filesystem (`fs`).

use alloc::string::String;
use alloc::vec;

use super::Errno;
use crate::arch::aarch64::uaccess::{
    copy_from_user, copy_to_user, is_user_range, read_user, strncpy_from_user, write_user,
};
use crate::fs::{self, File};
use crate::proc::sched::me;
use crate::uapi::*;

const AT_FDCWD: i64 = -100;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EACCESS: u64 = 0x200;
const AT_EMPTY_PATH: u64 = 0x1000;
const PATH_MAX: usize = 4096;
const CHUNK: usize = 4096;
const TCGETS: u64 = 0x5401;
const TIOCGWINSZ: u64 = 0x5413;

/// A path argument, possibly empty: EFAULT, ENAMETOOLONG, or the string.
fn user_path_or_empty(ptr: u64) -> Result<String, Errno> {
    let mut buf = vec![0u8; PATH_MAX];
    let n = strncpy_from_user(&mut buf, ptr as usize)
        .map_err(|_| EFAULT)?
        .ok_or(ENAMETOOLONG)?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(|_| ENOENT)
}

/// A path argument: an empty one names nothing (ENOENT), as Linux's getname says.
/// Relative paths are from / (every process's working directory).
pub fn user_path(ptr: u64) -> Result<String, Errno> {
    let p = user_path_or_empty(ptr)?;
    if p.is_empty() {
        return Err(ENOENT);
    }
    Ok(p)
}

fn with_file<R>(fd: u64, f: impl FnOnce(&mut File) -> Result<R, Errno>) -> Result<R, Errno> {
    let t = me();
    let mut files = t.files.lock();
    f(files.get(fd)?)
}

pub fn read(fd: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    // A stream (a pipe end) blocks: it is called with the table unlocked.
    if let Some(s) = with_file(fd, |f| Ok(f.stream()))? {
        return s.read(buf, count);
    }
    read_chunks(fd, buf, count, |f, chunk, _| f.read(chunk))
}

/// `op` on `f` with its position at `off`, the position restored afterwards (pread64,
/// pwrite64).
fn at_offset<R>(f: &mut File, off: usize, op: impl FnOnce(&mut File) -> R) -> R {
    let saved = f
        .seekable()
        .map_or(0, |(_, pos)| core::mem::replace(pos, off));
    let r = op(f);
    if let Some((_, pos)) = f.seekable() {
        *pos = saved;
    }
    r
}

/// read at offset `off`, leaving the file's position as it was: ESPIPE for the
/// console, EINVAL for a negative offset (Linux's ksys_pread64).
pub fn pread64(fd: u64, buf: u64, count: u64, off: u64) -> Result<u64, Errno> {
    with_file(fd, |f| f.seekable().map(|_| ()).ok_or(ESPIPE))?;
    if (off as i64) < 0 {
        return Err(EINVAL);
    }
    read_chunks(fd, buf, count, |f, chunk, done| {
        at_offset(f, off as usize + done, |f| f.read(chunk))
    })
}

/// Copy up to `count` bytes of file `fd` to the user buffer `buf` in bounded chunks,
/// each read by `get(file, chunk, bytes already read)`: as Linux's vfs_read, the
/// buffer is checked (EFAULT) before a zero count returns; a short chunk (the end of
/// the file) ends the call, and so does an error once some bytes were read.
fn read_chunks(
    fd: u64,
    buf: u64,
    count: u64,
    mut get: impl FnMut(&mut File, &mut [u8], usize) -> Result<usize, Errno>,
) -> Result<u64, Errno> {
    if !is_user_range(buf as usize, count as usize) {
        return Err(EFAULT);
    }
    let mut done = 0usize;
    let mut kbuf = vec![0u8; (count as usize).min(CHUNK)];
    while done < count as usize {
        let n = (count as usize - done).min(CHUNK);
        let r = with_file(fd, |f| get(f, &mut kbuf[..n], done)).and_then(|got| {
            copy_to_user(buf as usize + done, &kbuf[..got])
                .map(|()| got)
                .map_err(|_| EFAULT)
        });
        match r {
            Ok(got) => {
                done += got;
                if got < n {
                    break;
                }
            }
            Err(e) => return partial(done, e),
        }
    }
    Ok(done as u64)
}

/// Copy `count` bytes from the user buffer `buf` to file `fd` in bounded chunks, each
/// stored by `put(file, chunk, bytes already written)`: EFAULT for a buffer outside
/// user space; a short store (the end of /proc/self/mem's VMAs) ends the call with
/// the bytes written, and so does an error once some were written (`partial`).
fn write_chunks(
    fd: u64,
    buf: u64,
    count: u64,
    mut put: impl FnMut(&mut File, &[u8], usize) -> Result<usize, Errno>,
) -> Result<u64, Errno> {
    if !is_user_range(buf as usize, count as usize) {
        return Err(EFAULT);
    }
    let mut done = 0usize;
    let mut kbuf = vec![0u8; (count as usize).min(CHUNK)];
    while done < count as usize {
        let n = (count as usize - done).min(CHUNK);
        let r = copy_from_user(&mut kbuf[..n], buf as usize + done)
            .map_err(|_| EFAULT)
            .and_then(|()| with_file(fd, |f| put(f, &kbuf[..n], done)));
        match r {
            Ok(w) => {
                done += w;
                if w < n {
                    break;
                }
            }
            Err(e) => return partial(done, e),
        }
    }
    Ok(done as u64)
}

/// write at offset `off`, leaving the file's position as it was, in Linux's order
/// (ksys_pwrite64, vfs_write): EINVAL for a negative offset, EBADF, ESPIPE for the
/// console, EBADF unless open for writing, then the buffer (`write_chunks`).
pub fn pwrite64(fd: u64, buf: u64, count: u64, off: u64) -> Result<u64, Errno> {
    if (off as i64) < 0 {
        return Err(EINVAL);
    }
    with_file(fd, |f| {
        if f.seekable().is_none() {
            Err(ESPIPE)
        } else if f.status() & fs::O_ACCMODE == 0 {
            Err(EBADF)
        } else {
            Ok(())
        }
    })?;
    write_chunks(fd, buf, count, |f, bytes, done| {
        at_offset(f, off as usize + done, |f| f.write(bytes))
    })
}

pub fn write(fd: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    if let Some(s) = with_file(fd, |f| Ok(f.stream()))? {
        return s.write(buf, count);
    }
    write_chunks(fd, buf, count, |f, bytes, _| f.write(bytes))
}

#[derive(Clone, Copy, Default)]
#[repr(C)]
pub(super) struct IoVec {
    pub(super) base: u64,
    pub(super) len: u64,
}

pub(super) fn vectored(
    fd: u64,
    iov: u64,
    cnt: u64,
    op: fn(u64, u64, u64) -> Result<u64, Errno>,
) -> Result<u64, Errno> {
    if cnt > 1024 {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..cnt {
        let v: IoVec = read_user(iov as usize + i as usize * 16).map_err(|_| EFAULT)?;
        total += op(fd, v.base, v.len)?;
    }
    Ok(total)
}

pub fn readv(fd: u64, iov: u64, cnt: u64) -> Result<u64, Errno> {
    vectored(fd, iov, cnt, read)
}

pub fn writev(fd: u64, iov: u64, cnt: u64) -> Result<u64, Errno> {
    vectored(fd, iov, cnt, write)
}

fn check_dirfd(dirfd: u64, path: &str) -> Result<(), Errno> {
    if path.starts_with('/') || dirfd as i64 == AT_FDCWD {
        return Ok(());
    }
    with_file(dirfd, |_| Ok(()))?;
    Err(ENOTDIR)
}

pub fn openat(dirfd: u64, path: u64, flags: u64) -> Result<u64, Errno> {
    let path = user_path(path)?;
    check_dirfd(dirfd, &path)?;
    me().files.lock().open(&path, flags)
}

pub fn close(fd: u64) -> Result<u64, Errno> {
    // What the descriptor named is dropped after the table's lock (a pipe end wakes
    // the other side).
    let closed = me().files.lock().close(fd)?;
    drop(closed);
    Ok(0)
}

pub fn lseek(fd: u64, off: u64, whence: u64) -> Result<u64, Errno> {
    with_file(fd, |f| {
        if whence == 0 && off == 0 && f.seekable().is_some() {
            f.rewind();
        }
        let (len, pos) = f.seekable().ok_or(ESPIPE)?;
        let base = match whence {
            0 => 0,
            1 => *pos as i64,
            2 => len as i64,
            _ => return Err(EINVAL),
        };
        let new = base
            .checked_add(off as i64)
            .filter(|&p| p >= 0)
            .ok_or(EINVAL)?;
        *pos = (new as usize).min(len);
        Ok(new as u64)
    })
}

/// struct stat of asm-generic (arm64).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    pad1: u64,
    size: i64,
    blksize: i32,
    pad2: i32,
    blocks: i64,
    times: [u64; 6],
    unused: [u32; 2],
}

const _: () = assert!(core::mem::size_of::<Stat>() == 128);

fn put_stat(ptr: u64, mode: u32, size: usize) -> Result<u64, Errno> {
    let rdev = if mode & 0o170000 == 0o020000 {
        0x0501
    } else {
        0
    };
    let st = Stat {
        mode,
        nlink: 1,
        blksize: 4096,
        rdev,
        size: size as i64,
        blocks: size.div_ceil(512) as i64,
        ..Stat::default()
    };
    write_user(ptr as usize, &st).map_err(|_| EFAULT)?;
    Ok(0)
}

pub fn fstat(fd: u64, statbuf: u64) -> Result<u64, Errno> {
    let (mode, size) = with_file(fd, |f| Ok((f.mode(), f.size())))?;
    put_stat(statbuf, mode, size)
}

pub fn newfstatat(dirfd: u64, path: u64, statbuf: u64, flags: u64) -> Result<u64, Errno> {
    let p = user_path_or_empty(path)?;
    if p.is_empty() {
        return if flags & AT_EMPTY_PATH != 0 {
            fstat(dirfd, statbuf)
        } else {
            Err(ENOENT)
        };
    }
    check_dirfd(dirfd, &p)?;
    let target = fs::resolve(&p).ok_or(ENOENT)?;
    let size = match target {
        fs::Target::Ram { data, .. } => data.len(),
        fs::Target::Node(_) => 0,
    };
    put_stat(statbuf, target.mode(), size)
}

/// faccessat / faccessat2 (`flags` 0 for the former), in Linux's order: the mode
/// (EINVAL unless a subset of R_OK | W_OK | X_OK), the flags (EINVAL beyond
/// AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH), the path, then the permission
/// as `fs::access` answers it for root (the only user here, so real and effective ids
/// are the same and AT_EACCESS changes nothing; there are no symbolic links).
pub fn faccessat(dirfd: u64, path: u64, mode: u64, flags: u64) -> Result<u64, Errno> {
    const R_OK: u32 = 4;
    const W_OK: u32 = 2;
    const X_OK: u32 = 1;
    // mode and flags are C ints: the upper half of each register is not part of them.
    let mode = mode as u32;
    if mode & !(R_OK | W_OK | X_OK) != 0 {
        return Err(EINVAL);
    }
    let flags = flags as u32 as u64;
    if flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(EINVAL);
    }
    let p = user_path_or_empty(path)?;
    let what = if p.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(ENOENT);
        }
        if dirfd as i64 == AT_FDCWD {
            fs::Access::of(&fs::resolve("/").ok_or(ENOENT)?)
        } else {
            with_file(dirfd, |f| Ok(fs::Access::of_file(f)))?
        }
    } else {
        check_dirfd(dirfd, &p)?;
        fs::Access::of(&fs::resolve(&p).ok_or(ENOENT)?)
    };
    what.check(mode & W_OK != 0, mode & X_OK != 0)?;
    Ok(0)
}

pub fn ioctl(fd: u64, req: u64, arg: u64) -> Result<u64, Errno> {
    let stream = me().files.lock().get(fd)?.stream();
    if let Some(s) = stream {
        return s.ioctl(req, arg);
    }
    let console = with_file(fd, |f| Ok(matches!(f, File::Console)))?;
    match (console, req) {
        (true, TCGETS) => {
            // struct termios: iflag, oflag, cflag, lflag, line, cc[19]: a cooked tty.
            let mut t = [0u8; 36];
            t[4..8].copy_from_slice(&0o000005u32.to_le_bytes()); // OPOST | ONLCR
            t[8..12].copy_from_slice(&0o000277u32.to_le_bytes()); // B38400 | CS8 | CREAD
            t[12..16].copy_from_slice(&0o105073u32.to_le_bytes()); // ISIG | ICANON | ECHO...
            copy_to_user(arg as usize, &t).map_err(|_| EFAULT)?;
            Ok(0)
        }
        (true, TIOCGWINSZ) => {
            write_user(arg as usize, &[24u16, 80, 0, 0]).map_err(|_| EFAULT)?;
            Ok(0)
        }
        _ => Err(ENOTTY),
    }
}

pub fn readlinkat(dirfd: u64, path: u64) -> Result<u64, Errno> {
    let p = user_path(path)?;
    check_dirfd(dirfd, &p)?;
    // Neither the initramfs reader nor the pseudo-filesystem has symbolic links.
    match fs::resolve(&p) {
        Some(_) => Err(EINVAL),
        None => Err(ENOENT),
    }
}

pub fn mkdirat(dirfd: u64, path: u64) -> Result<u64, Errno> {
    let p = user_path(path)?;
    check_dirfd(dirfd, &p)?;
    match fs::resolve(&p) {
        Some(_) => Err(EEXIST),
        None => Err(EROFS),
    }
}

/// getdents64: the next entries of directory `fd` as `linux_dirent64` records (d_ino,
/// d_off, d_reclen, d_type, NUL-terminated d_name, each padded to 8 bytes), as many as
/// fit in `count` bytes (and in one kernel chunk); 0 at the end.
pub fn getdents64(fd: u64, dirp: u64, count: u64) -> Result<u64, Errno> {
    const HEADER: usize = 8 + 8 + 2 + 1;
    if !is_user_range(dirp as usize, count as usize) {
        return Err(EFAULT);
    }
    let mut out = vec![0u8; (count as usize).min(CHUNK)];
    let len = with_file(fd, |f| {
        let (dir, pos) = f.directory().ok_or(ENOTDIR)?;
        let mut len = 0;
        let mut index = 0;
        let mut full = false;
        fs::dir_entries(&dir, |name, is_dir| {
            index += 1;
            if full || index <= *pos {
                return;
            }
            let reclen = (HEADER + name.len() + 1).next_multiple_of(8);
            if len + reclen > out.len() {
                full = true;
                return;
            }
            let rec = &mut out[len..len + reclen];
            rec[0..8].copy_from_slice(&(index as u64).to_le_bytes());
            rec[8..16].copy_from_slice(&(index as i64).to_le_bytes());
            rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            rec[18] = if is_dir { DT_DIR } else { DT_REG };
            rec[HEADER..HEADER + name.len()].copy_from_slice(name.as_bytes());
            len += reclen;
            *pos = index;
        });
        if len == 0 && full {
            return Err(EINVAL);
        }
        Ok(len)
    })?;
    copy_to_user(dirp as usize, &out[..len]).map_err(|_| EFAULT)?;
    Ok(len as u64)
}

/// `d_type` of a directory and of a regular file.
const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
