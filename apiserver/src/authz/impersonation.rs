//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): a request
//! with `Impersonate-*` headers acts as the user they name, if its real
//! user may `impersonate` that user, each group, the uid and each extra
//! value, as upstream's impersonation filter checks them.

use super::{Attributes, Authorizer};
use crate::auth::User;
use crate::error::ApiError;
use http::HeaderMap;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA: &str = "impersonate-extra-";

/// The user the request acts as: its own, or the one it impersonates.
pub fn acting_user(authz: &Authorizer, user: User, headers: &HeaderMap) -> Result<User, ApiError> {
    if !headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
    {
        return Ok(user);
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect()
    };
    let name = values(USER).into_iter().next();
    let groups = values(GROUP);
    let uid = values(UID).into_iter().next();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (header, value) in headers {
        if let Some(key) = header.as_str().strip_prefix(EXTRA) {
            let key = percent_decode(key);
            extra
                .entry(key)
                .or_default()
                .extend(value.to_str().ok().map(String::from));
        }
    }
    let Some(name) = name else {
        if groups.is_empty() && extra.is_empty() && uid.is_none() {
            return Ok(user);
        }
        return Err(ApiError::internal(format!(
            "requested {} without impersonating a user",
            [
                (!groups.is_empty()).then_some("groups"),
                uid.as_ref().map(|_| "uid"),
                (!extra.is_empty()).then_some("extra")
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        )));
    };
    let check = |a: Attributes| authz.authorize(&user, &a);
    let impersonate = |group: &str, resource: &str, sub: &str, ns: &str, name: &str| Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Attributes::default()
    };
    let service_account = super::service_account_of(&name);
    match service_account {
        Some((ns, sa)) => check(impersonate("", "serviceaccounts", "", ns, sa))?,
        None => check(impersonate("", "users", "", "", &name))?,
    }
    for g in &groups {
        check(impersonate("", "groups", "", "", g))?;
    }
    if let Some(uid) = &uid {
        check(impersonate("authentication.k8s.io", "uids", "", "", uid))?;
    }
    for (key, values) in &extra {
        for v in values {
            check(impersonate(
                "authentication.k8s.io",
                "userextras",
                key,
                "",
                v,
            ))?;
        }
    }
    let mut acting_groups = groups.clone();
    if groups.is_empty() {
        if let Some((ns, _)) = service_account {
            acting_groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
    }
    if name != "system:anonymous"
        && !acting_groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        acting_groups.push("system:authenticated".into());
    }
    Ok(User {
        name,
        uid,
        groups: acting_groups,
        extra,
    })
}

/// Extra keys travel percent-encoded in header names.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match hex
            .filter(|_| b == b'%')
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(decoded) => {
                out.push(decoded);
                rest = &tail[2..];
            }
            None => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn extra_keys_are_percent_decoded() {
        assert_eq!(
            super::percent_decode("example.com%2fteam"),
            "example.com/team"
        );
        assert_eq!(super::percent_decode("plain%zz%"), "plain%zz%");
    }
}
