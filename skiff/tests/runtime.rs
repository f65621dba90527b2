//! The container runtime on its own, with real runc: a sandbox's
//! namespaces, an overlay root filesystem, containers started through the
//! shim (`skiff-shim`, and `skiff shim`), output in a CRI log file, the
//! exit status, SIGTERM, and nothing left behind. Needs root and runc; skipped otherwise.

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_agent::runtime::bundle::{self, BundleInput, ImageDefaults};
use skiff_agent::runtime::container::{new_id, ContainerMeta, State};
use skiff_agent::runtime::sandbox::Sandbox;
use skiff_agent::runtime::{shim, Dirs, Runtime};
use skiff_agent::stats::cgroup::{flat_keyed, Hierarchy};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let runc = std::process::Command::new("runc")
        .arg("--version")
        .output()
        .is_ok();
    let busybox = Path::new("/bin/busybox").exists();
    if !(root && runc && busybox) {
        eprintln!("skipping: needs root, runc and /bin/busybox (busybox-static)");
    }
    root && runc && busybox
}

/// The clean page cache charged to the memory cgroup at `rel` (v2 or v1):
/// what reclaim can give back at once (dirty pages wait for writeback).
fn clean_page_cache_bytes(rel: &str) -> Option<u64> {
    let hierarchy = Hierarchy::detect();
    let keys = match hierarchy {
        Hierarchy::V2(_) => ["file", "file_dirty", "file_writeback"],
        Hierarchy::V1(_) => ["cache", "dirty", "writeback"],
    };
    let text = std::fs::read_to_string(hierarchy.memory_dir(rel).join("memory.stat")).ok()?;
    let stat = flat_keyed(&text);
    let value = |key: &str| stat.get(key).copied();
    Some(value(keys[0])?.saturating_sub(value(keys[1])? + value(keys[2])?))
}

/// A one-layer "image": busybox and its applets.
fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    // Out of the page cache, so the first container to run it reads it in.
    let copy = std::fs::File::open(layer.join("bin/busybox")).unwrap();
    copy.sync_all().unwrap();
    // SAFETY: advice on a file this function holds open.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::posix_fadvise(copy.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    for applet in ["sh", "echo", "sleep", "cat", "hostname", "trap"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(layer.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    layer
}

struct Cleanup {
    rt: Runtime,
    sandbox: Sandbox,
    ids: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Synchronous: this may run while the test's runtime unwinds.
        for id in &self.ids {
            let runc = |args: &[&str]| {
                let _ = std::process::Command::new("runc")
                    .arg("--root")
                    .arg(&self.rt.runtime_root)
                    .args(args)
                    .output();
            };
            runc(&["kill", id, "SIGKILL"]);
            runc(&["delete", "--force", id]);
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.rt.rootfs(id))
                .output();
        }
        let _ = self.sandbox.destroy();
        skiff_agent::runtime::cgroups::remove_pod("test-pod-uid");
    }
}

