//! A real node pulls its pod's image from a registry: Debian's
//! `docker-registry` serves one storage directory twice — on the host's
//! loopback, where this test pushes the busybox test image, and on the
//! node's own loopback (inside its network namespace), where the agent
//! pulls `127.0.0.1:5000/test/busybox:latest` with `imagePullPolicy:
//! Always`. An image the registry lacks goes ErrImagePull, then
//! ImagePullBackOff. Needs what the real-node tests need, plus
//! docker-registry; skipped otherwise.

mod common;

use common::realnode::pods::waiting_reason;
use common::realnode::{missing, RealNode};
use common::{default_service_account, eventually, no_pods_left};
use http::header::{CONTENT_TYPE, LOCATION};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_agent::images::oci::AnyManifest;
use skiff_agent::images::registry::session::resolve;
use skiff_agent::images::registry::{RegistryConfig, Session, Transport};
use skiff_agent::images::ImageStore;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// A registry process, killed by its pid on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docker-registry serve` on `addr` over `storage`, inside `netns` if given.
fn registry(dir: &Path, name: &str, addr: &str, netns: Option<&str>) -> Proc {
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.join("storage").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(REGISTRY);
            c
        }
        None => Command::new(REGISTRY),
    };
    cmd.arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Proc(cmd.spawn().expect("start docker-registry"))
}

/// Pushes the busybox test image as `test/busybox:latest`.
async fn push_busybox(host: &str, work: &Path) {
    let tar = work.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let out = Command::new(script).arg(&tar).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = ImageStore::open(&work.join("store")).unwrap();
    store.import_tar(&tar).unwrap();
    let img = store.resolve("localhost/busybox:latest").unwrap().unwrap();
    let read = |d: &str| std::fs::read(store.blob_path(d).unwrap()).unwrap();
    let manifest = read(&img.digest);
    let m: AnyManifest = serde_json::from_slice(&manifest).unwrap();
    let transport = Transport::new(RegistryConfig::default()).unwrap();
    let s = Session::new(&transport, host, "test/busybox", "pull,push", None);
    // The registry may still be starting: its first answer, within bounds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s
        .send(
            Method::GET,
            &s.url("tags/list"),
            &[],
            Vec::<u8>::new().into(),
        )
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the registry did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for d in std::iter::once(m.config.unwrap()).chain(m.layers.unwrap()) {
        let url = s.url("blobs/uploads/");
        let resp = s
            .send(Method::POST, &url, &[], Vec::<u8>::new().into())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = resolve(&url, resp.headers()[LOCATION].to_str().unwrap());
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = s
            .send(
                Method::PUT,
                &format!("{loc}{sep}digest={}", d.digest),
                &[(CONTENT_TYPE, "application/octet-stream")],
                read(&d.digest).into(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = s
        .send(
            Method::PUT,
            &s.url("manifests/latest"),
            &[(CONTENT_TYPE, "application/vnd.oci.image.manifest.v1+json")],
            manifest.into(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

async fn notes(client: &kube::Client, pod: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_real_node_pulls_from_a_registry_and_backs_off_on_unknown_images() {
    if let Some(why) = missing() {
        eprintln!("skipping the registry pull test: {why}");
        return;
    }
    if !Path::new(REGISTRY).exists() {
        eprintln!("skipping the registry pull test: needs docker-registry (Debian package docker-registry)");
        return;
    }
    let node = RealNode::start("puller");
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let _host_side = registry(work.path(), "host", &format!("127.0.0.1:{port}"), None);
    let _node_side = registry(work.path(), "node", "127.0.0.1:5000", Some(&node.netns));
    push_busybox(&format!("127.0.0.1:{port}"), work.path()).await;

    let client = node.server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the node registered", 30, async || {
        nodes.get_opt(&node.name).await.unwrap().is_some()
    })
    .await;
    default_service_account(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let image = "127.0.0.1:5000/test/busybox:latest";
    let pod = |name: &str, image: &str, policy: &str| -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": image, "imagePullPolicy": policy,
                "command": ["sh", "-c", "sleep 3600"],
            }]},
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("pulled", image, "Always"))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("unknown", "127.0.0.1:5000/test/nope:latest", "IfNotPresent"),
    )
    .await
    .unwrap();

    eventually("the pulled image running", 90, async || {
        let p = pods.get("pulled").await.unwrap();
        p.status.and_then(|s| s.phase).as_deref() == Some("Running")
    })
    .await;
    let p = pods.get("pulled").await.unwrap();
    let st = &p.status.unwrap().container_statuses.unwrap()[0];
    assert!(st.image_id.starts_with("sha256:"), "{st:?}");
    eventually("Pulling and Pulled events", 30, async || {
        let n = notes(&client, "pulled").await;
        n.iter()
            .any(|(r, t)| r == "Pulling" && t == &format!("Pulling image \"{image}\""))
            && n.iter().any(|(r, t)| {
                r == "Pulled"
                    && t.starts_with(&format!("Successfully pulled image \"{image}\" in "))
                    && t.contains("Image size: ")
            })
    })
    .await;

    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = pods.get("unknown").await.unwrap();
        let r = waiting_reason(&p);
        if !r.is_empty() && seen.last() != Some(&r) {
            seen.push(r.clone());
        }
        if seen.iter().any(|s| s == "ErrImagePull") && r == "ImagePullBackOff" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ErrImagePull then ImagePullBackOff: saw {seen:?}; status {}; agent log:\n{}",
            serde_json::to_string(&p.status).unwrap(),
            node.agent_log()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = notes(&client, "unknown").await;
    assert!(
        n.iter().any(|(r, t)| r == "Failed"
            && t.starts_with("Failed to pull image \"127.0.0.1:5000/test/nope:latest\": ")
            && t.contains("not found")),
        "{n:?}"
    );
    assert!(n.iter().any(|(r, _)| r == "BackOff"), "{n:?}");

    for name in ["pulled", "unknown"] {
        let _ = pods.delete(name, &DeleteParams::default()).await;
    }
    no_pods_left("the pods gone", &pods, 60).await;
}
