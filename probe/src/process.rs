//! Which process holds a socket, and how many file descriptors a process has.
//!
//! The kernel names a socket's process nowhere but in `/proc/PID/fd`: a link to
//! `socket:[INODE]` per descriptor. Finding one means walking every process's descriptors,
//! which on a busy host is tens of thousands of `readlink`s, so the walk takes a time budget
//! and says whether it finished. Without root only this user's processes can be looked at.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A process, as `/proc` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`, at most 15 bytes).
    pub comm: String,
}

/// The processes found holding sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    /// Socket inode to the first process found holding it.
    pub by_inode: HashMap<u64, Process>,
    /// The walk looked at every process it may look at before the budget ran out.
    pub complete: bool,
}

/// A process's open descriptors against its `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdUsage {
    /// Descriptors open now.
    pub open: Option<u64>,
    /// The soft limit (what `EMFILE` is measured against).
    pub soft: Option<u64>,
    /// The hard limit (how far the soft one may be raised without privilege).
    pub hard: Option<u64>,
}

/// Finds the processes holding the sockets `inodes`, walking `proc` (normally `/proc`) for
/// at most `budget`. Stops early once every inode is found.
pub fn socket_owners(proc: &Path, inodes: &[u64], budget: Duration) -> Owners {
    let until = Instant::now() + budget;
    let mut owners = Owners::default();
    if inodes.is_empty() {
        owners.complete = true;
        return owners;
    }
    let Ok(entries) = std::fs::read_dir(proc) else {
        return owners;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if Instant::now() >= until {
            return owners;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue; // gone, or another user's
        };
        for (i, fd) in fds.filter_map(Result::ok).enumerate() {
            // One process may hold tens of thousands: the budget holds inside it too.
            if i % 256 == 255 && Instant::now() >= until {
                return owners;
            }
            let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(&l))
            else {
                continue;
            };
            if inodes.contains(&inode) && !owners.by_inode.contains_key(&inode) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let process = Process {
                    pid,
                    comm: comm.trim().to_owned(),
                };
                owners.by_inode.insert(inode, process);
                if owners.by_inode.len() == inodes.len() {
                    owners.complete = true;
                    return owners;
                }
            }
        }
    }
    owners.complete = true;
    owners
}

/// The socket inodes `pid_dir` (e.g. `/proc/self`) holds.
pub fn held_sockets(pid_dir: &Path) -> Vec<u64> {
    std::fs::read_dir(pid_dir.join("fd"))
        .map(|fds| {
            fds.filter_map(|fd| socket_inode(&std::fs::read_link(fd.ok()?.path()).ok()?))
                .collect()
        })
        .unwrap_or_default()
}

/// `/proc/self/limits`, opened once ([`keep_own_limits_open`]) and re-read in place: when
/// handoff is out of descriptors it cannot open the file to find out its limit.
static OWN_LIMITS: OnceLock<Option<File>> = OnceLock::new();

/// Opens `/proc/self/limits` for [`fd_usage`] of this process to read later without a
/// new descriptor. The prober calls it when it starts.
pub fn keep_own_limits_open() {
    OWN_LIMITS.get_or_init(|| File::open("/proc/self/limits").ok());
}

/// The descriptors of the process at `pid_dir` (e.g. `/proc/self`, `/proc/1234`).
///
/// The count comes from the size `stat` gives `/proc/PID/fd` (Linux 6.2 and later), which
/// needs no descriptor of its own: the question is usually asked when none is left. Older
/// kernels report 0 there, and the directory is listed instead.
pub fn fd_usage(pid_dir: &Path) -> FdUsage {
    let fd_dir = pid_dir.join("fd");
    let open = match std::fs::metadata(&fd_dir) {
        Ok(meta) if meta.len() > 0 => Some(meta.len()),
        _ => std::fs::read_dir(&fd_dir).ok().map(|d| d.count() as u64),
    };
    let held = match OWN_LIMITS.get() {
        Some(Some(file)) if pid_dir == Path::new("/proc/self") => read_from_start(file),
        _ => None,
    };
    let text = held.or_else(|| std::fs::read_to_string(pid_dir.join("limits")).ok());
    let (soft, hard) = text
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            let mut cols = line["Max open files".len()..].split_whitespace();
            let limit = |v: Option<&str>| v.and_then(|v| v.parse().ok());
            Some((limit(cols.next()), limit(cols.next())))
        })
        .unwrap_or((None, None));
    FdUsage { open, soft, hard }
}

/// The whole of a procfs file through a descriptor already open (`pread` from 0: the
/// kernel generates the text afresh).
fn read_from_start(file: &File) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = file.read_at(&mut buf[len..], len as u64).ok()?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_holding_a_socket_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let inode = socket_inode(&link).unwrap();
        assert!(held_sockets(Path::new("/proc/self")).contains(&inode));
        let owners = socket_owners(Path::new("/proc"), &[inode], Duration::from_secs(5));
        assert!(owners.complete);
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(
            owners.by_inode[&inode],
            Process {
                pid: std::process::id(),
                comm: me.trim().to_owned()
            }
        );
        let none = socket_owners(Path::new("/proc"), &[u64::MAX], Duration::ZERO);
        assert!(
            none.by_inode.is_empty() && !none.complete,
            "no budget: incomplete"
        );
    }

    #[test]
    fn fd_usage_counts_against_the_limit() {
        keep_own_limits_open();
        let before = fd_usage(Path::new("/proc/self"));
        let files: Vec<_> = (0..10)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let after = fd_usage(Path::new("/proc/self"));
        assert!(
            after.open.unwrap() >= before.open.unwrap() + 10,
            "{before:?} {after:?}"
        );
        assert!(after.soft.unwrap() <= after.hard.unwrap());
        drop(files);
    }
}
