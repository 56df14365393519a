//! Random bytes from the kernel's `getrandom(2)`: no device file needed, so credwrap gets its
//! secrets in an empty root (a scratch image, a chroot without `/dev`) as anywhere else.

use std::io;

/// Fills `buf` from the kernel's random pool (blocking only before the pool is first seeded,
/// early in boot).
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, which we own mutably.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

/// `bytes` random bytes, hex-encoded.
pub fn hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_everything_and_differs() {
        let (a, b) = (super::hex(32).unwrap(), super::hex(32).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
