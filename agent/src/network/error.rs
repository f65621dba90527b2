//! The one error type of the CNI client: every failure names the plugin
//! and the command it was running, so an event on the pod says what broke.

use std::path::PathBuf;
use std::time::Duration;

use super::conf::ConfError;
use super::pod::PodRefError;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(transparent)]
    Pod(#[from] PodRefError),
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error("CNI plugin {plugin} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} ({command}) could not run: {source}")]
    Spawn {
        plugin: String,
        command: &'static str,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} ({command}) did not finish within {after:?}")]
    Timeout {
        plugin: String,
        command: &'static str,
        after: Duration,
    },
    /// The plugin failed and said why, as the spec asks.
    #[error("CNI plugin {plugin} ({command}) failed: {msg} (code {code}){}", details_suffix(.details))]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    /// The plugin failed without a parseable error object.
    #[error("CNI plugin {plugin} ({command}) failed ({status}): {stderr}")]
    Failed {
        plugin: String,
        command: &'static str,
        status: String,
        stderr: String,
    },
    #[error("CNI plugin {plugin} ({command}) printed an unusable result: {reason}")]
    BadOutput {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    #[error("CNI result cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error("pod sandbox {0} has no network attachment to check")]
    NotAttached(String),
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_plugin() {
        let e = CniError::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            code: 11,
            msg: "failed to allocate".into(),
            details: "range full".into(),
        };
        assert_eq!(
            e.to_string(),
            "CNI plugin bridge (ADD) failed: failed to allocate (code 11): range full"
        );
        let e = CniError::Plugin {
            plugin: "portmap".into(),
            command: "DEL",
            code: 999,
            msg: "x".into(),
            details: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "CNI plugin portmap (DEL) failed: x (code 999)"
        );
    }
}
