//! RBAC with the real kubectl: the bootstrap roles and bindings are there;
//! a service account may do nothing but discovery and reviews until a
//! binding grants it a role, and then exactly what the role says, in the
//! binding's namespace; denials are upstream's 403; access and rules
//! reviews answer truly; aggregated roles take in labelled roles; no one
//! grants what they do not hold; a node reads only the secrets of the pods
//! bound to it.

mod common;

use common::{kubectl_until, server_and_namespace, Server};
use std::process::Output;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl auth can-i` as the token's holder: its "yes" or "no".
fn can_i(s: &Server, token: &str, args: &[&str]) -> String {
    let out = s.kubectl_as_token(token, &[&["auth", "can-i"][..], args].concat());
    // "no - <reason>" when the authorizer gave one.
    text(&out)
        .0
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn service_accounts_get_what_their_bindings_grant() {
    let Some((s, ns)) = server_and_namespace("rbac") else {
        return;
    };
    // The bootstrap policy.
    for (kind, name) in [
        ("clusterrole", "cluster-admin"),
        ("clusterrole", "view"),
        ("clusterrole", "system:node"),
        ("clusterrolebinding", "system:basic-user"),
        ("clusterrolebinding", "system:kube-scheduler"),
    ] {
        s.ok(&["get", kind, name]);
    }
    let view = s.ok(&["get", "clusterrole", "view", "-o", "json"]);
    assert!(view.contains("\"aggregationRule\""), "{view}");
    assert!(
        view.contains("\"pods/log\""),
        "view is aggregated from system:aggregate-to-view: {view}"
    );

    s.ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let token = s
        .ok(&["create", "token", "bot", "-n", &ns])
        .trim()
        .to_string();
    let bot = format!("system:serviceaccount:{ns}:bot");

    // A TokenReview says whose the token is, for the audiences asked about.
    let review = |token: &str, audiences: &str| {
        let body = format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  audiences: {audiences}\n"
        );
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &body);
        let (out, err) = text(&out);
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|_| panic!("{out}{err}"))
    };
    let reviewed = review(&token, "[]");
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
    assert_eq!(reviewed["status"]["user"]["username"], bot.as_str());
    assert_eq!(
        reviewed["status"]["audiences"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let elsewhere = review(&token, "[other]");
    assert_eq!(elsewhere["status"]["authenticated"], false, "{elsewhere}");
    let forged = review(&format!("{token}x"), "[]");
    assert_eq!(forged["status"]["authenticated"], false, "{forged}");
    assert_eq!(forged["status"]["error"], "invalid bearer token");

    // Nothing granted: discovery and reviews only.
    let (_, err) = text(&s.kubectl_as_token(&token, &["get", "pods", "-n", &ns]));
    assert!(
        err.contains(&format!(
            "pods is forbidden: User \"{bot}\" cannot list resource \"pods\" in API group \"\" in the namespace \"{ns}\""
        )),
        "{err}"
    );
    assert_eq!(can_i(&s, &token, &["list", "pods", "-n", &ns]), "no");
    let (who, err) = text(&s.kubectl_as_token(
        &token,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    ));
    assert_eq!(who, bot, "{err}");
    let (_, err) = text(&s.kubectl_as_token(&token, &["get", "nodes"]));
    assert!(
        err.contains(&format!("nodes is forbidden: User \"{bot}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope")),
        "{err}"
    );

    // view in the namespace: reads there, no writes, no secrets, nothing elsewhere.
    s.ok(&[
        "create",
        "rolebinding",
        "bot-view",
        "--clusterrole=view",
        &format!("--serviceaccount={ns}:bot"),
        "-n",
        &ns,
    ]);
    kubectl_until(
        &s,
        "the binding takes effect",
        &["auth", "can-i", "list", "pods", "-n", &ns, "--as", &bot],
        |o| o.trim() == "yes",
    );
    let (out, err) =
        text(&s.kubectl_as_token(&token, &["get", "serviceaccounts", "-n", &ns, "-o", "name"]));
    assert!(out.contains("serviceaccount/bot"), "{out}{err}");
    assert_eq!(can_i(&s, &token, &["get", "pods/log", "-n", &ns]), "yes");
    assert_eq!(
        can_i(&s, &token, &["create", "deployments.apps", "-n", &ns]),
        "no"
    );
    assert_eq!(can_i(&s, &token, &["get", "secrets", "-n", &ns]), "no");
    assert_eq!(can_i(&s, &token, &["list", "pods", "-n", "default"]), "no");
    let (_, err) = text(&s.kubectl_as_token(&token, &["create", "configmap", "c", "-n", &ns]));
    assert!(err.contains("configmaps is forbidden"), "{err}");
    let (list, _) = text(&s.kubectl_as_token(&token, &["auth", "can-i", "--list", "-n", &ns]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{list}"
    );
    // Admins are asked about others with impersonation.
    assert_eq!(
        s.ok(&[
            "auth",
            "can-i",
            "watch",
            "deployments.apps",
            "-n",
            &ns,
            "--as",
            &bot
        ])
        .trim(),
        "yes"
    );
    let e = s.fails(&["auth", "can-i", "delete", "pods", "-n", &ns, "--as", &bot]);
    assert!(e.is_empty() || e.contains("no"), "{e}");

    // A role of its own, by name.
    s.ok(&[
        "create",
        "role",
        "one-map",
        "--verb=get,update",
        "--resource=configmaps",
        "--resource-name=settings",
        "-n",
        &ns,
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "bot-one-map",
        "--role=one-map",
        &format!("--serviceaccount={ns}:bot"),
        "-n",
        &ns,
    ]);
    s.ok(&["create", "configmap", "settings", "-n", &ns]);
    kubectl_until(
        &s,
        "the role takes effect",
        &[
            "auth",
            "can-i",
            "update",
            "configmap/settings",
            "-n",
            &ns,
            "--as",
            &bot,
        ],
        |o| o.trim() == "yes",
    );
    assert_eq!(
        can_i(&s, &token, &["update", "configmap/other", "-n", &ns]),
        "no"
    );
    let (_, err) = text(&s.kubectl_as_token(
        &token,
        &["label", "configmap", "settings", "a=b", "-n", &ns],
    ));
    assert!(
        err.contains("cannot patch resource \"configmaps\""),
        "patch is not update: {err}"
    );

    // A binding to a role that is not there says so in the denial.
    s.ok(&[
        "create",
        "rolebinding",
        "dangling",
        "--role=gone",
        &format!("--serviceaccount={ns}:bot"),
        "-n",
        &ns,
    ]);
    kubectl_until(
        &s,
        "the dangling binding is seen",
        &["get", "rolebinding", "dangling", "-n", &ns],
        |_| true,
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (_, err) =
        text(&s.kubectl_as_token(&token, &["delete", "configmap", "settings", "-n", &ns]));
    assert!(
        err.contains("RBAC: role.rbac.authorization.k8s.io \"gone\" not found"),
        "{err}"
    );

    // A labelled ClusterRole joins the aggregated view role.
    s.apply(
        &ns,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: view-secrets
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
"#,
    );
    kubectl_until(
        &s,
        "view takes in secrets",
        &["get", "clusterrole", "view", "-o", "json"],
        |o| o.contains("\"secrets\""),
    );
    assert_eq!(can_i(&s, &token, &["get", "secrets", "-n", &ns]), "yes");

    // A namespace admin grants what it holds, and nothing more.
    s.ok(&["create", "serviceaccount", "lead", "-n", &ns]);
    let lead_token = s
        .ok(&["create", "token", "lead", "-n", &ns])
        .trim()
        .to_string();
    let lead = format!("system:serviceaccount:{ns}:lead");
    s.ok(&[
        "create",
        "rolebinding",
        "lead-admin",
        "--clusterrole=admin",
        &format!("--serviceaccount={ns}:lead"),
        "-n",
        &ns,
    ]);
    kubectl_until(
        &s,
        "lead is admin",
        &["auth", "can-i", "create", "roles", "-n", &ns, "--as", &lead],
        |o| o.trim() == "yes",
    );
    let as_lead = |args: &[&str]| text(&s.kubectl_as_token(&lead_token, args));
    let (out, err) = as_lead(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        &ns,
    ]);
    assert!(out.contains("created"), "{out}{err}");
    let (out, err) = as_lead(&[
        "create",
        "rolebinding",
        "bot-edit",
        "--clusterrole=edit",
        &format!("--serviceaccount={ns}:bot"),
        "-n",
        &ns,
    ]);
    assert!(out.contains("created"), "edit is within admin: {out}{err}");
    let (_, err) = as_lead(&[
        "create",
        "role",
        "nodes",
        "--verb=get",
        "--resource=nodes",
        "-n",
        &ns,
    ]);
    assert!(
        err.contains(&format!(
            "roles.rbac.authorization.k8s.io \"nodes\" is forbidden: user \"{lead}\""
        )),
        "{err}"
    );
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}"),
        "{err}"
    );
    let (_, err) = as_lead(&[
        "create",
        "rolebinding",
        "lead-all",
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={ns}:lead"),
        "-n",
        &ns,
    ]);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // Nothing was half-written.
    s.fails(&["get", "role", "nodes", "-n", &ns]);
    s.fails(&["get", "rolebinding", "lead-all", "-n", &ns]);
    // With `bind` on cluster-admin it may.
    s.ok(&[
        "create",
        "clusterrole",
        "bind-cluster-admin",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=cluster-admin",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "lead-bind",
        "--clusterrole=bind-cluster-admin",
        &format!("--serviceaccount={ns}:lead"),
        "-n",
        &ns,
    ]);
    kubectl_until(
        &s,
        "lead may bind",
        &[
            "auth",
            "can-i",
            "bind",
            "clusterroles/cluster-admin",
            "-n",
            &ns,
            "--as",
            &lead,
        ],
        |o| o.trim() == "yes",
    );
    let (out, err) = as_lead(&[
        "create",
        "rolebinding",
        "lead-all",
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={ns}:lead"),
        "-n",
        &ns,
    ]);
    assert!(out.contains("created"), "{out}{err}");
}

/// A node reads a secret only while a pod bound to it uses the secret; it
/// uses its own Lease, and what `system:node` grants; it writes only its
/// own Node and deletes only its own pods (NodeRestriction).
#[test]
fn nodes_read_only_what_their_pods_use() {
    let Some((s, ns)) = server_and_namespace("noderbac") else {
        return;
    };
    s.ok(&[
        "create",
        "secret",
        "generic",
        "used",
        "--from-literal=a=b",
        "-n",
        &ns,
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "unused",
        "--from-literal=a=b",
        "-n",
        &ns,
    ]);
    s.apply(
        &ns,
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    env:
    - name: A
      valueFrom:
        secretKeyRef: {name: used, key: a}
"#,
    );
    let node = ["--as", "system:node:n1", "--as-group", "system:nodes"];
    let other = ["--as", "system:node:n2", "--as-group", "system:nodes"];
    let can = |who: &[&str], what: &[&str]| {
        let out = s.kubectl(&[&["auth", "can-i"][..], what, who].concat());
        // "no - <reason>" when the authorizer gave one.
        text(&out)
            .0
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(can(&node, &["get", "secret/used", "-n", &ns]), "yes");
    assert_eq!(can(&node, &["get", "secret/unused", "-n", &ns]), "no");
    assert_eq!(can(&other, &["get", "secret/used", "-n", &ns]), "no");
    assert_eq!(can(&node, &["list", "secrets", "-n", &ns]), "no");
    assert_eq!(
        can(&node, &["update", "leases/n1", "-n", "kube-node-lease"]),
        "yes"
    );
    assert_eq!(
        can(&node, &["update", "leases/n2", "-n", "kube-node-lease"]),
        "no"
    );
    assert_eq!(can(&node, &["list", "pods", "-A"]), "yes");
    assert_eq!(
        can(&node, &["patch", "pods", "--subresource=status", "-n", &ns]),
        "yes"
    );
    assert_eq!(can(&node, &["delete", "deployments.apps", "-n", &ns]), "no");
    // The denial says why.
    let out = s.kubectl(&[&["get", "secret", "unused", "-n", &ns][..], &node].concat());
    let (_, err) = text(&out);
    assert!(
        err.contains("no relationship found between node 'n1' and this object"),
        "{err}"
    );

    // NodeRestriction: a node writes itself and its own pods only.
    for n in ["n1", "n2"] {
        s.apply(
            &ns,
            &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n"),
        );
    }
    let as_node = |who: &[&str], args: &[&str]| text(&s.kubectl(&[args, who].concat()));
    let (out, err) = as_node(&node, &["label", "node", "n1", "zone=a"]);
    assert!(out.contains("labeled"), "{out}{err}");
    let (_, err) = as_node(&node, &["label", "node", "n2", "zone=a"]);
    assert!(
        err.contains("nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""),
        "{err}"
    );
    let (_, err) = as_node(&node, &["taint", "node", "n1", "k=v:NoSchedule"]);
    assert!(
        err.contains("node \"n1\" is not allowed to modify taints"),
        "{err}"
    );
    let (out, err) = as_node(
        &node,
        &[
            "create",
            "token",
            "default",
            "-n",
            &ns,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p",
        ],
    );
    assert_eq!(
        out.trim().split('.').count(),
        3,
        "a token for its pod: {out}{err}"
    );
    let (_, err) = as_node(&node, &["create", "token", "default", "-n", &ns]);
    assert!(
        err.contains("node requested token not bound to a pod"),
        "{err}"
    );
    let (_, err) = as_node(&other, &["delete", "pod", "p", "-n", &ns]);
    assert!(err.contains("pods \"p\" is forbidden: node \"n2\" can only delete pods with spec.nodeName set to itself"), "{err}");
    // Its DNS server's EndpointSlice of kube-dns, and no other.
    let slice = |n: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: kube-dns-{n}\n  namespace: kube-system\naddressType: IPv4\nendpoints: []\n")
    };
    let (out, err) = text(&s.kubectl_stdin(
        &[&["apply", "--server-side", "-f", "-"][..], &node].concat(),
        &slice("n1"),
    ));
    assert!(out.contains("serverside-applied"), "{out}{err}");
    let (_, err) = text(&s.kubectl_stdin(
        &[&["apply", "--server-side", "-f", "-"][..], &node].concat(),
        &slice("n2"),
    ));
    assert!(
        err.contains("may only write its own DNS server's EndpointSlice"),
        "{err}"
    );
    let (out, err) = as_node(&node, &["delete", "pod", "p", "-n", &ns, "--wait=false"]);
    assert!(out.contains("deleted"), "{out}{err}");
}