#[tokio::test]
async fn runs_a_container_through_the_shim() {
    if !usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = busybox_layer(dir.path());
    let dirs = Dirs::new(dir.path(), dir.path().join("logs"));
    let mut rt = Runtime::new(dirs, PathBuf::from("runc")).unwrap();
    // Shims are the small program built beside skiff; the long runner
    // below goes through `skiff shim`, what a lone skiff binary runs.
    let skiff = PathBuf::from(env!("CARGO_BIN_EXE_skiff"));
    rt.shim_exe = shim::program(&skiff);
    assert_eq!(rt.shim_exe, PathBuf::from(env!("CARGO_BIN_EXE_skiff-shim")));
    let mut via_skiff = rt.clone();
    via_skiff.shim_exe = skiff.clone();
    let sandbox = Sandbox::at(rt.dirs.pods.join("test-pod-uid"));
    let mut cleanup = Cleanup {
        rt: rt.clone(),
        sandbox: sandbox.clone(),
        ids: vec![],
    };

    sandbox.create("hello-pod").unwrap();
    assert!(sandbox.exists());
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hello-pod", "namespace": "default", "uid": "test-pod-uid"},
        "spec": {"containers": []},
    }))
    .unwrap();
    let dns = skiff_agent::runtime::sandbox::Dns {
        cluster_dns: vec!["10.43.0.10".into()],
        cluster_domain: "cluster.local".into(),
        host_resolv_conf: String::new(),
    };
    sandbox
        .write_files(&skiff_agent::runtime::sandbox::PodFiles::for_pod(
            &pod, "", &dns,
        ))
        .unwrap();

    let run = |script: &str| -> Container {
        serde_json::from_value(serde_json::json!({"name": "c", "command": ["sh", "-c", script]}))
            .unwrap()
    };
    let start = |rt: &Runtime, c: Container, name: &str| {
        let rt = rt.clone();
        let (pod, sandbox, layer) = (pod.clone(), sandbox.clone(), layer.clone());
        let name = name.to_string();
        async move {
            let meta = ContainerMeta {
                id: new_id(),
                pod_uid: "test-pod-uid".into(),
                pod_namespace: "default".into(),
                pod_name: "hello-pod".into(),
                name: name.clone(),
                attempt: 0,
                init: false,
                image: "local/busybox".into(),
                image_id: "sha256:test".into(),
                log_path: rt
                    .dirs
                    .pod_logs("default", "hello-pod", "test-pod-uid")
                    .join(&name)
                    .join("0.log"),
                created_at: String::new(),
            };
            rt.prepare(&meta, &[layer]).unwrap();
            let image = ImageDefaults::default();
            let input = BundleInput {
                pod: &pod,
                container: &c,
                image: &image,
                env: vec!["PATH=/bin".into(), "GREETING=hi".into()],
                user: (0, 0, vec![]),
                rootfs: rt.rootfs(&meta.id),
                sandbox: &sandbox,
                hostname: "hello-pod".into(),
                termination_log: rt.termination_log(&meta.id),
                mounts: vec![],
                cgroup: rt.cgroup(&meta),
                pid_namespace: None,
            };
            let config = bundle::config(&input);
            let started = rt.start(&meta, &config).await;
            (meta, started)
        }
    };

    // Output reaches the CRI log; the exit code and termination message come back.
    let (meta, started) = start(
        &rt,
        run("echo $GREETING from $(hostname); echo oops >&2; echo bye > /dev/termination-log; exit 3"),
        "once",
    )
    .await;
    cleanup.ids.push(meta.id.clone());
    started.expect("container starts");
    let exited = tokio::time::timeout(Duration::from_secs(20), rt.wait(&meta.id))
        .await
        .expect("container ends");
    assert_eq!(exited.exit_code, 3);
    assert!(!exited.oom_killed);
    assert_eq!(rt.termination_message(&meta.id), "bye\n");
    let log = std::fs::read_to_string(&meta.log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" stdout F hi from hello-pod")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.ends_with(" stderr F oops")), "{log}");
    assert!(matches!(rt.state(&meta.id), State::Exited(_, _)));
    // What the ended container wrote is charged to its memory cgroup and
    // would keep the group alive (dying) after removal; it is given back.
    // (The image's busybox left the page cache when the layer was made:
    // this container read it in first.)
    let cgroup = rt.cgroup(&meta);
    let before = clean_page_cache_bytes(&cgroup);
    assert!(before.is_some_and(|b| b > 0), "charged: {before:?}");
    skiff_agent::runtime::cgroups::reclaim_memory(&cgroup);
    // (A page or so can stay a moment; the container's own files, the
    // termination log, go with its directory.)
    let after = clean_page_cache_bytes(&cgroup);
    assert!(
        after.is_some_and(|a| a * 10 < before.unwrap_or(0)),
        "before {before:?}, after {after:?}"
    );

    // A long runner stops on SIGTERM (its trap exits 0) and is removed without a trace.
    let (meta2, started) = start(
        &via_skiff,
        run("trap 'exit 0' TERM; while true; do sleep 0.1; done"),
        "long",
    )
    .await;
    cleanup.ids.push(meta2.id.clone());
    started.expect("container starts");
    let shim_pid = std::fs::read_to_string(rt.container_dir(&meta2.id).join("shim.pid")).unwrap();
    let argv = std::fs::read(format!("/proc/{shim_pid}/cmdline")).unwrap();
    let argv: Vec<&[u8]> = argv.split(|&b| b == 0).collect();
    assert_eq!(argv[0], skiff.as_os_str().as_encoded_bytes());
    assert_eq!(argv[1], b"shim");
    assert!(matches!(rt.state(&meta2.id), State::Running(_)));
    rt.kill(&meta2.id, "SIGTERM").await.unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(20), rt.wait(&meta2.id))
        .await
        .expect("container stops on SIGTERM");
    assert_eq!(exited.exit_code, 0);

    // A missing binary is a start error with runc's message.
    let bad: Container =
        serde_json::from_value(serde_json::json!({"name": "c", "command": ["/no/such/binary"]}))
            .unwrap();
    let (meta3, started) = start(&rt, bad, "bad").await;
    cleanup.ids.push(meta3.id.clone());
    let err = started
        .expect_err("a missing binary cannot start")
        .to_string();
    assert!(err.contains("no such file"), "{err}");

    for id in [&meta.id, &meta2.id, &meta3.id] {
        rt.remove(id).await.unwrap();
        assert!(!rt.container_dir(id).exists());
        let listed = std::process::Command::new("runc")
            .arg("--root")
            .arg(&rt.runtime_root)
            .arg("list")
            .arg("-q")
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&listed.stdout).contains(id.as_str()));
    }
    cleanup.ids.clear();
    sandbox.destroy().unwrap();
    assert!(!sandbox.dir().exists());
}
