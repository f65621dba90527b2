//! Container lifecycle hooks: postStart (run right after the container
//! starts; a failure kills it) and preStop (run before SIGTERM, within the
//! grace period). Handlers are exec (inside the container), httpGet (to the
//! pod) and sleep, as upstream's.

use super::probes;
use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use std::time::Duration;

/// Runs `handler` for container `id`; the error is upstream's hook message.
pub async fn run(
    runtime: &Runtime,
    id: &str,
    handler: &LifecycleHandler,
    c: &Container,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let argv = exec.command.clone().unwrap_or_default();
        let (code, out) = runtime
            .exec(id, &argv, timeout)
            .await
            .map_err(|e| e.to_string())?;
        return if code == 0 {
            Ok(())
        } else {
            Err(format!(
                "command '{}' exited with {code}: {}",
                argv.join(" "),
                out.trim()
            ))
        };
    }
    if let Some(h) = &handler.http_get {
        let port = probes::port(&h.port, c)?;
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        let https = h.scheme.as_deref() == Some("HTTPS");
        let status = tokio::time::timeout(
            timeout,
            probes::http_get(&host, port, &path, &headers, https),
        )
        .await
        .map_err(|_| "timeout".to_string())??;
        return if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP lifecycle hook ({path}) for Container in Pod failed with statuscode: {status}"))
        };
    }
    if let Some(s) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err("the hook has no handler".into())
}
