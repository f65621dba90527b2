//! The real kubectl (on PATH) against a real `skiff server`, on the embedded
//! store and on etcd: what each verb prints is what it prints against upstream.

mod common;

use common::{
    etcd, get_json, have_kubectl, kubectl_until, server_and_namespace, unique_ns, Server,
};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"#;

fn scenario(s: &Server) {
    let ns = unique_ns("kubectl");
    assert!(s.ok(&["version"]).contains("Server Version: v1.32"));
    let resources = s.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "horizontalpodautoscalers",
        "rbac.authorization.k8s.io/v1",
    ] {
        assert!(
            resources.contains(line),
            "api-resources lacks {line}: {resources}"
        );
    }
    assert_eq!(
        s.ok(&["create", "namespace", &ns]).trim(),
        format!("namespace/{ns} created")
    );

    // apply: create, change, unchanged.
    let out = s.apply(&ns, DEPLOYMENT);
    assert!(
        out.contains("deployment.apps/web created") && out.contains("service/web created"),
        "{out}"
    );
    let changed = DEPLOYMENT
        .replace("replicas: 2", "replicas: 3")
        .replace(r#"{name: A, value: "1"}, "#, "");
    let out = s.apply(&ns, &changed);
    assert!(
        out.contains("deployment.apps/web configured") && out.contains("service/web unchanged"),
        "{out}"
    );
    assert!(s
        .apply(&ns, &changed)
        .contains("deployment.apps/web unchanged"));
    let env = s.ok(&["get", "deploy", "web", "-n", &ns, "-o", "jsonpath={.spec.replicas} {.metadata.generation} {.spec.template.spec.containers[0].env[*].name}"]);
    assert_eq!(env, "3 2 B");

    // Defaults as upstream's.
    let strategy = s.ok(&["get", "deploy", "web", "-n", &ns, "-o", "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.progressDeadlineSeconds} {.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].imagePullPolicy}"]);
    assert_eq!(strategy, "25% 10 600 Always IfNotPresent");
    let svc = s.ok(&[
        "get",
        "svc",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    let (ip, port) = svc.split_once(' ').unwrap();
    assert!(ip.starts_with("10.43."), "{svc}");
    assert!(
        (30000..=32767).contains(&port.parse::<u16>().unwrap()),
        "{svc}"
    );

    // Tables with upstream's columns.
    let table = s.ok(&["get", "deploy", "-n", &ns, "-o", "wide"]);
    assert!(
        table.starts_with(
            "NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES       SELECTOR"
        ),
        "{table}"
    );
    let table = s.ok(&["get", "svc", "-n", &ns]);
    assert!(
        table.contains("TYPE")
            && table.contains("CLUSTER-IP")
            && table.contains(&format!("80:{port}/TCP")),
        "{table}"
    );

    // Imperative creates (protobuf bodies).
    s.ok(&["create", "configmap", "c1", "-n", &ns, "--from-literal=a=1"]);
    s.ok(&["create", "configmap", "c2", "-n", &ns, "--from-literal=a=2"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "-n",
        &ns,
        "--from-literal=p=q",
    ]);
    s.ok(&[
        "create",
        "deployment",
        "d2",
        "-n",
        &ns,
        "--image=nginx",
        "--replicas=2",
    ]);
    assert_eq!(
        s.ok(&["get", "secret", "s1", "-n", &ns, "-o", "jsonpath={.data.p}"]),
        "cQ=="
    );

    // Selectors and chunking.
    assert_eq!(
        s.ok(&["get", "deploy", "-n", &ns, "-l", "app=web", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "-n",
            &ns,
            "--field-selector",
            "metadata.name=c2",
            "-o",
            "name"
        ])
        .trim(),
        "configmap/c2"
    );
    let chunked = s.ok(&["get", "cm", "-n", &ns, "--chunk-size=1", "-o", "name"]);
    assert!(
        chunked.contains("configmap/c1") && chunked.contains("configmap/c2"),
        "{chunked}"
    );
    assert!(s
        .fails(&["get", "pods", "-n", &ns, "--field-selector", "spec.bogus=1"])
        .contains("field label not supported: spec.bogus"));

    // label, annotate, scale, patch.
    s.ok(&["label", "deploy", "web", "-n", &ns, "tier=fe"]);
    s.ok(&["annotate", "deploy", "web", "-n", &ns, "note=hi"]);
    assert!(s
        .ok(&["scale", "deploy", "web", "-n", &ns, "--replicas=5"])
        .contains("scaled"));
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":3}}"#,
    ]);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        &ns,
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
    ]);
    let got = s.ok(&["get", "deploy", "web", "-n", &ns, "-o", "jsonpath={.metadata.labels.tier} {.metadata.annotations.note} {.spec.replicas} {.spec.minReadySeconds} {.spec.template.spec.containers[*].name}"]);
    assert_eq!(got, "fe hi 4 3 side nginx");

    // replace with a stale object is a conflict; dry runs change nothing.
    let stale = s.ok(&["get", "cm", "c1", "-n", &ns, "-o", "yaml"]);
    s.ok(&["label", "cm", "c1", "-n", &ns, "x=1"]);
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &stale);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Error from server (Conflict)"),
        "{out:?}"
    );
    assert!(s
        .ok(&["delete", "cm", "c1", "-n", &ns, "--dry-run=server"])
        .contains("deleted (server dry run)"));
    s.ok(&["get", "cm", "c1", "-n", &ns]);

    // Errors worded as upstream's.
    let dup = s.fails(&["create", "configmap", "c1", "-n", &ns]);
    assert!(
        dup.contains(r#"error: failed to create configmap: configmaps "c1" already exists"#),
        "{dup}"
    );
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c2}\n";
    let out = s.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], cm);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "c2" already exists"#), "{err}");
    let bad = DEPLOYMENT
        .replace("replicas: 2", "replicas: -1")
        .replace("name: web\n  labels", "name: bad\n  labels");
    let out = s.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\nbogus: 1\n";
    let out = s.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], unknown);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(r#"strict decoding error: unknown field "bogus""#),
        "{out:?}"
    );

    // Access reviews (protobuf bodies): every authenticated user may do anything until RBAC.
    assert_eq!(
        s.ok(&["auth", "can-i", "create", "pods", "-n", &ns]).trim(),
        "yes"
    );
    assert!(s.ok(&["auth", "whoami"]).contains("system:admin"));

    // events.k8s.io events are core events too.
    let event = format!("apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: e1}}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: skiff.dev/test\nreportingInstance: t\naction: Test\nreason: Tested\ntype: Normal\nnote: hello\nregarding: {{kind: Deployment, name: web, namespace: {ns}, apiVersion: apps/v1}}\n");
    s.apply(&ns, &event);
    let core = s.ok(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "jsonpath={.items[0].apiVersion} {.items[0].message}",
    ]);
    assert_eq!(core, "v1 hello");

    // describe and explain.
    let d = s.ok(&["describe", "deploy", "web", "-n", &ns]);
    assert!(
        d.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{d}"
    );
    let e = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(e.contains("FIELD: replicas <integer>"), "{e}");

    // watch: events arrive as they happen.
    let mut watch = Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .args(["get", "cm", "-n", &ns, "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines come through a channel so every wait below is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("watch output within 20s")
    };
    let header = next();
    assert!(header.starts_with("EVENT"), "{header}");
    let first = next();
    assert!(first.starts_with("ADDED"), "{first}");
    s.ok(&["create", "configmap", "w1", "-n", &ns]);
    s.ok(&["delete", "configmap", "w1", "-n", &ns]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<String> = Vec::new();
    while Instant::now() < deadline
        && !seen
            .iter()
            .any(|l| l.starts_with("DELETED") && l.contains(" w1 "))
    {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => seen.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ADDED") && l.contains(" w1 ")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("DELETED") && l.contains(" w1 ")),
        "{seen:?}"
    );

    // delete waits for the object to go.
    assert!(s
        .ok(&["delete", "deploy", "d2", "-n", &ns, "--wait"])
        .contains("deleted"));
    assert!(s
        .fails(&["get", "deploy", "d2", "-n", &ns])
        .contains("NotFound"));
}

const SSA_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  labels: {app: ssa, tier: fe}
spec:
  replicas: 2
  selector:
    matchLabels: {app: ssa}
  template:
    metadata:
      labels: {app: ssa}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"#;

/// `kubectl apply --server-side`: field ownership, conflicts as upstream
/// words them, forcing, removal of fields dropped from the manifest, and the
/// move from client-side apply.
fn server_side_apply(s: &Server) {
    let ns = unique_ns("ssa");
    s.ok(&["create", "namespace", &ns]);
    let apply = |yaml: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "-n", &ns, "-f", "-"];
        args.extend(extra);
        s.kubectl_stdin(&args, yaml)
    };
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let get = |kind: &str, name: &str, path: &str| {
        s.ok(&[
            "get",
            kind,
            name,
            "-n",
            &ns,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };

    let out = apply(SSA_DEPLOYMENT, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "deployment.apps/ssa serverside-applied"
    );
    // Applying the same again writes nothing. (First let the deployment
    // controller finish writing its status and revision.)
    let mut rv = get("deploy", "ssa", "{.metadata.resourceVersion}");
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = get("deploy", "ssa", "{.metadata.resourceVersion}");
        if now == rv {
            break;
        }
        rv = now;
    }
    assert!(apply(SSA_DEPLOYMENT, &[]).status.success());
    assert_eq!(get("deploy", "ssa", "{.metadata.resourceVersion}"), rv);

    // The applier owns exactly what it applied, in upstream's FieldsV1.
    let obj: serde_json::Value = serde_json::from_str(&s.ok(&[
        "get",
        "deploy",
        "ssa",
        "-n",
        &ns,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    let mine = entries
        .iter()
        .find(|e| e["manager"] == "kubectl" && e["operation"] == "Apply")
        .unwrap_or_else(|| panic!("no kubectl Apply entry: {entries:?}"));
    assert_eq!(mine["apiVersion"], "apps/v1");
    assert_eq!(mine["fieldsType"], "FieldsV1");
    assert!(mine["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        mine["fieldsV1"],
        serde_json::json!({
            "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {r#"k:{"name":"nginx"}"#: {
                    ".": {}, "f:env": {
                        r#"k:{"name":"A"}"#: {".": {}, "f:name": {}, "f:value": {}},
                        r#"k:{"name":"B"}"#: {".": {}, "f:name": {}, "f:value": {}}},
                    "f:image": {}, "f:name": {},
                    "f:ports": {r#"k:{"containerPort":80,"protocol":"TCP"}"#: {".": {}, "f:containerPort": {}}}}}}}}
        })
    );
    let yaml = s.ok(&[
        "get",
        "deploy",
        "ssa",
        "-n",
        &ns,
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for line in [
        "manager: kubectl",
        "operation: Apply",
        "f:replicas: {}",
        r#"k:{"name":"nginx"}:"#,
        ".: {}",
    ] {
        assert!(yaml.contains(line), "{line} missing from {yaml}");
    }
    assert!(!s
        .ok(&["get", "deploy", "ssa", "-n", &ns, "-o", "yaml"])
        .contains("managedFields"));

    // `kubectl scale` takes spec.replicas; applying another count conflicts.
    s.ok(&["scale", "deploy", "ssa", "-n", &ns, "--replicas=5"]);
    let three = SSA_DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let out = apply(&three, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(get("deploy", "ssa", "{.spec.replicas}"), "5");
    // --force-conflicts takes it back; the scale entry, left with nothing, goes.
    let out = apply(&three, &["--force-conflicts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get("deploy", "ssa", "{.spec.replicas}"), "3");
    let managers = s.ok(&[
        "get",
        "deploy",
        "ssa",
        "-n",
        &ns,
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}/{.subresource};{end}",
    ]);
    assert!(!managers.contains("/scale"), "{managers}");

    // Another manager may not change what kubectl owns.
    let other = three.replace("nginx:1.25", "nginx:1.26");
    let out = apply(&other, &["--field-manager=other"]);
    assert!(
        stderr(&out).contains(
            r#"conflict with "kubectl": .spec.template.spec.containers[name="nginx"].image"#
        ),
        "{}",
        stderr(&out)
    );

    // Fields dropped from the manifest leave the object.
    let smaller = three
        .replace(", tier: fe", "")
        .replace(r#", {name: B, value: "2"}"#, "");
    let out = apply(&smaller, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        get("deploy", "ssa", "{.metadata.labels}"),
        r#"{"app":"ssa"}"#
    );
    assert_eq!(
        get(
            "deploy",
            "ssa",
            "{.spec.template.spec.containers[0].env[*].name}"
        ),
        "A"
    );

    // A server dry run changes nothing.
    let out = apply(
        &smaller.replace("replicas: 3", "replicas: 4"),
        &["--dry-run=server"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get("deploy", "ssa", "{.spec.replicas}"), "3");

    // From client-side apply: kubectl takes over what it applied before,
    // another manager conflicts with kubectl-client-side-apply.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: csa}\ndata: {a: \"1\"}\n";
    s.apply(&ns, cm);
    let out = apply(&cm.replace(r#""1""#, r#""2""#), &["--field-manager=other"]);
    assert!(
        stderr(&out).contains(r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a"#),
        "{}",
        stderr(&out)
    );
    let out = apply(&cm.replace(r#""1""#, r#""2""#), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get("cm", "csa", "{.data.a}"), "2");
    let last = get(
        "cm",
        "csa",
        r"{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}",
    );
    assert!(last.contains(r#""data":{"a":"2"}"#), "{last}");
}

/// A config map owned by `owner` (blocking its deletion, as controllers set it).
fn dependent(s: &Server, ns: &str, owner: &str, name: &str) {
    let uid = s.ok(&[
        "get",
        "cm",
        owner,
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: {owner}, uid: {uid}, blockOwnerDeletion: true}}]\n"
    );
    s.apply(ns, &yaml);
}

/// The namespace's config maps but the CA every namespace has.
fn names(s: &Server, ns: &str) -> Vec<String> {
    s.ok(&[
        "get",
        "cm",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .filter(|n| *n != "kube-root-ca.crt")
    .map(String::from)
    .collect()
}

/// Waits (bounded) until the namespace's config maps are exactly `want`.
fn wait_names(s: &Server, ns: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = names(s, ns);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "config maps {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Cascading deletion through the garbage collector, and namespace deletion
/// through the namespace controller, as `kubectl delete` users see them.
fn cascades(s: &Server) {
    let ns = unique_ns("cascade");
    s.ok(&["create", "namespace", &ns]);
    for owner in ["bg", "or", "fg"] {
        s.ok(&["create", "configmap", owner, "-n", &ns]);
        dependent(s, &ns, owner, &format!("{owner}-a"));
        dependent(s, &ns, owner, &format!("{owner}-b"));
    }
    // Background (the default): the owner goes at once, dependents after.
    s.ok(&["delete", "cm", "bg", "-n", &ns]);
    wait_names(s, &ns, &["fg", "fg-a", "fg-b", "or", "or-a", "or-b"]);
    // Orphan: dependents stay, without the reference.
    s.ok(&["delete", "cm", "or", "-n", &ns, "--cascade=orphan"]);
    wait_names(s, &ns, &["fg", "fg-a", "fg-b", "or-a", "or-b"]);
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "or-a",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.ownerReferences}"
        ]),
        ""
    );
    // Foreground: by the time the owner is gone, so are its blocking dependents.
    s.ok(&["delete", "cm", "fg", "-n", &ns, "--cascade=foreground"]);
    assert_eq!(names(s, &ns), vec!["or-a", "or-b"]);

    // Deleting a namespace deletes its content, then the namespace; --wait returns then.
    s.ok(&["create", "deployment", "d", "-n", &ns, "--image=nginx"]);
    assert!(s
        .ok(&["delete", "namespace", &ns, "--wait"])
        .contains("deleted"));
    assert!(s.fails(&["get", "namespace", &ns]).contains("NotFound"));
    assert!(s
        .fails(&["create", "configmap", "late", "-n", &ns])
        .contains("not found"));
}

#[test]
fn kubectl_cascading_and_namespace_deletion() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let s = Server::start(None);
    cascades(&s);
}

#[test]
fn kubectl_server_side_apply() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let s = Server::start(None);
    server_side_apply(&s);
}

/// `kubectl create token`: a service account's token authenticates as it,
/// until the account is deleted; what TokenRequest refuses, upstream's way.
#[test]
fn kubectl_create_token() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let s = Server::start(None);
    let ns = unique_ns("token");
    s.ok(&["create", "namespace", &ns]);
    s.ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let token = s
        .ok(&["create", "token", "bot", "-n", &ns])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let with_token = |token: &str, args: &[&str]| s.kubectl_as_token(token, args);
    let out = with_token(
        &token,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
    );
    let who = String::from_utf8_lossy(&out.stdout);
    assert!(
        who.contains(&format!("\"username\":\"system:serviceaccount:{ns}:bot\"")),
        "{who}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        who.contains(&format!("system:serviceaccounts:{ns}")),
        "{who}"
    );
    // It may read nothing until a binding says so.
    let out = with_token(&token, &["get", "serviceaccounts", "-n", &ns]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("serviceaccounts is forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&[
        "create",
        "rolebinding",
        "bot-view",
        "--clusterrole=view",
        &format!("--serviceaccount={ns}:bot"),
        "-n",
        &ns,
    ]);
    common::kubectl_until(
        &s,
        "the binding takes effect",
        &[
            "auth",
            "can-i",
            "list",
            "serviceaccounts",
            "-n",
            &ns,
            "--as",
            &format!("system:serviceaccount:{ns}:bot"),
        ],
        |o| o.trim() == "yes",
    );
    assert!(with_token(&token, &["get", "serviceaccounts", "-n", &ns])
        .status
        .success());
    // Altered, it is nobody's.
    let forged = format!("{}x", token);
    let out = with_token(&forged, &["get", "pods", "-n", &ns]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));

    // Bound to a pod: its uid is checked; a pod that is not there is a 404.
    let e = s.fails(&[
        "create",
        "token",
        "bot",
        "-n",
        &ns,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "nope",
    ]);
    assert!(e.contains("pods \"nope\" not found"), "{e}");
    let e = s.fails(&["create", "token", "nobody", "-n", &ns]);
    assert!(e.contains("serviceaccounts \"nobody\" not found"), "{e}");
    let e = s.fails(&["create", "token", "bot", "-n", &ns, "--duration", "5m"]);
    assert!(
        e.contains("may not specify a duration less than 10 minutes"),
        "{e}"
    );

    // The account deleted (and made again, with another uid): the old token stops working.
    s.ok(&["delete", "serviceaccount", "bot", "-n", &ns]);
    s.ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let out = with_token(&token, &["get", "pods", "-n", &ns]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
}

#[test]
fn kubectl_against_embedded_store() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let s = Server::start(None);
    scenario(&s);
}

#[test]
fn kubectl_against_etcd() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let Some(ep) = etcd() else {
        eprintln!("SKIFF_TEST_ETCD not set: skipped");
        return;
    };
    // A fixed token: the CA sealed in this etcd by an earlier run opens.
    let s = Server::start_with(Some(ep), &["--token", "skiff-kubectl-etcd"]);
    scenario(&s);
}

#[test]
fn objects_survive_kill_9() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let mut s = Server::start(None);
    let ns = unique_ns("durable");
    s.ok(&["create", "namespace", &ns]);
    for i in 0..20 {
        s.ok(&[
            "create",
            "configmap",
            &format!("c{i}"),
            "-n",
            &ns,
            &format!("--from-literal=i={i}"),
        ]);
    }
    s.restart();
    let names = s.ok(&["get", "cm", "-n", &ns, "-o", "name"]);
    for i in 0..20 {
        assert!(
            names.contains(&format!("configmap/c{i}\n")),
            "c{i} lost after kill -9: {names}"
        );
    }
    assert_eq!(
        s.ok(&["get", "cm", "c7", "-n", &ns, "-o", "jsonpath={.data.i}"]),
        "7"
    );
}

/// Every namespace gets ConfigMap kube-root-ca.crt with the cluster CA,
/// put back when changed or deleted; every pod gets the kube-api-access
/// volume unless it or its account opts out or it mounts that path itself.
#[test]
fn service_account_volume_and_root_ca() {
    let Some((s, ns)) = server_and_namespace("apiaccess") else {
        return;
    };
    let ca = std::fs::read_to_string(s.dir.path().join("server/tls/ca.crt")).unwrap();
    let get_ca = [
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        &ns,
        "-o",
        "json",
    ];
    let holds_ca = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|cm| cm["data"]["ca.crt"].as_str() == Some(ca.as_str()))
    };
    let cm: serde_json::Value =
        serde_json::from_str(&kubectl_until(&s, "the CA published", &get_ca, holds_ca)).unwrap();
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"]
        .as_str()
        .unwrap()
        .starts_with("Contains a CA bundle"));
    s.ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        &ns,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"ca.crt":"forged"}}"#,
    ]);
    kubectl_until(&s, "the CA put back", &get_ca, holds_ca);
    s.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", &ns]);
    kubectl_until(&s, "the CA published again", &get_ca, holds_ca);

    s.apply(
        &ns,
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: quiet}
automountServiceAccountToken: false
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  initContainers: [{name: init, image: busybox}]
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec:
  serviceAccountName: quiet
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: loud}
spec:
  serviceAccountName: quiet
  automountServiceAccountToken: true
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: own}
spec:
  containers:
  - name: c
    image: busybox
    volumeMounts: [{name: mine, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
  volumes: [{name: mine, emptyDir: {}}]
"#,
    );
    let spec = |pod: &str| -> serde_json::Value { get_json(&s, "pod", pod, &ns)["spec"].clone() };
    let volume_names = |spec: &serde_json::Value| -> Vec<String> {
        spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    let plain = spec("plain");
    let names = volume_names(&plain);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("kube-api-access-"), "{names:?}");
    assert_eq!(plain["serviceAccountName"], "default");
    for list in ["initContainers", "containers"] {
        assert_eq!(
            plain[list][0]["volumeMounts"],
            serde_json::json!([{"name": names[0], "readOnly": true,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
            "{list}"
        );
    }
    let described = s.ok(&["describe", "pod", "plain", "-n", &ns]);
    assert!(
        described.contains("TokenExpirationSeconds:  3607")
            && described.contains("ConfigMapName:           kube-root-ca.crt"),
        "{described}"
    );
    assert!(
        volume_names(&spec("quiet")).is_empty(),
        "the account opts out"
    );
    assert_eq!(volume_names(&spec("loud")).len(), 1, "the pod opts back in");
    assert_eq!(
        volume_names(&spec("own")),
        ["mine"],
        "its own mount is kept"
    );
}

/// Whether `want` is found in `got`: every key of an object, every element
/// of a list (same length), every scalar equal. Defaults may add fields.
fn contained(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contained(v, gv))),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| contained(a, b))
        }
        _ => want == got,
    }
}

