//! May a user connect to a unix socket path: what the file is, and every directory's search
//! bit on the way to it, as the kernel checks them for a given uid and groups.
//!
//! Connecting to a unix socket needs search (`x`) on every directory of the path and write
//! (`w`) on the socket file itself. The kernel answers `EACCES` for any of them, and also
//! when the file is not a socket at all but the caller may not write it; as root it answers
//! `ECONNREFUSED` for that last case. So the errno alone never says which: this module does.
//! POSIX ACLs and LSMs (SELinux, AppArmor) are not evaluated; a denial that mode bits do not
//! explain is reported as such.

use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::identity::Identity;

/// What kind of file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A unix socket.
    Socket,
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A named pipe, device or anything else.
    Other,
}

/// One file's kind, owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The path as checked.
    pub path: PathBuf,
    /// Its kind (symbolic links followed, as `connect()` does).
    pub kind: Kind,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Inode and device (major, minor), to match a listener's socket file.
    pub inode: (u64, (u32, u32)),
}

/// The result of checking a socket path for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAccess {
    /// Every directory is searchable and the socket writable: connect() is allowed.
    Allowed(FileInfo),
    /// A directory on the way does not exist.
    MissingDirectory(PathBuf),
    /// A component on the way is not a directory.
    NotADirectory(FileInfo),
    /// A directory on the way may not be searched by the identity.
    Unsearchable(FileInfo),
    /// The directories are fine; the path itself does not exist.
    Missing,
    /// The path exists but is not a socket.
    NotASocket(FileInfo),
    /// A socket the identity may not write to.
    NotWritable(FileInfo),
    /// The check itself could not look (this process may not stat something).
    Unknown(PathBuf, io::ErrorKind),
}

// === impl FileInfo ===

impl FileInfo {
    /// Stats `path`, following symbolic links.
    pub fn stat(path: &Path) -> io::Result<FileInfo> {
        let meta = std::fs::metadata(path)?;
        let t = meta.file_type();
        let kind = if t.is_socket() {
            Kind::Socket
        } else if t.is_file() {
            Kind::Regular
        } else if t.is_dir() {
            Kind::Directory
        } else {
            Kind::Other
        };
        Ok(FileInfo {
            path: path.to_owned(),
            kind,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.permissions().mode() & 0o7777,
            inode: (meta.ino(), dev_major_minor(meta.dev())),
        })
    }

    /// Whether `who` has the permission bit `bit` (4 read, 2 write, 1 search) by the mode:
    /// the owner's bits for the owner, the group's for a member, else the others'.
    pub fn allows(&self, who: &Identity, bit: u32) -> bool {
        if who.is_root() {
            // CAP_DAC_OVERRIDE: root may write anything and search any directory.
            return true;
        }
        let shift = if who.uid == self.uid {
            6
        } else if who.in_group(self.gid) {
            3
        } else {
            0
        };
        self.mode >> shift & bit != 0
    }

    /// `mode 750, owner uid 0 gid 0`.
    pub fn describe(&self) -> String {
        format!(
            "mode {:o}, owner uid {} gid {}",
            self.mode, self.uid, self.gid
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Socket => "a socket",
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Other => "a special file (not a socket)",
        })
    }
}

/// Checks whether `who` may connect to the unix socket at `path`, naming the first thing in
/// the way. The stats are made as this process, which must be able to look (root can).
pub fn socket_access(path: &Path, who: &Identity) -> SocketAccess {
    let dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    for dir in dirs.into_iter().rev() {
        match FileInfo::stat(dir) {
            Ok(info) if info.kind != Kind::Directory => return SocketAccess::NotADirectory(info),
            Ok(info) if !info.allows(who, 1) => return SocketAccess::Unsearchable(info),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return SocketAccess::MissingDirectory(dir.to_owned())
            }
            Err(e) => return SocketAccess::Unknown(dir.to_owned(), e.kind()),
        }
    }
    match FileInfo::stat(path) {
        Ok(info) if info.kind != Kind::Socket => SocketAccess::NotASocket(info),
        Ok(info) if !info.allows(who, 2) => SocketAccess::NotWritable(info),
        Ok(info) => SocketAccess::Allowed(info),
        Err(e) if e.kind() == io::ErrorKind::NotFound => SocketAccess::Missing,
        Err(e) => SocketAccess::Unknown(path.to_owned(), e.kind()),
    }
}

/// glibc's `dev_t` (`st_dev`) split into major and minor.
pub(crate) fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn nobody() -> Identity {
        Identity {
            name: None,
            uid: 65534,
            gid: 65534,
            groups: vec![],
        }
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Each thing in the way is named: a missing directory, an unsearchable one, a regular
    /// file where the socket should be, a socket nobody may write, and a good socket.
    #[test]
    fn the_first_obstacle_on_the_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let who = nobody();
        let missing_dir = dir.path().join("gone/app.sock");
        assert_eq!(
            socket_access(&missing_dir, &who),
            SocketAccess::MissingDirectory(dir.path().join("gone"))
        );

        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        chmod(&private, 0o700);
        let sock = private.join("app.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        match socket_access(&sock, &who) {
            SocketAccess::Unsearchable(info) => {
                assert_eq!(info.path, private);
                assert_eq!(info.mode, 0o700);
            }
            other => panic!("{other:?}"),
        }
        chmod(&private, 0o711);
        chmod(&sock, 0o600);
        assert!(matches!(
            socket_access(&sock, &who),
            SocketAccess::NotWritable(_)
        ));
        chmod(&sock, 0o666);
        assert!(matches!(
            socket_access(&sock, &who),
            SocketAccess::Allowed(_)
        ));

        let file = dir.path().join("not.sock");
        std::fs::write(&file, "").unwrap();
        match socket_access(&file, &who) {
            SocketAccess::NotASocket(info) => assert_eq!(info.kind, Kind::Regular),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            socket_access(&dir.path().join("none.sock"), &who),
            SocketAccess::Missing
        );
    }

    #[test]
    fn group_bits_apply_to_members_and_owner_bits_to_the_owner() {
        let info = FileInfo {
            path: "/run/php/php.sock".into(),
            kind: Kind::Socket,
            uid: 33,
            gid: 1001,
            mode: 0o620,
            inode: (1, (0, 0)),
        };
        let member = Identity {
            name: None,
            uid: 101,
            gid: 101,
            groups: vec![1001],
        };
        assert!(info.allows(&member, 2));
        assert!(!info.allows(&nobody(), 2));
        let owner = Identity {
            name: None,
            uid: 33,
            gid: 33,
            groups: vec![],
        };
        assert!(info.allows(&owner, 2) && !info.allows(&owner, 1));
    }
}
