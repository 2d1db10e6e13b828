//! The initial ramdisk: a cpio archive in the "newc" format, as Linux's initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`). Each member is
//!
//! ```text
//! header   110 ASCII bytes: magic "070701" (or "070702": newc with a checksum), then
//!          13 fields of 8 hex digits: ino mode uid gid nlink mtime filesize
//!          devmajor devminor rdevmajor rdevminor namesize check
//! name     namesize bytes including the final NUL, padded to a multiple of 4
//! data     filesize bytes, padded to a multiple of 4
//! ```
//!
//! offsets and padding counted from the start of the archive; the member named
//! `TRAILER!!!` ends it. For "070702" `check` is the sum of a regular file's data bytes
//! (mod 2^32); other members carry 0 there, and Linux checks only regular files.
//!
//! The archive comes from outside the kernel, so nothing here trusts it: every length
//! is checked against the buffer and a malformed member ends the walk with an error,
//! never a panic.

const HEADER_LEN: usize = 110;
const MAGIC_NEWC: &[u8] = b"070701";
const MAGIC_CRC: &[u8] = b"070702";
const TRAILER: &str = "TRAILER!!!";
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// Header fields, by index among the 13.
const MODE: usize = 1;
const FILESIZE: usize = 6;
const NAMESIZE: usize = 11;
const CHECK: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// A member does not start with "070701" or "070702".
    BadMagic,
    /// A header field is not 8 hex digits.
    BadHeader,
    /// A name that is empty, not NUL-terminated or not UTF-8.
    BadName,
    /// A member runs past the end of the archive, or the archive has no trailer.
    Truncated,
    /// A "070702" regular file whose data does not sum to its checksum.
    BadChecksum,
}

/// One member of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path as stored, e.g. `bin/init`, `./bin/init` or `.`.
    pub name: &'a str,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// The contents (of a regular file; a symlink's target).
    pub data: &'a [u8],
}

impl Entry<'_> {
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// A cpio archive in memory.
#[derive(Clone, Copy, Debug)]
pub struct Cpio<'a> {
    data: &'a [u8],
}

impl<'a> Cpio<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The members in archive order, up to the trailer; the first error ends the walk.
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry<'a>, CpioError>> + 'a {
        let data = self.data;
        let mut pos = Some(0);
        core::iter::from_fn(move || {
            let member = parse_member(data, pos?);
            pos = match member {
                Ok(Some((_, next))) => Some(next),
                _ => None,
            };
            member.transpose().map(|m| m.map(|(entry, _)| entry))
        })
    }

    /// The member at `path`; a leading "/" or "./" on either side is ignored.
    pub fn find(&self, path: &str) -> Option<Entry<'a>> {
        let path = normalize(path);
        self.entries()
            .map_while(Result::ok)
            .find(|e| normalize(e.name) == path)
    }
}

/// `path` without leading "/" and "./" components.
pub fn normalize(mut path: &str) -> &str {
    loop {
        match path.strip_prefix('/').or_else(|| path.strip_prefix("./")) {
            Some(rest) => path = rest,
            None => return path,
        }
    }
}

/// The member at `pos`, and where the next one starts; `None` at the trailer.
fn parse_member(data: &[u8], pos: usize) -> Result<Option<(Entry<'_>, usize)>, CpioError> {
    let header = slice(data, pos, HEADER_LEN)?;
    let with_check = match &header[..6] {
        MAGIC_NEWC => false,
        MAGIC_CRC => true,
        _ => return Err(CpioError::BadMagic),
    };
    let field = |i: usize| hex_field(&header[6 + 8 * i..14 + 8 * i]);
    let (mode, filesize, namesize) = (field(MODE)?, field(FILESIZE)?, field(NAMESIZE)?);
    let name_at = pos + HEADER_LEN;
    let name = slice(data, name_at, namesize as usize)?;
    let name = match name.split_last() {
        Some((0, name)) if !name.is_empty() => {
            core::str::from_utf8(name).map_err(|_| CpioError::BadName)?
        }
        _ => return Err(CpioError::BadName),
    };
    if name == TRAILER {
        return Ok(None);
    }
    let data_at = align4(name_at + namesize as usize);
    let contents = slice(data, data_at, filesize as usize)?;
    let entry = Entry {
        name,
        mode,
        data: contents,
    };
    if with_check && entry.is_file() && checksum(contents) != field(CHECK)? {
        return Err(CpioError::BadChecksum);
    }
    Ok(Some((entry, align4(data_at + filesize as usize))))
}

