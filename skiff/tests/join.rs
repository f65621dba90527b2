//! Nodes joining with the server's token: the agent checks the server's CA
//! against the token, gets a `system:node:<name>` certificate for its own
//! key, keeps it for its next start and renews it with itself; a token for
//! another CA or with a wrong secret joins nothing.

mod common;

use common::{eventually, Server, Spawned};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `skiff agent --simulate` joining `server` with `token`.
fn join(server: &Server, token: &str, data_dir: &Path, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.args(["agent", "--simulate", "--name-prefix", prefix])
        .arg("--server")
        .arg(format!("https://127.0.0.1:{}", server.port))
        .arg("--token")
        .arg(token)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null());
    cmd
}

/// `kubectl auth whoami` with the node's kubeconfig, printed by `jsonpath`.
fn whoami(kubeconfig: &Path, dir: &Path, jsonpath: &str) -> String {
    let out = common::kubectl_with(
        kubeconfig,
        &dir.join("cache"),
        &["auth", "whoami", "-o", &format!("jsonpath={jsonpath}")],
        None,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a join that must fail; returns what it printed.
fn refused(mut cmd: Command) -> String {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .expect("run skiff agent");
    assert!(!out.status.success(), "joined although it must not");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_join_with_the_token() {
    let s = Server::start(None);
    let token = std::fs::read_to_string(s.dir.path().join("server/node-token")).unwrap();
    let token = token.trim();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    let secret = token.rsplit(':').next().unwrap();

    let data = tempfile::tempdir().unwrap();
    let agent = Spawned(
        join(&s, token, data.path(), "joined")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c = s.client().await;
    let nodes: Api<Node> = Api::all(c.clone());
    eventually("the joined node", 30, async || {
        nodes.get_opt("joined-0").await.unwrap().is_some()
    })
    .await;
    // The node's own identity, in a kubeconfig kept for its next start.
    let kc = data.path().join("agent/node.kubeconfig");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kc).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Who the API server says it is.
    let who = whoami(
        &kc,
        data.path(),
        "{.status.userInfo.username} {.status.userInfo.groups}",
    );
    assert!(who.starts_with("system:node:joined "), "{who}");
    assert!(who.contains("system:nodes"), "{who}");
    drop(agent);

    // Renewal: the node's certificate is the credential; a new one for a
    // new key replaces it and works; another node's cannot be had this way.
    let before = std::fs::read_to_string(&kc).unwrap();
    skiff_agent::join::renew(&kc, "joined").await.unwrap();
    let after = std::fs::read_to_string(&kc).unwrap();
    assert_ne!(before, after, "a new certificate");
    assert_eq!(
        whoami(&kc, data.path(), "{.status.userInfo.username}"),
        "system:node:joined"
    );
    let err = skiff_agent::join::renew(&kc, "someone-else")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403"), "{err}");

    // A token for another CA: the agent does not trust this server.
    let other = format!("K10{}::server:{secret}", "0".repeat(64));
    let fresh = tempfile::tempdir().unwrap();
    let err = refused(join(&s, &other, fresh.path(), "evil"));
    assert!(err.contains("does not match the token"), "{err}");
    // The right CA with a wrong secret: refused by the server.
    let hash = &token[3..67];
    let wrong = format!("K10{hash}::server:wrong");
    let err = refused(join(&s, &wrong, fresh.path(), "evil"));
    assert!(err.contains("401"), "{err}");
    assert!(!fresh.path().join("agent/node.kubeconfig").exists());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(nodes.get_opt("evil-0").await.unwrap().is_none());
}