/// The `kubectl create <kind>` commands that send protobuf bodies: each
/// object is stored as kubectl meant it (what `--dry-run=client` prints).
#[test]
fn kubectl_create_every_kind_it_makes() {
    let Some((s, ns)) = server_and_namespace("create") else {
        return;
    };
    let (cr, crb, pc) = (format!("cr-{ns}"), format!("crb-{ns}"), format!("pc-{ns}"));
    let commands: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "role",
            "reader",
            vec!["--verb=get,list", "--resource=pods,deployments.apps"],
        ),
        (
            "rolebinding",
            "rb",
            vec![
                "--role=reader",
                "--user=bob",
                "--serviceaccount=default:bot",
            ],
        ),
        (
            "clusterrole",
            &cr,
            vec!["--verb=get", "--resource=nodes", "--resource-name=n1"],
        ),
        (
            "clusterrolebinding",
            &crb,
            vec!["--clusterrole=view", "--group=devs"],
        ),
        (
            "quota",
            "q",
            vec![
                "--hard=pods=10,requests.cpu=1,limits.memory=1Gi",
                "--scopes=NotBestEffort",
            ],
        ),
        (
            "priorityclass",
            &pc,
            vec![
                "--value=1000",
                "--description=mine",
                "--preemption-policy=Never",
            ],
        ),
        (
            "poddisruptionbudget",
            "pdb",
            vec!["--selector=app=web", "--min-available=50%"],
        ),
        (
            "ingress",
            "ing",
            vec![
                "--rule=foo.com/bar*=svc1:8080,tls=my-cert",
                "--class=nginx",
                "--annotation=a=b",
            ],
        ),
    ];
    for (kind, name, flags) in &commands {
        let mut args = vec!["create", kind, name, "-n", &ns];
        args.extend(flags.iter().copied());
        let mut dry = args.clone();
        dry.extend(["--dry-run=client", "-o", "json"]);
        let mut want: serde_json::Value = serde_json::from_str(&s.ok(&dry)).unwrap();
        let m = want.as_object_mut().unwrap();
        m.remove("status");
        m["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("creationTimestamp");
        s.ok(&args);
        let got = get_json(&s, kind, name, &ns);
        assert!(
            contained(&want, &got),
            "{kind}: sent {want:#}\nstored {got:#}"
        );
    }
    for (kind, name) in [
        ("clusterrole", &cr),
        ("clusterrolebinding", &crb),
        ("priorityclass", &pc),
    ] {
        s.ok(&["delete", kind, name]);
    }
}

