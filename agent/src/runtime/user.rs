//! Which user a container's process runs as: the securityContext's
//! runAsUser/runAsGroup, else the image's `User` (a name or number, with an
//! optional group), names looked up in the container's own /etc/passwd and
//! /etc/group; supplementalGroups and fsGroup added as upstream does.

use k8s_openapi::api::core::v1::{Container, PodSecurityContext};
use std::path::Path;

/// (uid, gid, supplementary gids) for `container`, reading names from `rootfs`.
pub fn resolve(
    rootfs: &Path,
    image_user: Option<&str>,
    container: &Container,
    pod_sc: Option<&PodSecurityContext>,
) -> Result<(u32, u32, Vec<u32>), String> {
    let sc = container.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group));
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let (image_user, image_group) = match image_user.filter(|u| !u.is_empty()) {
        Some(u) => match u.split_once(':') {
            Some((u, g)) => (Some(u), Some(g)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let (uid, primary_gid) = match (run_as_user, image_user) {
        (Some(uid), _) => (
            uid as u32,
            passwd_entry(&passwd, |_, id| id == uid as u32).map(|e| e.1),
        ),
        (None, Some(u)) => match u.parse::<u32>() {
            Ok(uid) => (uid, passwd_entry(&passwd, |_, id| id == uid).map(|e| e.1)),
            Err(_) => {
                let (uid, gid) = passwd_entry(&passwd, |name, _| name == u).ok_or_else(|| {
                    format!("unable to find user {u}: no matching entries in passwd file")
                })?;
                (uid, Some(gid))
            }
        },
        (None, None) => (0, Some(0)),
    };
    let gid = match (run_as_group, image_group) {
        (Some(g), _) => g as u32,
        (None, Some(g)) => match g.parse::<u32>() {
            Ok(g) => g,
            Err(_) => group_id(&group, g).ok_or_else(|| {
                format!("unable to find group {g}: no matching entries in group file")
            })?,
        },
        (None, None) => primary_gid.unwrap_or(0),
    };
    let mut groups: Vec<u32> = Vec::new();
    if let Some(name) = passwd_name(&passwd, uid) {
        groups.extend(member_groups(&group, &name));
    }
    if let Some(sc) = pod_sc {
        groups.extend(sc.supplemental_groups.iter().flatten().map(|g| *g as u32));
        groups.extend(sc.fs_group.map(|g| g as u32));
    }
    groups.sort();
    groups.dedup();
    Ok((uid, gid, groups))
}

fn passwd_entry(passwd: &str, pred: impl Fn(&str, u32) -> bool) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let (uid, gid) = (f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
        pred(f[0], uid).then_some((uid, gid))
    })
}

fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
    })
}

fn group_id(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
    })
}

fn member_groups(group: &str, user: &str) -> Vec<u32> {
    group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            members
                .split(',')
                .any(|m| m == user)
                .then(|| f.get(2)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_from_image_and_security_context() {
        let dir = std::env::temp_dir().join(format!("skiff-user-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/group"),
            "root:x:0:\nweb:x:1001:\nextra:x:2000:web\n",
        )
        .unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert_eq!(resolve(&dir, None, &c, None).unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve(&dir, Some("web"), &c, None).unwrap(),
            (1000, 1001, vec![2000])
        );
        assert_eq!(
            resolve(&dir, Some("1000:extra"), &c, None).unwrap(),
            (1000, 2000, vec![2000])
        );
        assert!(resolve(&dir, Some("nobody"), &c, None)
            .unwrap_err()
            .contains("unable to find user nobody"));
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "securityContext": {"runAsUser": 4242}}),
        )
        .unwrap();
        let psc: PodSecurityContext =
            serde_json::from_value(serde_json::json!({"runAsGroup": 77, "fsGroup": 88})).unwrap();
        assert_eq!(
            resolve(&dir, Some("web"), &c, Some(&psc)).unwrap(),
            (4242, 77, vec![88])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
