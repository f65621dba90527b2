//! Pulls from a real registry: Debian's `docker-registry` (the reference
//! distribution server) on a free 127.0.0.1 port with its own storage,
//! filled by a tiny pusher (blob uploads, then the manifest) over the same
//! HTTP client; then pulls into fresh stores — by tag, by digest, through
//! an index, concurrently, and with htpasswd auth and a dockerconfigjson
//! pull secret. Skipped with a message when `docker-registry` or a static
//! busybox (for the test image) is missing. A token-auth (Bearer) flow is
//! checked against a small in-process registry, which needs nothing.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{Method, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use skiff_agent::images::oci::AnyManifest;
use skiff_agent::images::registry::session::resolve;
use skiff_agent::images::registry::{
    Credential, Keyring, RegistryConfig, RegistryError, Session, Transport,
};
use skiff_agent::images::{ImageStore, Puller, Reference};

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "skiff-pull-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn registry_binary() -> Option<PathBuf> {
    ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` process, killed (by its pid) on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    async fn start(bin: &Path, htpasswd: Option<&str>) -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.0.join("data").display()
        );
        if let Some(line) = htpasswd {
            let file = dir.0.join("htpasswd");
            std::fs::write(&file, format!("{line}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.0.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        // Ready once /v2/ answers at all (200, or 401 with auth).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return reg;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(reg._dir.0.join("registry.log"));
                panic!("docker-registry did not listen: {log:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The busybox test image, imported into a store of its own: (store, its
/// directory, manifest digest).
fn busybox_store() -> Option<(ImageStore, TempDir, String)> {
    if !Path::new("/bin/busybox").exists() && std::env::var_os("BUSYBOX").is_none() {
        return None;
    }
    let dir = TempDir::new("source");
    let tar = dir.0.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let out = Command::new(script).arg(&tar).output().unwrap();
    assert!(
        out.status.success(),
        "busybox-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = ImageStore::open(&dir.0.join("store")).unwrap();
    store.import_tar(&tar).unwrap();
    let img = store.resolve("localhost/busybox:latest").unwrap().unwrap();
    Some((store, dir, img.digest))
}

/// Pushes a blob (POST an upload, PUT it whole) unless the registry has it.
async fn push_blob(s: &Session<'_>, bytes: Bytes) {
    let digest = skiff_agent::images::digest::of_bytes(&bytes);
    let head = s
        .send(
            Method::HEAD,
            &s.url(&format!("blobs/{digest}")),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
    if head.status() == StatusCode::OK {
        return;
    }
    let url = s.url("blobs/uploads/");
    let resp = s.send(Method::POST, &url, &[], Bytes::new()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "start upload");
    let loc = resp.headers()[LOCATION].to_str().unwrap().to_string();
    let loc = resolve(&url, &loc);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = format!("{loc}{sep}digest={digest}");
    let resp = s
        .send(
            Method::PUT,
            &put,
            &[(CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "finish upload {digest}");
}

async fn push_manifest(s: &Session<'_>, reference: &str, media_type: &str, bytes: Bytes) {
    let resp = s
        .send(
            Method::PUT,
            &s.url(&format!("manifests/{reference}")),
            &[(CONTENT_TYPE, media_type)],
            bytes,
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "put manifest {reference}"
    );
}

/// Pushes the store's image as `<repo>:latest` and, inside an index with a
/// second (foreign) platform, as `<repo>:multi`. Returns the index digest.
async fn push_image(s: &Session<'_>, store: &ImageStore, manifest_digest: &str) -> String {
    let read = |d: &str| Bytes::from(std::fs::read(store.blob_path(d).unwrap()).unwrap());
    let manifest = read(manifest_digest);
    let m: AnyManifest = serde_json::from_slice(&manifest).unwrap();
    for d in std::iter::once(m.config.clone().unwrap()).chain(m.layers.clone().unwrap()) {
        push_blob(s, read(&d.digest)).await;
    }
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    push_manifest(s, "latest", oci_manifest, manifest.clone()).await;
    let host = skiff_agent::images::oci::host_platform();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": oci_manifest, "digest": manifest_digest, "size": manifest.len(),
             "platform": {"architecture": "s390x", "os": "linux"}},
            {"mediaType": oci_manifest, "digest": manifest_digest, "size": manifest.len(),
             "platform": {"architecture": host.architecture, "os": "linux", "variant": host.variant}},
        ],
    });
    let index = Bytes::from(serde_json::to_vec(&index).unwrap());
    push_manifest(
        s,
        "multi",
        "application/vnd.oci.image.index.v1+json",
        index.clone(),
    )
    .await;
    skiff_agent::images::digest::of_bytes(&index)
}

/// A bcrypt htpasswd line, from whatever this machine has.
fn htpasswd_line(user: &str, password: &str) -> Option<String> {
    if let Ok(out) = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
    {
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
    }
    let py = format!(
        "import warnings; warnings.simplefilter('ignore')\n\
         try:\n    import bcrypt; print(bcrypt.hashpw(b'{password}', bcrypt.gensalt()).decode())\n\
         except ImportError:\n    import crypt; print(crypt.crypt('{password}', crypt.mksalt(crypt.METHOD_BLOWFISH)))\n"
    );
    let out = Command::new("python3").args(["-c", &py]).output().ok()?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && hash.starts_with("$2")).then(|| format!("{user}:{hash}"))
}

fn pull_secret(host: &str, user: &str, password: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = serde_json::json!({"auths": {format!("http://{host}/v2/"): {"auth": auth}}});
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("regcred".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(serde_json::to_vec(&json).unwrap()),
        )])),
        ..Default::default()
    }
}

fn fresh_puller(tag: &str) -> (Arc<Puller>, ImageStore, TempDir) {
    let dir = TempDir::new(tag);
    let store = ImageStore::open(&dir.0).unwrap();
    let puller = Puller::new(store.clone(), RegistryConfig::default()).unwrap();
    (Arc::new(puller), store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_docker_registry() {
    let Some(bin) = registry_binary() else {
        eprintln!("skipping: docker-registry is not installed (Debian package docker-registry; scripts/install-deps)");
        return;
    };
    let Some((src, _src_dir, manifest_digest)) = busybox_store() else {
        eprintln!("skipping: no static busybox for the test image (Debian package busybox-static)");
        return;
    };
    let want_id = src.resolve("localhost/busybox:latest").unwrap().unwrap().id;
    let reg = Registry::start(&bin, None).await;
    let transport = Transport::new(RegistryConfig::default()).unwrap();
    let pusher = Session::new(&transport, &reg.host, "test/busybox", "pull,push", None);
    let index_digest = push_image(&pusher, &src, &manifest_digest).await;

    // By tag, twice at once: one download, both get the image.
    let (puller, store, _dir) = fresh_puller("tag");
    let name = format!("{}/test/busybox:latest", reg.host);
    let (a, b) = tokio::join!(puller.pull(&name, &[]), puller.pull(&name, &[]));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.image.id, want_id);
    assert_eq!(b.image.id, want_id);
    assert_eq!(a.image.digest, manifest_digest);
    assert!(a.image.size > 0);
    let img = store.resolve(&name).unwrap().expect("tagged");
    assert_eq!(img.id, want_id);
    assert!(img.layers[0].join("bin/busybox").exists());
    assert_eq!(img.config.cmd, ["sh"]);

    // Through an index (this platform chosen), and by digest.
    let (puller, store, _dir) = fresh_puller("index");
    let multi = format!("{}/test/busybox:multi", reg.host);
    let pulled = puller.pull(&multi, &[]).await.unwrap();
    assert_eq!(pulled.image.id, want_id);
    assert_eq!(pulled.image.digest, index_digest);
    let pinned = format!("{}/test/busybox@{manifest_digest}", reg.host);
    assert_eq!(puller.pull(&pinned, &[]).await.unwrap().image.id, want_id);
    assert!(store.resolve(&pinned).unwrap().is_some());

    // Unknown tags and repositories.
    let err = puller
        .pull(&format!("{}/test/busybox:nope", reg.host), &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("failed to resolve reference") && text.contains("not found"),
        "{text}"
    );
    let err = puller
        .pull(&format!("{}/test/absent:latest", reg.host), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Resolve { .. }), "{err}");
    // Nothing listens there.
    let err = puller
        .pull(&format!("127.0.0.1:{}/x:latest", free_port()), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    drop(reg);

    // htpasswd (Basic) auth and a dockerconfigjson pull secret.
    let Some(line) = htpasswd_line("skiff", "s3cret") else {
        eprintln!("skipping the auth part: neither htpasswd nor python3 bcrypt/crypt can make a bcrypt hash");
        return;
    };
    let reg = Registry::start(&bin, Some(&line)).await;
    let cred = Credential {
        username: "skiff".into(),
        password: "s3cret".into(),
    };
    let pusher = Session::new(
        &transport,
        &reg.host,
        "private/busybox",
        "pull,push",
        Some(cred),
    );
    push_image(&pusher, &src, &manifest_digest).await;
    let name = format!("{}/private/busybox:latest", reg.host);
    let (puller, store, _dir) = fresh_puller("auth");
    let err = puller.pull(&name, &[]).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    let mut keyring = Keyring::default();
    keyring
        .add_secret(&pull_secret(&reg.host, "skiff", "wrong"))
        .unwrap();
    let r = Reference::parse(&name).unwrap();
    let err = puller.pull(&name, &keyring.lookup(&r)).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    keyring
        .add_secret(&pull_secret(&reg.host, "skiff", "s3cret"))
        .unwrap();
    let creds = keyring.lookup(&r);
    assert_eq!(creds.len(), 2);
    // The wrong one is tried, refused, and the next one works.
    let pulled = puller.pull(&name, &creds).await.unwrap();
    assert_eq!(pulled.image.id, want_id);
    assert!(store.resolve(&name).unwrap().is_some());
}

/// A registry that wants a token: `/v2/…` answers 401 with a Bearer
/// challenge unless the request bears the token, which `/token` hands out
/// for Basic `u:p` and the right scope.
async fn token_registry(
    manifest: Bytes,
    blobs: BTreeMap<String, Bytes>,
) -> (String, Arc<AtomicUsize>) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tokens = Arc::new(AtomicUsize::new(0));
    let issued = tokens.clone();
    let realm = format!("http://{addr}/token");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (manifest, blobs, realm, issued) = (
                manifest.clone(),
                blobs.clone(),
                realm.clone(),
                issued.clone(),
            );
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (manifest, blobs, realm, issued) = (
                        manifest.clone(),
                        blobs.clone(),
                        realm.clone(),
                        issued.clone(),
                    );
                    async move {
                        let path = req.uri().path().to_string();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let reply = |status: StatusCode, body: Bytes| {
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(body))
                                .unwrap()
                        };
                        if path == "/token" {
                            let q = req.uri().query().unwrap_or_default();
                            let basic = base64::engine::general_purpose::STANDARD.encode("u:p");
                            if auth != format!("Basic {basic}")
                                || !q.contains("scope=repository%3Asecure%2Fbusybox%3Apull")
                                || !q.contains("service=test-registry")
                            {
                                return Ok::<_, Infallible>(reply(
                                    StatusCode::UNAUTHORIZED,
                                    Bytes::new(),
                                ));
                            }
                            issued.fetch_add(1, Ordering::SeqCst);
                            return Ok(reply(StatusCode::OK, Bytes::from(r#"{"token":"t0k3n"}"#)));
                        }
                        if auth != "Bearer t0k3n" {
                            let mut r = reply(
                                StatusCode::UNAUTHORIZED,
                                Bytes::from(
                                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                                ),
                            );
                            r.headers_mut().insert(
                                "www-authenticate",
                                format!(r#"Bearer realm="{realm}",service="test-registry",scope="repository:secure/busybox:pull""#)
                                    .parse()
                                    .unwrap(),
                            );
                            return Ok(r);
                        }
                        if path == "/v2/secure/busybox/manifests/latest" {
                            let mut r = reply(StatusCode::OK, manifest);
                            r.headers_mut().insert(
                                CONTENT_TYPE,
                                "application/vnd.oci.image.manifest.v1+json"
                                    .parse()
                                    .unwrap(),
                            );
                            return Ok(r);
                        }
                        if let Some(d) = path.strip_prefix("/v2/secure/busybox/blobs/") {
                            if let Some(b) = blobs.get(d) {
                                return Ok(reply(StatusCode::OK, b.clone()));
                            }
                        }
                        Ok(reply(StatusCode::NOT_FOUND, Bytes::new()))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr.to_string(), tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow() {
    let Some((src, _src_dir, manifest_digest)) = busybox_store() else {
        eprintln!("skipping: no static busybox for the test image (Debian package busybox-static)");
        return;
    };
    let read = |d: &str| Bytes::from(std::fs::read(src.blob_path(d).unwrap()).unwrap());
    let manifest = read(&manifest_digest);
    let m: AnyManifest = serde_json::from_slice(&manifest).unwrap();
    let blobs: BTreeMap<String, Bytes> = std::iter::once(m.config.unwrap())
        .chain(m.layers.unwrap())
        .map(|d| (d.digest.clone(), read(&d.digest)))
        .collect();
    let (host, tokens) = token_registry(manifest, blobs).await;
    let name = format!("{host}/secure/busybox:latest");
    let (puller, store, _dir) = fresh_puller("bearer");
    // Anonymous: the token service refuses.
    let err = puller.pull(&name, &[]).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    let cred = Credential {
        username: "u".into(),
        password: "p".into(),
    };
    let pulled = puller.pull(&name, &[cred]).await.unwrap();
    assert!(store.resolve(&name).unwrap().is_some());
    assert_eq!(
        pulled.image.id,
        src.resolve("localhost/busybox:latest").unwrap().unwrap().id
    );
    // One token for the session, not one per request.
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
}
