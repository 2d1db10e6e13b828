//! [`Text`]: a string in a fixed buffer, written with `write!`; what does not fit is
//! dropped. One byte is kept for a terminating NUL so a path can go to the kernel.

use core::ffi::CStr;
use core::fmt;

pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// A text holding `args` (cut at N - 1 bytes).
    pub fn from_fmt(args: fmt::Arguments<'_>) -> Self {
        let mut t = Self::new();
        let _ = fmt::write(&mut t, args);
        t
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only whole strs are pushed through fmt::Write, but `push` and a cut may
        // leave a partial character: keep the valid prefix.
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// The text as a C string (cut at the first NUL byte, if any).
    pub fn as_cstr(&mut self) -> &CStr {
        self.buf[self.len] = 0;
        CStr::from_bytes_until_nul(&self.buf[..=self.len]).unwrap_or_default()
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