/// `len` bytes of `data` from `at`, or `Truncated`.
fn slice(data: &[u8], at: usize, len: usize) -> Result<&[u8], CpioError> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or(CpioError::Truncated)
}

/// Eight hex digits (either case), nothing else.
fn hex_field(digits: &[u8]) -> Result<u32, CpioError> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16).ok_or(CpioError::BadHeader)?;
        Ok((acc << 4) | v)
    })
}

fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |sum, &b| sum.wrapping_add(b as u32))
}

fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// Made by GNU cpio 2.13 (`-H newc` and `-H crc`), see testdata/README.md.
    const GNU_NEWC: &[u8] = include_bytes!("testdata/newc.cpio");
    const GNU_CRC: &[u8] = include_bytes!("testdata/crc.cpio");

    /// A newc (or, with `crc`, "070702") archive of `(name, mode, data)` members.
    fn archive(members: &[(&str, u32, &[u8])], crc: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let trailer = (TRAILER, 0, &[][..]);
        for (ino, &(name, mode, data)) in members.iter().chain([&trailer]).enumerate() {
            let check = if crc { checksum(data) } else { 0 };
            let fields = [ino as u32, mode, 0, 0, 1, 0, data.len() as u32];
            let rest = [0, 0, 0, 0, name.len() as u32 + 1, check];
            out.extend_from_slice(if crc { MAGIC_CRC } else { MAGIC_NEWC });
            for f in fields.iter().chain(&rest) {
                out.extend_from_slice(format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.resize(align4(out.len()), 0);
            out.extend_from_slice(data);
            out.resize(align4(out.len()), 0);
        }
        out
    }

    fn names(cpio: &Cpio) -> Vec<String> {
        cpio.entries()
            .map(|e| String::from(e.unwrap().name))
            .collect()
    }

    #[test]
    fn reads_archives_made_by_gnu_cpio() {
        for bytes in [GNU_NEWC, GNU_CRC] {
            let cpio = Cpio::new(bytes);
            let expected = [
                ".",
                "bin",
                "bin/init",
                "etc",
                "etc/empty",
                "etc/link",
                "etc/motd",
            ];
            assert_eq!(names(&cpio), expected);
            let init = cpio.find("/bin/init").unwrap();
            assert!(init.is_file() && !init.is_dir());
            assert_eq!(init.mode & 0o777, 0o755);
            assert_eq!(init.data, b"hello from init\n");
            assert_eq!(cpio.find("etc/motd").unwrap().data, b"abc");
            assert_eq!(cpio.find("./etc/empty").unwrap().data, b"");
            assert!(cpio.find("etc").unwrap().is_dir());
            let link = cpio.find("etc/link").unwrap();
            assert!(!link.is_file() && !link.is_dir());
            assert_eq!(link.data, b"../bin/init");
            assert!(cpio.find("bin/ini").is_none());
            assert!(cpio.find("nope").is_none());
        }
    }

    #[test]
    fn written_archives_round_trip_with_every_padding() {
        for crc in [false, true] {
            // Names of 1..=4 bytes and data of 0..=4 bytes exercise every padding.
            let members: [(&str, u32, &[u8]); 5] = [
                ("a", S_IFDIR | 0o755, b""),
                ("a/b", S_IFREG | 0o644, b"1"),
                ("a/cd", S_IFREG | 0o644, b"12"),
                ("./a/e", S_IFREG | 0o600, b"123"),
                ("/f", S_IFREG | 0o600, b"1234"),
            ];
            let bytes = archive(&members, crc);
            let cpio = Cpio::new(&bytes);
            let got: Vec<_> = cpio.entries().map(Result::unwrap).collect();
            for (e, &(name, mode, data)) in got.iter().zip(&members) {
                assert_eq!((e.name, e.mode, e.data), (name, mode, data));
            }
            assert_eq!(got.len(), members.len());
            assert_eq!(cpio.find("a/e").unwrap().data, b"123");
            assert_eq!(cpio.find("f").unwrap().data, b"1234");
            assert_eq!(cpio.find("/a/cd").unwrap().data, b"12");
        }
    }

    #[test]
    fn reports_malformed_members() {
        let good = archive(&[("init", S_IFREG | 0o755, b"#!")], true);
        let first_error = |bytes: &[u8]| Cpio::new(bytes).entries().find_map(Result::err);
        let mut bad = good.clone();
        bad[0] = b'1';
        assert_eq!(first_error(&bad), Some(CpioError::BadMagic));
        let mut bad = good.clone();
        bad[6 + 8 * FILESIZE] = b'g';
        assert_eq!(first_error(&bad), Some(CpioError::BadHeader));
        let mut bad = good.clone();
        bad[6 + 8 * FILESIZE] = b'+';
        assert_eq!(first_error(&bad), Some(CpioError::BadHeader));
        let mut bad = good.clone();
        bad[HEADER_LEN + 4] = b'!'; // the name's NUL
        assert_eq!(first_error(&bad), Some(CpioError::BadName));
        let mut bad = good.clone();
        bad[HEADER_LEN + 6] ^= 1; // the data
        assert_eq!(first_error(&bad), Some(CpioError::BadChecksum));
        let empty_name = archive(&[("", S_IFREG, b"")], false);
        assert_eq!(first_error(&empty_name), Some(CpioError::BadName));
        // Without its trailer the walk ends with Truncated.
        let trailer_at = good.len() - (HEADER_LEN + 14);
        assert_eq!(first_error(&good[..trailer_at]), Some(CpioError::Truncated));
        assert_eq!(first_error(b""), Some(CpioError::Truncated));
        // The members before a bad one are still returned.
        let mut two = archive(&[("x", S_IFREG, b"x"), ("y", S_IFREG, b"y")], false);
        let second = HEADER_LEN + 6;
        two[second] = b'9';
        let mut it = Cpio::new(&two).entries();
        assert_eq!(it.next().unwrap().unwrap().name, "x");
        assert_eq!(it.next(), Some(Err(CpioError::BadMagic)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn every_truncation_of_a_real_archive_is_an_error() {
        // GNU cpio pads to 512 bytes: only cuts before the end of the trailer fail.
        let end = GNU_NEWC
            .windows(10)
            .position(|w| w == b"TRAILER!!!")
            .unwrap()
            + 11;
        for len in 0..end {
            let cpio = Cpio::new(&GNU_NEWC[..len]);
            assert!(cpio.entries().any(|e| e.is_err()), "cut at {len}");
        }
        assert!(Cpio::new(&GNU_NEWC[..end]).entries().all(|e| e.is_ok()));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let cpio = Cpio::new(&bytes);
            prop_assert!(cpio.entries().count() <= bytes.len() / HEADER_LEN + 1);
            let _ = cpio.find("init");
        }

        #[test]
        fn corrupted_real_archives_never_panic(
            edits in proptest::collection::vec((0..1024usize, any::<u8>()), 1..8),
            cut in 0..=1024usize,
        ) {
            let mut bytes = GNU_CRC.to_vec();
            for (at, v) in edits {
                bytes[at] = v;
            }
            let cpio = Cpio::new(&bytes[..cut]);
            for entry in cpio.entries().flatten() {
                prop_assert!(entry.data.len() <= cut);
            }
            let _ = cpio.find("bin/init");
        }
    }
}