/// `/livez`, `/readyz` and `/healthz` run their checks, list them when
/// asked, skip excluded ones, and serve each alone.
#[test]
fn health_endpoints_list_their_checks() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let s = Server::start(None);
    assert_eq!(s.ok(&["get", "--raw", "/readyz"]), "ok");
    let verbose = s.ok(&["get", "--raw", "/readyz?verbose"]);
    assert_eq!(
        verbose,
        "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]informer-sync ok\nreadyz check passed\n"
    );
    let excluded = s.ok(&["get", "--raw", "/livez?verbose&exclude=etcd"]);
    assert!(excluded.contains("[+]etcd excluded: ok\n"), "{excluded}");
    assert_eq!(s.ok(&["get", "--raw", "/livez/etcd"]), "ok");
    let e = s.fails(&["get", "--raw", "/livez/nope"]);
    assert!(e.contains("NotFound"), "{e}");
}

/// An update is defaulted as a create is: a Deployment replaced without
/// its strategy gets upstream's RollingUpdate back.
#[test]
fn replace_gets_the_defaults_again() {
    let Some((s, ns)) = server_and_namespace("defaults") else {
        return;
    };
    s.ok(&["create", "deployment", "web", "--image=busybox", "-n", &ns]);
    let mut d = get_json(&s, "deploy", "web", &ns);
    d["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    d["spec"].as_object_mut().unwrap().remove("strategy");
    d["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("restartPolicy");
    // kubectl replace reads the current resourceVersion itself, and the
    // deployment controller may write status before the PUT: a 409 then,
    // as upstream answers, and a user runs it again.
    for attempt in 1.. {
        let out = s.kubectl_stdin(&["replace", "-n", &ns, "-f", "-"], &d.to_string());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            break;
        }
        assert!(attempt < 10 && stderr.contains("Conflict"), "{stderr}");
    }
    let got = s.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.strategy} {.spec.template.spec.restartPolicy}",
    ]);
    assert_eq!(
        got,
        r#"{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"},"type":"RollingUpdate"} Always"#
    );
}

