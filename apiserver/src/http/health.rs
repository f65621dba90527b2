//! `/healthz`, `/livez` and `/readyz`, as upstream answers them: each runs
//! its checks (the datastore answering within two seconds; for readiness
//! also the watch caches having synced), says `ok` or lists what failed
//! with a 500, lists every check with `?verbose`, skips those named by
//! `?exclude=`, and serves each check alone at `/<endpoint>/<check>`.

use super::request::Query;
use crate::registry::Registry;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use std::time::Duration;

/// How long the datastore may take to answer (upstream's etcd check timeout).
const DATASTORE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq)]
enum Check {
    Ping,
    Log,
    Etcd,
    InformerSync,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Log => "log",
            // The datastore check keeps upstream's name whichever store
            // backs skiff, as k3s's does: scripts grep for it.
            Check::Etcd => "etcd",
            Check::InformerSync => "informer-sync",
        }
    }

    async fn passes(self, reg: &Registry) -> bool {
        match self {
            Check::Ping | Check::Log => true,
            Check::Etcd => tokio::time::timeout(DATASTORE_TIMEOUT, reg.storage.current_revision())
                .await
                .is_ok_and(|r| r.is_ok()),
            Check::InformerSync => reg.wait_ready(Duration::ZERO).await,
        }
    }
}

fn checks(endpoint: &str) -> &'static [Check] {
    match endpoint {
        "readyz" => &[Check::Ping, Check::Log, Check::Etcd, Check::InformerSync],
        _ => &[Check::Ping, Check::Log, Check::Etcd],
    }
}

/// Answers `GET /<endpoint>[/<check>]?<query>`.
pub async fn respond(
    reg: &Registry,
    endpoint: &str,
    check: Option<&str>,
    query: &Query,
) -> Response {
    let all = checks(endpoint);
    if let Some(name) = check {
        let Some(c) = all.iter().find(|c| c.name() == name) else {
            return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
        };
        return if c.passes(reg).await {
            (StatusCode::OK, "ok").into_response()
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {name} check failed\n"),
            )
                .into_response()
        };
    }
    let verbose = query.map.contains_key("verbose");
    let excluded: Vec<&str> = query
        .all
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut report = String::new();
    let mut failed = false;
    for c in all {
        if excluded.contains(&c.name()) {
            report.push_str(&format!("[+]{} excluded: ok\n", c.name()));
        } else if c.passes(reg).await {
            report.push_str(&format!("[+]{} ok\n", c.name()));
        } else {
            failed = true;
            report.push_str(&format!("[-]{} failed: reason withheld\n", c.name()));
        }
    }
    if failed {
        report.push_str(&format!("{endpoint} check failed\n"));
        return (StatusCode::INTERNAL_SERVER_ERROR, report).into_response();
    }
    if verbose {
        report.push_str(&format!("{endpoint} check passed\n"));
        return (StatusCode::OK, report).into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_adds_the_cache_check() {
        let names = |e| checks(e).iter().map(|c| c.name()).collect::<Vec<_>>();
        assert_eq!(names("livez"), ["ping", "log", "etcd"]);
        assert_eq!(names("healthz"), ["ping", "log", "etcd"]);
        assert_eq!(names("readyz"), ["ping", "log", "etcd", "informer-sync"]);
    }
}
