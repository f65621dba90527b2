//! ResourceQuota admission, as upstream's plugin does it on create: an
//! object created in a namespace with quotas is checked against each quota
//! whose scopes cover it and whose `hard` names something it uses
//! (`skiff_machinery::quota`). Within bounds, the quota's `status.used`
//! is charged at once (a compare-and-swap, so concurrent creates cannot
//! both take the last unit); over them, or on a quota whose status the
//! controller has not yet filled, it is a 403 in upstream's words. The
//! resourcequota controller recounts `used` from what exists, which
//! returns what deleted objects (or creates that failed later) took.

use super::{Part, Registry, WriteOptions};
use crate::error::ApiError;
use crate::meta;
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource};
use skiff_machinery::quota::{self, Usage};

fn quotas_resource() -> &'static Resource {
    catalog::lookup("", "v1", "resourcequotas").expect("catalog")
}

/// Checks `obj` (being created as `res`) against its namespace's quotas
/// and, unless `dry_run`, charges them.
pub async fn charge(
    reg: &Registry,
    res: &Resource,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let quotas = quotas_resource();
    let ns = meta::namespace(obj).unwrap_or("default");
    let present = reg
        .cache(quotas)
        .list(&format!("{}{ns}/", quotas.key_prefix()))
        .0;
    if present.is_empty() {
        return Ok(());
    }
    let usage = quota::usage(res.group, res.plural, obj);
    let refuse = |detail: String| {
        ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: {detail}",
            res.plural,
            meta::name(obj)
        ))
    };
    for entry in present {
        let q = entry.object();
        let name = meta::name(&q).to_string();
        let hard = quota::amounts(q.pointer("/spec/hard"));
        let wanted: Usage = usage
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if !quota::scopes_cover(&q, res.group, res.plural, obj) {
            continue;
        }
        if (res.group, res.plural) == ("", "pods") {
            if let Some(missing) = quota::missing_compute(&hard, obj) {
                return Err(refuse(format!("failed quota: {name}: {missing}")));
            }
        }
        if wanted.is_empty() {
            continue;
        }
        let counted = quota::amounts(q.pointer("/status/hard"));
        let unknown: Vec<&str> = wanted
            .keys()
            .filter(|k| !counted.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(refuse(format!(
                "status unknown for quota: {name}, resources: {}",
                unknown.join(",")
            )));
        }
        let opts = WriteOptions {
            dry_run,
            field_manager: Some("kube-apiserver".into()),
            ..WriteOptions::default()
        };
        reg.update_with(
            quotas,
            Some(ns),
            &name,
            Part::Status,
            &opts,
            "Update",
            |cur| {
                let mut next = cur.clone();
                let hard = quota::amounts(cur.pointer("/status/hard"));
                let mut used = quota::amounts(cur.pointer("/status/used"));
                let before = used.clone();
                quota::add(&mut used, &wanted);
                let exceeded: Vec<&String> = wanted
                    .keys()
                    .filter(|k| hard.get(*k).is_some_and(|h| used[*k].quantity > h.quantity))
                    .collect();
                if !exceeded.is_empty() {
                    let pick = |u: &Usage| -> Usage {
                        exceeded
                            .iter()
                            .map(|k| {
                                (
                                    (*k).clone(),
                                    u.get(*k).copied().unwrap_or(quota::Amount::count(0)),
                                )
                            })
                            .collect()
                    };
                    return Err(refuse(format!(
                        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                        quota::pretty(&pick(&wanted)),
                        quota::pretty(&pick(&before)),
                        quota::pretty(&pick(&hard)),
                    )));
                }
                let status_used = next["status"]
                    .as_object_mut()
                    .map(|s| s.entry("used").or_insert_with(|| json!({})));
                if let Some(Value::Object(m)) = status_used {
                    for k in wanted.keys() {
                        m.insert(k.clone(), json!(used[k].text()));
                    }
                }
                Ok(next)
            },
        )
        .await?;
    }
    Ok(())
}