/// Events recorded through events.k8s.io read as upstream's in core/v1,
/// with the timestamps they lack as nulls: `kubectl get events
/// --sort-by=.lastTimestamp` lists them.
#[test]
fn events_sort_by_last_timestamp() {
    let Some((s, ns)) = server_and_namespace("events") else {
        return;
    };
    s.apply(
        &ns,
        r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: e1}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: me
reportingInstance: me-1
action: Poke
reason: Poked
type: Normal
note: hello
regarding: {kind: Pod, name: p, namespace: default}
"#,
    );
    let sorted = s.ok(&["get", "events", "-n", &ns, "--sort-by=.lastTimestamp"]);
    assert!(sorted.contains("Poked"), "{sorted}");
    let core = get_json(&s, "events", "e1", &ns);
    assert_eq!(core["lastTimestamp"], serde_json::Value::Null);
    assert!(core.as_object().unwrap().contains_key("lastTimestamp"));
    assert_eq!(core["source"], serde_json::json!({}));
}

/// LimitRanges: items get upstream's defaults, pods the container defaults
/// they lack (noted in an annotation), and what breaks a bound is refused
/// with upstream's words.
#[test]
fn limit_ranges_default_and_bound_pods_and_claims() {
    let Some((s, ns)) = server_and_namespace("limits") else {
        return;
    };
    s.apply(
        &ns,
        r#"
apiVersion: v1
kind: LimitRange
metadata: {name: lr}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 250m}
    max: {cpu: "1"}
    min: {memory: 32Mi}
  - type: PersistentVolumeClaim
    max: {storage: 1Gi}
"#,
    );
    let lr = get_json(&s, "limitrange", "lr", &ns);
    assert_eq!(
        lr["spec"]["limits"][0]["defaultRequest"],
        serde_json::json!({"cpu": "250m", "memory": "128Mi"}),
        "the default request falls back to the default limit"
    );

    s.ok(&["run", "p1", "--image=busybox", "-n", &ns]);
    let p1 = get_json(&s, "pod", "p1", &ns);
    assert_eq!(
        p1["spec"]["containers"][0]["resources"],
        serde_json::json!({"limits": {"cpu": "500m", "memory": "128Mi"},
                           "requests": {"cpu": "250m", "memory": "128Mi"}})
    );
    assert_eq!(
        p1["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container p1; cpu, memory limit for container p1"
    );
    assert_eq!(p1["status"]["qosClass"], "Burstable");

    let out = s.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: c
    image: busybox
    resources: {limits: {cpu: "2", memory: 16Mi}}
"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods \"big\" is forbidden: [")
            && err.contains("maximum cpu usage per Container is 1, but limit is 2")
            && err.contains("minimum memory usage per Container is 32Mi, but request is 16Mi"),
        "{err}"
    );
    let out = s.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("persistentvolumeclaims \"claim\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"),
        "{err}"
    );
}

