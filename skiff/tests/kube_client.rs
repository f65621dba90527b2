//! kube-rs, as Rust operators use it, against a real `skiff server`: typed
//! create/list/get/patch/delete, error codes, and a watcher that survives a
//! server restart.

mod common;

use common::{eventually, unique_ns, Server};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use std::time::Duration;

async fn make_ns(c: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "t"}}, "data": {"v": v}}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_verbs_and_errors() {
    let s = Server::start(None);
    let c = s.client().await;
    let ns = unique_ns("kube");
    make_ns(&c, &ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    // The root CA publisher puts one there, as upstream's does.
    eventually("kube-root-ca.crt in the new namespace", 20, async || {
        cms.get_opt("kube-root-ca.crt").await.unwrap().is_some()
    })
    .await;

    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    // Duplicate create: 409 AlreadyExists.
    let err = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );
    // Stale update: 409 Conflict.
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data.as_mut().unwrap().insert("v".into(), "2".into());
    cms.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let err = cms
        .replace("a", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    // Missing: 404 NotFound.
    let err = cms.get("nope").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );

    // Patches: merge, strategic, apply.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"m": "1"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"labels": {"s": "1"}}})),
    )
    .await
    .unwrap();
    let applied = cms
        .patch("b", &PatchParams::apply("skiff-test"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"x": "y"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["x"], "y");
    let a = cms.get("a").await.unwrap();
    assert_eq!(a.data.as_ref().unwrap()["m"], "1");
    assert_eq!(a.metadata.labels.as_ref().unwrap()["s"], "1");

    // Lists with selectors and paging.
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("p{i}"), "x"))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.metadata.remaining_item_count, Some(5));
    let token = page.metadata.continue_.clone().expect("continue token");
    // The later pages show the list as it was at the first page.
    cms.delete("p4", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &cm("p5", "x"))
        .await
        .unwrap();
    let rest = cms
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        rest.metadata.resource_version,
        page.metadata.resource_version
    );
    assert_eq!(rest.metadata.continue_.as_deref().unwrap_or(""), "");
    let names: Vec<String> = page
        .items
        .iter()
        .chain(&rest.items)
        .map(|c| c.name_any())
        .collect();
    assert_eq!(
        names,
        ["a", "b", "kube-root-ca.crt", "p0", "p1", "p2", "p3", "p4"]
    );
    cms.delete("p5", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &cm("p4", "x"))
        .await
        .unwrap();
    let labelled = cms
        .list(&ListParams::default().labels("app=t"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 6);

    // Invalid object: 422 naming the field.
    let deps: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    let bad: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"replicas": -2, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .unwrap();
    let err = deps.create(&PostParams::default(), &bad).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.contains("spec.replicas"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

/// Server-side apply as controllers use it: `Patch::Apply` with a field
/// manager, its conflicts (a 409 with upstream's causes), `force`, and the
/// removal of fields a manager stops applying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply() {
    let s = Server::start(None);
    let c = s.client().await;
    let ns = unique_ns("ssa");
    make_ns(&c, &ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let config = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data});
    let apply = |manager: &'static str, force: bool, body: serde_json::Value| {
        let cms = cms.clone();
        async move {
            let mut pp = PatchParams::apply(manager);
            if force {
                pp = pp.force();
            }
            cms.patch("cfg", &pp, &Patch::Apply(body)).await
        }
    };
    let entries = |cm: &ConfigMap| -> Vec<(String, String, serde_json::Value)> {
        cm.metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|e| {
                (
                    e.manager.clone().unwrap_or_default(),
                    e.operation.clone().unwrap_or_default(),
                    e.fields_v1
                        .as_ref()
                        .map(|f| f.0.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    };

    // Created, and owned by its applier alone.
    let a = apply("mgr-a", false, config(json!({"x": "1", "y": "2"})))
        .await
        .unwrap();
    assert_eq!(
        entries(&a),
        vec![(
            "mgr-a".into(),
            "Apply".into(),
            json!({"f:data": {"f:x": {}, "f:y": {}}})
        )]
    );
    // The same configuration again: nothing written.
    let again = apply("mgr-a", false, config(json!({"x": "1", "y": "2"})))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, a.metadata.resource_version);

    // Another manager changing x: a 409 naming the owner and the field.
    let err = apply("mgr-b", false, config(json!({"x": "9"})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"
            && s.message == r#"Apply failed with 1 conflict: conflict with "mgr-a": .data.x"#),
        "{err:?}"
    );
    let raw = http::Request::builder()
        .method("PATCH")
        .uri(format!(
            "/api/v1/namespaces/{ns}/configmaps/cfg?fieldManager=mgr-b"
        ))
        .header("content-type", "application/apply-patch+yaml")
        .body(kube::client::Body::from(
            b"{apiVersion: v1, kind: ConfigMap, metadata: {name: cfg}, data: {x: \"9\"}}".to_vec(),
        ))
        .unwrap();
    let r = c.send(raw).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let status: serde_json::Value =
        serde_json::from_slice(&r.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"mgr-a\"", "field": ".data.x"}])
    );

    // The value already there is shared; forced, a changed one changes hands.
    let shared = apply("mgr-b", false, config(json!({"x": "1"})))
        .await
        .unwrap();
    assert_eq!(entries(&shared).len(), 2);
    let forced = apply("mgr-b", true, config(json!({"x": "9"})))
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["x"], "9");
    assert_eq!(
        entries(&forced),
        vec![
            (
                "mgr-a".into(),
                "Apply".into(),
                json!({"f:data": {"f:y": {}}})
            ),
            (
                "mgr-b".into(),
                "Apply".into(),
                json!({"f:data": {"f:x": {}}})
            ),
        ]
    );

    // mgr-a stops applying y: y goes, and so does mgr-a's entry.
    let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}});
    let pruned = apply("mgr-a", false, bare).await.unwrap();
    assert_eq!(
        pruned.data.clone().unwrap(),
        [("x".to_string(), "9".to_string())].into_iter().collect()
    );
    assert_eq!(entries(&pruned).len(), 1);

    // An update is recorded as one too, with the client's manager.
    let updated = cms
        .patch(
            "cfg",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"data": {"x": "10"}})),
        )
        .await
        .unwrap();
    let e = entries(&updated);
    assert!(
        e.contains(&(
            "editor".into(),
            "Update".into(),
            json!({"f:data": {"f:x": {}}})
        )),
        "{e:?}"
    );
    assert!(!e.iter().any(|(m, _, _)| m == "mgr-b"), "{e:?}");

    // force is for apply patches only; an apply names its manager.
    for (uri, ct, why) in [
        (
            "?force=true",
            "application/merge-patch+json",
            "force: Forbidden: may not be specified for non-apply patch",
        ),
        (
            "",
            "application/apply-patch+yaml",
            "fieldManager: Required value: is required for apply patch",
        ),
    ] {
        let req = http::Request::builder()
            .method("PATCH")
            .uri(format!("/api/v1/namespaces/{ns}/configmaps/cfg{uri}"))
            .header("content-type", ct)
            .body(kube::client::Body::from(b"{}".to_vec()))
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let status: serde_json::Value =
            serde_json::from_slice(&r.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(
            status["message"],
            format!(r#"PatchOptions.meta.k8s.io "" is invalid: {why}"#)
        );
    }
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    name: &str,
) -> Result<(), tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(n) = rx.recv().await {
            if n == name {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_survives_server_restart() {
    let mut s = Server::start(None);
    let c = s.client().await;
    let ns = unique_ns("watch");
    make_ns(&c, &ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    cms.create(&PostParams::default(), &cm("before", "1"))
        .await
        .unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream_api = cms.clone();
    let task = tokio::spawn(async move {
        // With a backoff as real users run it: without one the retries
        // while the server is down never yield, and a failing test could not
        // shut its runtime down.
        let mut stream = watcher(stream_api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                let _ = tx.send(o.metadata.name.unwrap_or_default());
            }
        }
    });
    wait_for(&mut rx, "before")
        .await
        .expect("initial object seen");

    s.restart();
    cms.create(&PostParams::default(), &cm("after", "1"))
        .await
        .unwrap();
    wait_for(&mut rx, "after")
        .await
        .expect("watcher resumed after restart");
    task.abort();
}

/// Raw requests: what a malformed or oversized body, a YAML body, a duplicate
/// field and an anonymous caller get back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_errors() {
    let s = Server::start(None);
    let c = s.client().await;
    let send = |method: &str, path: &str, ct: &str, body: Vec<u8>| {
        let c = c.clone();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(body)
            .unwrap();
        async move { c.send(req.map(kube::client::Body::from)).await.unwrap() }
    };
    let status_of = |r: &http::Response<kube::client::Body>| r.status().as_u16();

    // Malformed JSON: 400, nothing written.
    let r = send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        br#"{"metadata": {"name": "x""#.to_vec(),
    )
    .await;
    assert_eq!(status_of(&r), 400);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    assert!(cms.get_opt("x").await.unwrap().is_none());

    // A YAML body is accepted.
    let yaml =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n".to_vec();
    let r = send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        yaml,
    )
    .await;
    assert_eq!(status_of(&r), 201);
    assert_eq!(cms.get("from-yaml").await.unwrap().data.unwrap()["k"], "v");

    // Over 3 MiB: 413.
    let big = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let r = send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        big.into_bytes(),
    )
    .await;
    assert_eq!(status_of(&r), 413);

    // Duplicate fields: a 400 naming them under Strict.
    let dup = br#"{"metadata":{"name":"d","name":"e"}}"#.to_vec();
    let r = send(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        "application/json",
        dup,
    )
    .await;
    assert_eq!(status_of(&r), 400);
    let body = r.into_body().collect_bytes().await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains(r#"duplicate field \"metadata.name\""#),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Unknown media type: 415.
    let r = send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "text/plain",
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(status_of(&r), 415);

    // Health and metrics as upstream names them.
    let health = c
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(health, "ok");
    cms.list(&ListParams::default()).await.unwrap();
    let metrics = c
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"apiserver_request_total{code="200",resource="configmaps",verb="LIST"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"apiserver_request_duration_seconds_bucket{resource="configmaps",verb="POST",le="0.005"}"#), "{metrics}");
    // The watch caches' gauges: objects per resource, and the history kept
    // for watches that resume (this test has written configmaps).
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(gauge(r#"apiserver_storage_objects{resource="namespaces"}"#) >= 4.0);
    assert!(gauge(r#"skiff_watch_cache_history_events{resource="configmaps"}"#) >= 1.0);
    assert!(gauge(r#"skiff_watch_cache_history_bytes{resource="configmaps"}"#) > 100.0);
    // Objects' repeated JSON held once (the default namespace's
    // ServiceAccount, the system pods' and nodes' larger parts at least).
    assert!(gauge("skiff_watch_cache_shared_pieces") >= 1.0);
    assert!(gauge("skiff_watch_cache_shared_bytes") >= 128.0);

    // No credentials: 401.
    let mut kc = Kubeconfig::read_from(s.kubeconfig()).unwrap();
    for named in &mut kc.auth_infos {
        if let Some(a) = named.auth_info.as_mut() {
            a.client_certificate_data = None;
            a.client_key_data = None;
        }
    }
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let anon = Client::try_from(cfg).unwrap();
    let err = Api::<ConfigMap>::namespaced(anon, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 401),
        "{err:?}"
    );
}

/// spec.healthCheckNodePort: allocated for a LoadBalancer Service with
/// externalTrafficPolicy Local, kept, refused where it does not belong or
/// is taken, dropped with the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_node_ports() {
    let s = Server::start(None);
    let c = s.client().await;
    let ns = unique_ns("hc");
    make_ns(&c, &ns).await;
    let svcs: Api<Service> = Api::namespaced(c.clone(), &ns);
    let svc = |name: &str, ty: &str, policy: Option<&str>, hc: Option<u16>| -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": ty, "externalTrafficPolicy": policy, "healthCheckNodePort": hc,
                     "selector": {"app": name}, "ports": [{"port": 80}]}
        }))
        .unwrap()
    };
    let hc_of = |s: &Service| s.spec.as_ref().unwrap().health_check_node_port;
    let pp = PostParams::default();
    let lb = svcs
        .create(&pp, &svc("lb", "LoadBalancer", Some("Local"), None))
        .await
        .unwrap();
    let port = hc_of(&lb).expect("allocated");
    assert!((30000..=32767).contains(&port), "{port}");
    let node_port = lb.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap();
    assert_ne!(port, node_port);

    let reason = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("{other}"),
    };
    // Not a LoadBalancer with the Local policy: refused, naming the field.
    let (code, msg) = reason(
        svcs.create(&pp, &svc("np", "NodePort", Some("Local"), Some(31999)))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("spec.healthCheckNodePort"), "{msg}");
    // Taken by another Service (as a health check port or a node port).
    for taken in [port as u16, node_port as u16] {
        let (code, msg) = reason(
            svcs.create(&pp, &svc("dup", "LoadBalancer", Some("Local"), Some(taken)))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 422);
        assert!(msg.contains("provided port is already allocated"), "{msg}");
    }
    // A node port asked for that is taken: refused, naming the port.
    let mut np = svc("np2", "NodePort", None, None);
    np.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(node_port);
    let (code, msg) = reason(svcs.create(&pp, &np).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        msg.contains("spec.ports[0].nodePort") && msg.contains("already allocated"),
        "{msg}"
    );
    // Kept across updates, immutable while needed.
    let patch = |v: serde_json::Value| Patch::Merge(v);
    let kept = svcs
        .patch(
            "lb",
            &PatchParams::default(),
            &patch(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(hc_of(&kept), Some(port));
    let (code, msg) = reason(
        svcs.patch(
            "lb",
            &PatchParams::default(),
            &patch(json!({"spec": {"healthCheckNodePort": 31998}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    // Dropped with the policy, and free again.
    let cluster = svcs
        .patch(
            "lb",
            &PatchParams::default(),
            &patch(json!({"spec": {"externalTrafficPolicy": "Cluster"}})),
        )
        .await
        .unwrap();
    assert_eq!(hc_of(&cluster), None);
    let reused = svcs
        .create(
            &pp,
            &svc("again", "LoadBalancer", Some("Local"), Some(port as u16)),
        )
        .await
        .unwrap();
    assert_eq!(hc_of(&reused), Some(port));
}

/// A custom resource through kube-rs as an operator drives one: the CRD
/// created, the kind found through discovery, objects created, watched,
/// and their status patched as `DynamicObject`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_through_discovery() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::core::{DynamicObject, GroupVersionKind};
    let s = Server::start(None);
    let c = s.client().await;
    let ns = unique_ns("crd");
    make_ns(&c, &ns).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let crd = json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 3}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                }}},
            }],
        },
    });
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let mut found = None;
    eventually("the Widget kind in discovery", 20, async || {
        found = kube::discovery::pinned_kind(&c, &gvk).await.ok();
        found.is_some()
    })
    .await;
    let (ar, caps) = found.unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), &ns, &ar);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream_api = widgets.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(stream_api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(o)) = ev {
                let ready = o.data.pointer("/status/ready").is_some();
                let _ = tx.send(format!(
                    "{}{}",
                    o.name_any(),
                    if ready { " ready" } else { "" }
                ));
            }
        }
    });
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {},
    }))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 3, "{created:?}");
    wait_for(&mut rx, "w1").await.expect("the watcher saw it");
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    wait_for(&mut rx, "w1 ready")
        .await
        .expect("the watcher saw its status");
    let list = widgets.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(widgets.get_opt("w1").await.unwrap().is_none());
    task.abort();
}
