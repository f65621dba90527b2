//! Starting the API server: storage (embedded or etcd), certificates and the
//! admin kubeconfig, the system namespaces, and the HTTPS listener.

use crate::auth::{user_from_cert, Authenticator, User};
use crate::http::AppState;
use crate::pki::Pki;
use crate::registry::{Registry, WriteOptions};
use crate::storage::{embedded::EmbeddedStorage, etcd::EtcdStorage, Storage};
use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use skiff_machinery::catalog;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_listen_port: u16,
    pub write_kubeconfig: Option<PathBuf>,
    pub datastore_endpoint: Option<String>,
    pub token: Option<String>,
    pub service_cidr: String,
    pub cluster_cidr: String,
    pub tls_san: Vec<String>,
    /// The address the `kubernetes` Service's endpoints name (the bind address when unset).
    pub advertise_address: Option<IpAddr>,
    /// The cluster IP of the `kube-dns` Service in kube-system (every
    /// node's proxy serves it); None creates no such Service.
    pub cluster_dns: Option<IpAddr>,
}

impl Config {
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.write_kubeconfig
            .clone()
            .unwrap_or_else(|| self.data_dir.join("kubeconfig.yaml"))
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub registry: Arc<Registry>,
    pki: Pki,
    data_dir: PathBuf,
    bind: IpAddr,
    /// When the certificates issued at this start (serving, admin and
    /// component clients, all of one lifetime) are two thirds through their
    /// life, in Unix seconds.
    pub renew_at: i64,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// A kubeconfig for an in-process component (scheduler, controller
    /// manager): its own client certificate, the loopback address, kept under
    /// `<data-dir>/server/cred/` as k3s does.
    pub fn component_kubeconfig(
        &self,
        component: &str,
        user: &str,
        groups: &[&str],
    ) -> anyhow::Result<PathBuf> {
        let path = self
            .data_dir
            .join("server")
            .join("cred")
            .join(format!("{component}.kubeconfig"));
        write_kubeconfig(&self.pki, &path, self.addr, self.bind, user, groups)?;
        Ok(path)
    }

    /// Stops accepting connections (open ones end with the runtime).
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn open_storage(cfg: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match &cfg.datastore_endpoint {
        Some(ep) if !ep.is_empty() => Arc::new(
            EtcdStorage::connect(ep)
                .await
                .with_context(|| format!("connecting to etcd at {ep}"))?,
        ),
        _ => {
            let dir = cfg.data_dir.join("server").join("db");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Arc::new(
                EmbeddedStorage::open(&dir.join("state.redb"))
                    .context("opening the embedded store")?,
            )
        }
    })
}

