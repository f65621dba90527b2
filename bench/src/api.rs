//! `api`: the API server's figures on both stores — pod creates/s with 64
//! concurrent clients (p50/p99 latency), gets/s, a consistent LIST of 10,000
//! pods, watch delivery p99 with 100 watchers, RSS idle and with 10,000 pods,
//! gets/s as a service account that RBAC has to judge — and raw etcd put
//! throughput measured in the same run as the reference.

use crate::procs::{self, Proc};
use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PODS: usize = 10_000;
const CLIENTS: usize = 64;
const GETS: usize = 20_000;
const WATCHERS: usize = 100;
const WATCHED_PODS: usize = 100;

pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "load"}},
        "spec": {"containers": [{
            "name": "app", "image": "localhost/busybox:latest",
            "command": ["sh", "-c", "sleep 3600"],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "MODE", "value": "bench"}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}
        }]}
    }))
    .expect("pod literal")
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// Creates a namespace and its default service account, which pods need
/// (unless the service account controller, when running, made it first).
pub async fn make_namespace(c: &Client, name: &str) -> Result<()> {
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}}))?,
    )
    .await?;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), name);
    match sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}}))?,
        )
        .await
    {
        // With the controllers running, the service account controller may be first.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        r => r.map(|_| ()).map_err(Into::into),
    }
}

struct Creates {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `total` pod creates from `clients` concurrent workers.
async fn create_pods(c: &Client, ns: &str, total: usize) -> Result<Creates> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (api, next) = (Api::<Pod>::namespaced(c.clone(), ns), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, kube::Error>(lat);
                    }
                    let t = Instant::now();
                    api.create(&PostParams::default(), &pod(&format!("p-{i:05}")))
                        .await?;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(total);
    for w in workers {
        lat.extend(w.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Creates {
        per_s: total as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    })
}

async fn get_pods(c: &Client, ns: &str, total: usize, existing: usize) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (api, next) = (Api::<Pod>::namespaced(c.clone(), ns), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, kube::Error>(());
                    }
                    api.get(&format!("p-{:05}", i % existing)).await?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// RoleBindings in the benchmark's namespace besides the one that matters:
/// what RBAC looks through before it finds it.
const OTHER_BINDINGS: usize = 200;

/// A client that is the service account `reader` of `ns`, bound to `view`
/// by the last of `OTHER_BINDINGS + 1` RoleBindings there: each of its
/// requests has its token checked and RBAC's bindings searched.
async fn service_account_client(c: &Client, kubeconfig: &Path, ns: &str) -> Result<Client> {
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "reader"}}))?,
    )
    .await?;
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(c.clone(), ns);
    for i in 0..=OTHER_BINDINGS {
        let (name, subject) = if i < OTHER_BINDINGS {
            (format!("other-{i:03}"), format!("someone-{i:03}"))
        } else {
            ("reader-view".to_string(), "reader".to_string())
        };
        let binding = json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": ns}],
        });
        bindings
            .create(&PostParams::default(), &serde_json::from_value(binding)?)
            .await?;
    }
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    let issued: serde_json::Value = sas
        .create_subresource("token", "reader", &PostParams::default(), &request)
        .await?;
    let token = issued["status"]["token"]
        .as_str()
        .context("a TokenRequest's token")?;
    // The admin's kubeconfig with the token in place of the certificate.
    let admin = std::fs::read_to_string(kubeconfig)?;
    let field = |name: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .with_context(|| format!("{name} in {}", kubeconfig.display()))
    };
    let with_token = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        field("server:")?,
        field("certificate-authority-data:")?,
    );
    let path = kubeconfig.with_file_name("reader-kubeconfig.yaml");
    std::fs::write(&path, with_token)?;
    client(&path).await
}

/// A consistent LIST (no resourceVersion, no limit) of the namespace, as raw bytes.
async fn list_ms(c: &Client, ns: &str, expect: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..7 {
        let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods")).body(Vec::new())?;
        let t = Instant::now();
        let body = c.request_text(req).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let count = body.matches("\"kind\":\"Pod\"").count();
        anyhow::ensure!(
            count == expect,
            "list returned {count} pods, expected {expect}"
        );
    }
    Ok(median(times))
}

