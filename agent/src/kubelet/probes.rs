//! Container probes as kubelet runs them: exec (through the runtime),
//! httpGet, tcpSocket and grpc (the standard health service), each with
//! initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold and
//! failureThreshold. A prober task per probe and running container reports
//! only changes of its result to the pod's worker.

use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What a prober tells the worker: a failed attempt (for the Unhealthy
/// event) and/or a new verdict once a threshold was crossed.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub container_id: String,
    pub kind: Kind,
    /// Some(passing) when the verdict changed.
    pub changed_to: Option<bool>,
    /// Why this attempt failed.
    pub failure: Option<String>,
}

/// Where probes are aimed.
#[derive(Clone)]
pub struct Target {
    pub runtime: Runtime,
    pub container_id: String,
    pub pod_ip: String,
}

/// The probes `c` declares, in the order they gate each other.
pub fn declared(c: &Container) -> Vec<(Kind, Probe)> {
    let mut out = Vec::new();
    if let Some(p) = &c.startup_probe {
        out.push((Kind::Startup, p.clone()));
    }
    if let Some(p) = &c.liveness_probe {
        out.push((Kind::Liveness, p.clone()));
    }
    if let Some(p) = &c.readiness_probe {
        out.push((Kind::Readiness, p.clone()));
    }
    out
}

/// Runs one probe until aborted. With a startup probe, liveness and
/// readiness wait for `started` (a watch the worker flips).
pub async fn run(
    kind: Kind,
    probe: Probe,
    container: Container,
    target: Target,
    mut started: tokio::sync::watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Verdict>,
) {
    if kind != Kind::Startup {
        while !*started.borrow_and_update() {
            if started.changed().await.is_err() {
                return;
            }
        }
    }
    let secs =
        |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    tokio::time::sleep(secs(probe.initial_delay_seconds, 0)).await;
    let period = secs(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let mut verdict: Option<bool> = None;
    let (mut successes, mut failures) = (0, 0);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match tokio::time::timeout(
            timeout,
            attempt(&probe, &container, &target, timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timeout: failed to connect service within {}s",
                timeout.as_secs()
            )),
        };
        match &result {
            Ok(()) => {
                successes += 1;
                failures = 0;
            }
            Err(_) => {
                failures += 1;
                successes = 0;
            }
        }
        let new = if successes >= success_threshold {
            Some(true)
        } else if failures >= failure_threshold {
            Some(false)
        } else {
            verdict
        };
        let changed_to = (new != verdict).then_some(new).flatten();
        if changed_to.is_some() || result.is_err() {
            let v = Verdict {
                container_id: target.container_id.clone(),
                kind,
                changed_to,
                failure: result.err(),
            };
            if tx.send(v).is_err() {
                return;
            }
        }
        verdict = new;
        if kind == Kind::Startup && verdict == Some(true) {
            return; // a startup probe stops once it succeeded
        }
        if kind != Kind::Readiness && verdict == Some(false) {
            return; // the container is restarted; a new prober starts with it
        }
    }
}

/// One attempt of the probe's handler.
async fn attempt(
    probe: &Probe,
    c: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        let (code, output) = target
            .runtime
            .exec(&target.container_id, &argv, timeout)
            .await
            .map_err(|e| e.to_string())?;
        // Upstream's message is what the command printed.
        return match (code, output.trim()) {
            (0, _) => Ok(()),
            (_, "") => Err(format!("command {argv:?} exited with {code}")),
            (_, out) => Err(out.to_string()),
        };
    }
    if let Some(h) = &probe.http_get {
        let port = port(&h.port, c)?;
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        let https = h.scheme.as_deref() == Some("HTTPS");
        let status = http_get(&host, port, &path, &headers, https).await?;
        return if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let port = port(&t.port, c)?;
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        return TcpStream::connect((host.as_str(), port))
            .await
            .map(|_| ())
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
    }
    if let Some(g) = &probe.grpc {
        return grpc_check(
            &target.pod_ip,
            g.port as u16,
            g.service.as_deref().unwrap_or(""),
        )
        .await;
    }
    Err("the probe has no handler".into())
}

/// A port number, or a named port of the container.
pub(super) fn port(p: &IntOrString, c: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .map(|cp| cp.container_port as u16)
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

/// A bare HTTP/1.1 GET; returns the status code. HTTPS probes, as
/// upstream's, do not verify the certificate.
pub(super) async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    https: bool,
) -> Result<u16, String> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let head = if https {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify))
        .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        exchange(&mut tls, &req).await?
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, &req).await?
    };
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response: {head:?}"))
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    req: &str,
) -> Result<String, String> {
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf[..got]);
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The gRPC health checking protocol (`grpc.health.v1.Health/Check`) over
/// plain HTTP/2: SERVING passes, anything else fails.
async fn grpc_check(ip: &str, port: u16, service: &str) -> Result<(), String> {
    let tcp = TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("failed to connect service \"{ip}:{port}\": {e}"))?;
    let (mut client, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // HealthCheckRequest { string service = 1; } with gRPC's 5-byte frame.
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        msg.push(service.len() as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let req = http::Request::post(format!("http://{ip}:{port}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.32")
        .body(())
        .map_err(|e| e.to_string())?;
    let (resp, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
    send.send_data(bytes::Bytes::from(body), true)
        .map_err(|e| e.to_string())?;
    let resp = resp.await.map_err(|e| e.to_string())?;
    let mut recv = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.map_err(|e| e.to_string())?;
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    if status != "0" {
        return Err(format!("rpc error: code = {status}"));
    }
    // HealthCheckResponse { ServingStatus status = 1; } SERVING = 1.
    let serving = data.len() >= 7 && data[5] == 0x08 && data[6] == 1;
    if serving {
        Ok(())
    } else {
        Err("service unhealthy (responded with \"NOT_SERVING\")".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("X-Probe: yes"), "{req}");
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let h = vec![("X-Probe".to_string(), "yes".to_string())];
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &h, false)
                .await
                .unwrap(),
            200
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &h, false)
                .await
                .unwrap(),
            503
        );
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(port_of("web", &c), Ok(8080));
        assert!(port_of("nope", &c).is_err());
    }

    fn port_of(name: &str, c: &Container) -> Result<u16, String> {
        port(&IntOrString::String(name.into()), c)
    }
}