/// Starts the server and returns once it accepts connections.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    let storage = open_storage(&cfg).await?;
    let registry = Registry::new(storage.clone(), &cfg.service_cidr).await?;
    if !registry.wait_ready(Duration::from_secs(30)).await {
        anyhow::bail!("watch caches did not sync with storage");
    }

    crate::crd::controller::start(registry.clone()).await;
    tokio::spawn(compactor(storage.clone()));

    let server_dir = cfg.data_dir.join("server");
    let secret = crate::join::secret(&server_dir, cfg.token.as_deref())?;
    let pki = crate::shared_ca::load(&*storage, &server_dir.join("tls"), &secret).await?;
    let listener = TcpListener::bind((cfg.bind_address, cfg.https_listen_port))
        .await
        .with_context(|| format!("binding {}:{}", cfg.bind_address, cfg.https_listen_port))?;
    let addr = listener.local_addr()?;
    let advertise = cfg
        .advertise_address
        .unwrap_or(if cfg.bind_address.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            cfg.bind_address
        });
    bootstrap(&registry, addr.port(), cfg.cluster_dns).await?;
    crate::authz::bootstrap::write_policy(&registry).await?;
    crate::authz::bootstrap::keep_aggregated(registry.clone());
    publish_endpoints(&registry, advertise, addr.port()).await?;
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    names.push(registry.services.first_ip().to_string());
    if !cfg.bind_address.is_unspecified() {
        names.push(cfg.bind_address.to_string());
    }
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_lowercase());
        }
    }
    names.extend(cfg.tls_san.iter().cloned());
    names.dedup();
    let serving = pki.serving(&names)?;
    let (from, until) =
        skiff_machinery::tls::validity(&serving.cert_pem).map_err(anyhow::Error::msg)?;
    let renew_at = skiff_machinery::tls::renew_at(from, until);
    let tls = tls_config(&pki, &serving)?;
    // The node token before the kubeconfig: whoever waits for the
    // kubeconfig as the sign of a started server finds the token too.
    let join = crate::join::Join::load(&server_dir, &pki, Some(&secret))?;
    let kubeconfig = cfg.kubeconfig_path();
    write_kubeconfig(
        &pki,
        &kubeconfig,
        addr,
        cfg.bind_address,
        "system:admin",
        &["system:masters"],
    )?;

    let state = Arc::new(AppState {
        registry: registry.clone(),
        metrics: Default::default(),
        auth: Authenticator::new(cfg.token.clone().into_iter().collect()),
        authz: Arc::new(crate::authz::Authorizer::new(registry.clone())),
        tokens: crate::serviceaccount_token::Tokens::from_ca_key(&pki.ca_key_pem),
        kubelet: crate::kubelet::KubeletClient::new(&pki)?,
        metrics_api: crate::metricsapi::MetricsApi::start(
            crate::kubelet::KubeletClient::new(&pki)?,
            registry.clone(),
        ),
        join,
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let user: Option<User> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| user_from_cert(c.as_ref()));
                let svc = hyper::service::service_fn(move |mut req| {
                    if let Some(u) = &user {
                        req.extensions_mut().insert(u.clone());
                    }
                    let state = state.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(crate::http::serve(state, req).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(Running {
        addr,
        kubeconfig,
        registry,
        pki,
        data_dir: cfg.data_dir.clone(),
        bind: cfg.bind_address,
        renew_at,
        task,
    })
}

fn tls_config(pki: &Pki, serving: &crate::pki::Pair) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes())?)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let certs = vec![
        CertificateDer::from_pem_slice(serving.cert_pem.as_bytes())?,
        CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes())?,
    ];
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A kubeconfig whose client certificate names `user` (CN) and `groups` (O);
/// the admin's is CN=system:admin, O=system:masters.
fn write_kubeconfig(
    pki: &Pki,
    path: &std::path::Path,
    addr: SocketAddr,
    bind: IpAddr,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<()> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let client = pki.client(user, groups)?;
    let host = if bind.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bind.to_string()
    };
    let server = format!(
        "https://{}:{}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        },
        addr.port()
    );
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": {"server": server, "certificate-authority-data": b64(&pki.ca_cert_pem)}}],
        "users": [{"name": "skiff-admin", "user": {"client-certificate-data": b64(&client.cert_pem), "client-key-data": b64(&client.key_pem)}}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "skiff-admin"}}],
        "current-context": "skiff",
        "preferences": {},
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let yaml = serde_yaml::to_string(&doc)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Written aside and renamed into place: whoever waits for the file (a
    // user, a test, an agent) never reads half of it.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(yaml.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The namespaces every cluster starts with, the `kubernetes` Service, and
/// the `kube-dns` Service.
async fn bootstrap(reg: &Registry, port: u16, cluster_dns: Option<IpAddr>) -> anyhow::Result<()> {
    let ns = catalog::lookup("", "v1", "namespaces").expect("catalog");
    let opts = WriteOptions {
        field_manager: Some("skiff-apiserver".into()),
        ..Default::default()
    };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        match reg
            .create(ns, None, json!({"metadata": {"name": name}}), &opts)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating namespace {name}: {e}"),
        }
    }
    let classes = catalog::lookup("scheduling.k8s.io", "v1", "priorityclasses").expect("catalog");
    for class in crate::registry::priority::system_class_objects() {
        match reg.create(classes, None, class, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating the system priority classes: {e}"),
        }
    }
    let svc = catalog::lookup("", "v1", "services").expect("catalog");
    let kubernetes = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": reg.services.first_ip().to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}], "sessionAffinity": "None", "type": "ClusterIP"},
    });
    match reg.get(svc, Some("default"), "kubernetes").await {
        // Started on another port than last time: the Service follows.
        Ok(cur) if cur.pointer("/spec/ports/0/targetPort") != Some(&json!(port)) => {
            reg.update_with(
                svc,
                Some("default"),
                "kubernetes",
                crate::registry::Part::Main,
                &opts,
                "Update",
                |cur| {
                    let mut next = cur.clone();
                    next["spec"]["ports"][0]["targetPort"] = json!(port);
                    crate::meta::clear_resource_version(&mut next);
                    Ok(next)
                },
            )
            .await?;
        }
        Ok(_) => {}
        Err(_) => match reg.create(svc, Some("default"), kubernetes, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating the kubernetes service: {e}"),
        },
    }
    if let Some(ip) = cluster_dns {
        // No selector: each node's proxy publishes its own DNS server as an
        // endpoint, and the Local policy keeps lookups on the pod's node.
        let kube_dns = json!({
            "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "skiff-dns"}},
            "spec": {"clusterIP": ip.to_string(), "internalTrafficPolicy": "Local",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                          {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
        });
        // Created once; a restarted server keeps what is there (its address
        // is allocated to it, so creating it again would be refused).
        if reg.get(svc, Some("kube-system"), "kube-dns").await.is_err() {
            match reg.create(svc, Some("kube-system"), kube_dns, &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                // Say why and go on: the API serves without cluster DNS.
                Err(e) => tracing::warn!("not creating the kube-dns Service at {ip}: {e}"),
            }
        }
    }
    Ok(())
}

/// Points the `kubernetes` Service at this API server: its Endpoints and
/// EndpointSlice, kept by the API server itself as upstream's are.
async fn publish_endpoints(reg: &Registry, ip: IpAddr, port: u16) -> anyhow::Result<()> {
    let opts = WriteOptions {
        field_manager: Some("skiff-apiserver".into()),
        ..Default::default()
    };
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (res, body) in [
        (
            catalog::lookup("", "v1", "endpoints").expect("catalog"),
            endpoints,
        ),
        (
            catalog::lookup("discovery.k8s.io", "v1", "endpointslices").expect("catalog"),
            slice,
        ),
    ] {
        let desired = body.clone();
        match reg.get(res, Some("default"), "kubernetes").await {
            Ok(_) => {
                reg.update_with(
                    res,
                    Some("default"),
                    "kubernetes",
                    crate::registry::Part::Main,
                    &opts,
                    "Update",
                    |cur| {
                        let mut next = cur.clone();
                        for (k, v) in desired.as_object().into_iter().flatten() {
                            if k != "metadata" {
                                next[k] = v.clone();
                            }
                        }
                        crate::meta::clear_resource_version(&mut next);
                        Ok(next)
                    },
                )
                .await?;
            }
            Err(e) if e.code == 404 => {
                reg.create(res, Some("default"), body, &opts).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Compacts history every five minutes to the revision seen five minutes
/// earlier, as the upstream API server does for etcd.
async fn compactor(storage: Arc<dyn Storage>) {
    let mut previous = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        if previous > 0 {
            if let Err(e) = storage.compact(previous).await {
                tracing::warn!(error = %e, "compaction failed");
            }
        }
        previous = storage.current_revision().await.unwrap_or(previous);
    }
}