/// Delivery latency (create sent → event received) across `WATCHERS` watchers.
async fn watch_p99(c: &Client, ns: &str) -> Result<f64> {
    make_namespace(c, ns).await?;
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = api
            .watch(&WatchParams::default().timeout(120), "0")
            .await?
            .boxed();
        let (sent, lat) = (sent.clone(), lat.clone());
        watchers.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = 0;
            while let Ok(Some(ev)) = stream.try_next().await {
                if let WatchEvent::Added(p) = ev {
                    let name = p.metadata.name.unwrap_or_default();
                    let at = sent.lock().ok().and_then(|s| s.get(&name).copied());
                    if let Some(at) = at {
                        if let Ok(mut l) = lat.lock() {
                            l.push(at.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    seen += 1;
                    if seen == WATCHED_PODS {
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..WATCHED_PODS {
        let name = format!("w-{i:03}");
        sent.lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &pod(&name)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
    }
    let mut l = lat.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    anyhow::ensure!(
        l.len() == WATCHERS * WATCHED_PODS,
        "watchers saw {} of {} events",
        l.len(),
        WATCHERS * WATCHED_PODS
    );
    l.sort_by(f64::total_cmp);
    Ok(percentile(&l, 0.99))
}

/// Raw etcd puts/s of `value` under fresh keys below `prefix`, from 64
/// concurrent clients.
async fn raw_etcd_puts(endpoint: &str, prefix: &str, value: &[u8], total: usize) -> Result<f64> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (mut kv, next) = (client.kv_client(), next.clone());
            let (prefix, value) = (prefix.to_string(), value.to_vec());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, etcd_client::Error>(());
                    }
                    kv.put(format!("{prefix}/{i:05}"), value.clone(), None)
                        .await?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The bytes skiff stores in etcd for one pod of the benchmark: the client's
/// manifest with defaults, uid, timestamps and managedFields added.
async fn stored_pod(c: &Client, endpoint: &str, ns: &str) -> Result<Vec<u8>> {
    let name = "stored-size-probe";
    Api::<Pod>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &pod(name))
        .await?;
    let mut etcd = etcd_client::Client::connect([endpoint], None).await?;
    let got = etcd
        .get(format!("/registry/pods/{ns}/{name}"), None)
        .await?;
    let kv = got.kvs().first().context("the probe pod is not in etcd")?;
    Ok(kv.value().to_vec())
}

async fn settle_rss(p: &Proc) -> f64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.rss_mb()
}

pub async fn run() -> Result<()> {
    let bin = procs::skiff_binary()?;
    println!(
        "# skiff-bench api: {PODS} pods, {CLIENTS} clients, {WATCHERS} watchers; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Embedded store.
    let (server, kc) = procs::start_server(&bin, None)?;
    let idle_rss = settle_rss(&server).await;
    let c = client(&kc).await?;
    make_namespace(&c, "bench").await?;
    let emb = create_pods(&c, "bench", PODS)
        .await
        .context("creates on the embedded store")?;
    println!(
        "embedded: creates {:.0}/s p50 {:.1} ms p99 {:.1} ms",
        emb.per_s, emb.p50_ms, emb.p99_ms
    );
    let gets = get_pods(&c, "bench", GETS, PODS).await?;
    println!("embedded: gets {gets:.0}/s");
    let reader = service_account_client(&c, &kc, "bench").await?;
    let reader_gets = get_pods(&reader, "bench", GETS, PODS).await?;
    println!(
        "embedded: gets {reader_gets:.0}/s as a service account (token checked, RBAC past {OTHER_BINDINGS} other RoleBindings): {:.2} of the admin's",
        reader_gets / gets
    );
    let list = list_ms(&c, "bench", PODS).await?;
    println!("embedded: consistent LIST of {PODS} pods {list:.1} ms (median of 7)");
    let list_rss = settle_rss(&server).await;
    let watch = watch_p99(&c, "bench-watch").await?;
    println!("embedded: watch delivery p99 {watch:.1} ms with {WATCHERS} watchers");
    println!("embedded: RSS idle {idle_rss:.1} MB, with {PODS} pods {list_rss:.1} MB");
    drop(server);

    // etcd, and raw etcd as the reference: puts of the very bytes skiff
    // stores for each pod (the manifest grown by defaults and managedFields),
    // measured just before skiff's creates on the same etcd. Puts of the
    // client's bare manifest, a fifth of that size, are shown beside it.
    let (etcd, endpoint) = procs::start_etcd()?;
    let (server, kc) = procs::start_server(&bin, Some(&endpoint))?;
    let c = client(&kc).await?;
    make_namespace(&c, "bench").await?;
    let stored = stored_pod(&c, &endpoint, "bench").await?;
    let manifest = serde_json::to_vec(&pod("p-00000"))?;
    let raw_manifest = raw_etcd_puts(&endpoint, "/bench-raw/manifests", &manifest, PODS).await?;
    let raw = raw_etcd_puts(&endpoint, "/bench-raw/pods", &stored, PODS).await?;
    println!(
        "etcd: raw puts {raw:.0}/s of the stored pod ({} bytes); {raw_manifest:.0}/s of the manifest ({} bytes)",
        stored.len(),
        manifest.len()
    );
    let on_etcd = create_pods(&c, "bench", PODS)
        .await
        .context("creates on etcd")?;
    println!(
        "etcd: skiff creates {:.0}/s p50 {:.1} ms p99 {:.1} ms",
        on_etcd.per_s, on_etcd.p50_ms, on_etcd.p99_ms
    );
    drop(server);
    drop(etcd);

    println!("command: cargo run --release -p skiff-bench -- api");
    println!(
        "RESULT creates_per_s={:.0} create_p99_ms={:.1} gets_per_s={:.0} rbac_gets_per_s={:.0} list_10k_ms={:.1} watch_p99_ms={:.1} idle_rss_mb={:.1} etcd_creates_per_s={:.0} raw_etcd_puts_per_s={:.0} etcd_ratio={:.2} list_10k_rss_mb={:.1}",
        emb.per_s, emb.p99_ms, gets, reader_gets, list, watch, idle_rss, on_etcd.per_s, raw, on_etcd.per_s / raw, list_rss
    );
    Ok(())
}