/// ResourceQuotas: the controller fills in what each limits and what is
/// used, creates are charged and refused over the limit in upstream's
/// words, and a deletion gives back what it took.
#[test]
fn resource_quotas_count_charge_and_refuse() {
    let Some((s, ns)) = server_and_namespace("quota") else {
        return;
    };
    s.ok(&[
        "create",
        "quota",
        "q",
        "-n",
        &ns,
        "--hard=pods=2,requests.cpu=1,count/deployments.apps=0",
    ]);
    let used = |what: &str| {
        let path = format!("jsonpath={{.status.used.{what}}}");
        s.ok(&["get", "quota", "q", "-n", &ns, "-o", &path])
    };
    kubectl_until(
        &s,
        "the quota's status",
        &[
            "get",
            "quota",
            "q",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.hard.pods}/{.status.used.pods}",
        ],
        |t| t == "2/0",
    );
    let pod = |name: &str, cpu: Option<&str>| {
        let resources = cpu.map_or(String::new(), |c| {
            format!("\n    resources: {{requests: {{cpu: {c}}}}}")
        });
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    image: busybox{resources}\n"
        )
    };
    let create = |yaml: String| s.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], &yaml);
    let refused = |yaml: String| String::from_utf8_lossy(&create(yaml).stderr).into_owned();

    let e = refused(pod("bare", None));
    assert!(
        e.contains("pods \"bare\" is forbidden: failed quota: q: must specify requests.cpu for: c"),
        "{e}"
    );
    assert!(create(pod("p1", Some("600m"))).status.success());
    assert_eq!(used("requests\\.cpu"), "600m");
    let e = refused(pod("p2", Some("600m")));
    assert!(
        e.contains("exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"),
        "{e}"
    );
    assert!(create(pod("p2", Some("300m"))).status.success());
    let e = refused(pod("p3", Some("100m")));
    assert!(
        e.contains("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{e}"
    );
    let e = s.fails(&["create", "deployment", "web", "--image=busybox", "-n", &ns]);
    assert!(
        e.contains("exceeded quota: q, requested: count/deployments.apps=1"),
        "{e}"
    );

    // A deleted pod gives back what it took.
    s.ok(&[
        "delete",
        "pod",
        "p1",
        "-n",
        &ns,
        "--grace-period=0",
        "--force",
    ]);
    kubectl_until(
        &s,
        "the quota recounted",
        &[
            "get",
            "quota",
            "q",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.used.pods} {.status.used.requests\\.cpu}",
        ],
        |t| t == "1 300m",
    );
    let described = s.ok(&["describe", "quota", "q", "-n", &ns]);
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["requests.cpu", "300m", "1"]),
        "{described}"
    );
}
