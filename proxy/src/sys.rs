//! The few system calls keyward needs that the standard library does not offer:
//! turning off core dumps, locking secret pages in RAM, reading the effective uid,
//! reading the monotonic clock as systemd sees it, and raising the open-files limit
//! (for its load and soak benches). This is the only
//! module allowed `unsafe`; each block calls one libc function whose preconditions
//! are stated beside it.

#![allow(unsafe_code)]

use std::io;

/// Makes the process unable to leave its memory behind: a core-file limit of 0 (soft
/// and hard, so nothing in the process can raise it again) and `PR_SET_DUMPABLE` 0,
/// which also stops same-uid processes from attaching or reading `/proc/<pid>/mem`.
pub fn disable_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid, initialised rlimit that outlives the call; setrlimit
    // only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours;
    // the unused variadic arguments are passed as zero as prctl(2) recommends.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process's `PR_GET_DUMPABLE` state (0 once [`disable_core_dumps`] ran).
pub fn dumpable() -> io::Result<bool> {
    // SAFETY: PR_GET_DUMPABLE takes no pointer and returns the flag.
    let state = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(state != 0)
}

/// Keeps the pages holding `bytes` out of swap.
pub fn lock(bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: the range is a live borrowed slice, so it is mapped memory of this
    // process; mlock neither reads nor writes it, it only pins the pages.
    if unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the pages holding `bytes` be swapped again. Callers unlock only memory they
/// locked and own whole pages of, because locks do not nest.
pub fn unlock(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: as for `lock`: a live slice of this process's memory, not accessed by
    // the call. A failure only leaves the pages locked, which is harmless.
    unsafe {
        libc::munlock(bytes.as_ptr().cast(), bytes.len());
    }
}

/// The effective user id, to insist that secrets files belong to the user keyward
/// runs as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `CLOCK_MONOTONIC` in microseconds: the clock systemd compares a reload
/// notification's `MONOTONIC_USEC` with. `Instant` reads the same clock but does not
/// show its value.
pub fn monotonic_micros() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec that outlives the call;
    // CLOCK_MONOTONIC exists on every Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1_000).unwrap_or(0);
    seconds.saturating_mul(1_000_000).saturating_add(micros)
}

/// Raises the soft limit on open files to the hard limit, for a process that
/// holds many connections; returns the soft limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit that outlives the call; getrlimit writes
    // only into it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as for `disable_core_dumps`: a valid rlimit, only read by the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locking_a_small_buffer_works_or_says_why() {
        let page = Box::new([0u8; 4096]);
        match lock(&page[..]) {
            Ok(()) => unlock(&page[..]),
            Err(error) => assert!(
                matches!(
                    error.raw_os_error(),
                    Some(libc::EPERM | libc::ENOMEM | libc::EAGAIN)
                ),
                "{error}"
            ),
        }
        assert!(lock(&[]).is_ok());
    }

    #[test]
    fn the_open_files_limit_ends_at_the_hard_limit() {
        let soft = raise_open_files_limit().unwrap();
        assert!(soft >= 64);
        assert_eq!(
            raise_open_files_limit().unwrap(),
            soft,
            "raising twice is a no-op"
        );
    }
}
