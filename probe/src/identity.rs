//! Who a check is for: a uid with its groups, this process's or a named user's.

use std::fmt;
use std::path::Path;

/// A user as the kernel checks permissions for it: uid, primary gid and supplementary
/// groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name, when known (`/etc/passwd`).
    pub name: Option<String>,
    /// The (effective) uid.
    pub uid: u32,
    /// The (effective) primary gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

// === impl Identity ===

impl Identity {
    /// This process's effective uid, gid and groups, from `/proc/self/status` (no libc
    /// call, so no `unsafe`).
    pub fn current() -> Identity {
        Identity::of_process(Path::new("/proc/self")).unwrap_or(Identity {
            name: None,
            uid: u32::MAX,
            gid: u32::MAX,
            groups: Vec::new(),
        })
    }

    /// The effective uid, gid and groups of the process at `pid_dir` (`/proc/1234`), from its
    /// `status`; `None` when it cannot be read.
    pub fn of_process(pid_dir: &Path) -> Option<Identity> {
        let status = std::fs::read_to_string(pid_dir.join("status")).ok()?;
        let ids = |key: &str| -> Vec<u32> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        // "Uid:" and "Gid:" list real, effective, saved and filesystem ids.
        Some(Identity {
            name: None,
            uid: *ids("Uid:").get(1)?,
            gid: *ids("Gid:").get(1)?,
            groups: ids("Groups:"),
        })
    }

    /// The user `name` (or a numeric uid) as `passwd` and `group` (files in
    /// `/etc/passwd` and `/etc/group` format) define it, with `group` as the primary group
    /// when given (nginx's `user www-data www-data;`). `None` when the user is unknown.
    pub fn of_user(
        name: &str,
        group: Option<&str>,
        passwd: &Path,
        groups: &Path,
    ) -> Option<Identity> {
        let passwd = std::fs::read_to_string(passwd).ok()?;
        let groups_text = std::fs::read_to_string(groups).unwrap_or_default();
        let (user, uid, mut gid) = passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let (user, uid, gid) = (f.first()?, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
            (*user == name || name.parse() == Ok(uid)).then(|| ((*user).to_owned(), uid, gid))
        })?;
        let group_id = |g: &str| {
            groups_text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let id: u32 = f.get(2)?.parse().ok()?;
                (f.first() == Some(&g) || g.parse() == Ok(id)).then_some(id)
            })
        };
        if let Some(g) = group {
            gid = group_id(g)?;
        }
        let mut member: Vec<u32> = groups_text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let id = f.get(2)?.parse().ok()?;
                f.get(3)?.split(',').any(|m| m == user).then_some(id)
            })
            .collect();
        member.push(gid);
        member.sort_unstable();
        member.dedup();
        Some(Identity {
            name: Some(user),
            uid,
            gid,
            groups: member,
        })
    }

    /// Whether the identity is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether permission checks are bypassed (uid 0; capabilities are not looked at).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Every group, primary first, without repeats.
    pub fn all_groups(&self) -> Vec<u32> {
        let mut out = vec![self.gid];
        out.extend(self.groups.iter().filter(|&&g| g != self.gid));
        out
    }
}

impl fmt::Display for Identity {
    /// `uid 65534 with groups 65534` or `www-data (uid 33, groups 33,1001)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self.all_groups().iter().map(u32::to_string).collect();
        match &self.name {
            Some(name) => write!(f, "{name} (uid {}, groups {})", self.uid, groups.join(",")),
            None => write!(f, "uid {} with groups {}", self.uid, groups.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_user_has_its_primary_and_member_groups() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(
            &passwd,
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            &group,
            "root:x:0:\nwww-data:x:33:\nphp:x:1001:www-data,alice\nnginx:x:101:\n",
        )
        .unwrap();
        let www = Identity::of_user("www-data", None, &passwd, &group).unwrap();
        assert_eq!(
            (www.uid, www.gid, www.groups.clone()),
            (33, 33, vec![33, 1001])
        );
        assert!(www.in_group(1001) && !www.in_group(0));
        assert_eq!(www.to_string(), "www-data (uid 33, groups 33,1001)");
        let other = Identity::of_user("33", Some("nginx"), &passwd, &group).unwrap();
        assert_eq!(other.gid, 101);
        assert!(Identity::of_user("nobody", None, &passwd, &group).is_none());
    }

    #[test]
    fn the_current_identity_matches_proc_self() {
        use std::os::unix::fs::MetadataExt;
        let me = Identity::current();
        assert_eq!(me.uid, std::fs::metadata("/proc/self").unwrap().uid());
        assert!(me
            .to_string()
            .starts_with(&format!("uid {} with groups {}", me.uid, me.gid)));
    }
}
