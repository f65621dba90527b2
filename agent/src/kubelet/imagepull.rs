//! Kubelet's image manager: a container's image made present as its
//! `imagePullPolicy` says (Always: pull at every start, and fail when the
//! registry cannot be reached, as upstream; IfNotPresent; Never), with the
//! pod's `imagePullSecrets` as credentials, back-off per pod and image
//! after a failed pull (10 s doubling to 5 min, `ImagePullBackOff` in
//! between), and the events kubelet records (`Pulling`, `Pulled`,
//! `Failed`, `BackOff`, `ErrImageNeverPull`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use kube::ResourceExt;

use super::Ctx;
use crate::images::registry::{Credential, Keyring};
use crate::images::{Image, Puller, Reference};

/// kubelet's image back-off: `flowcontrol.NewBackOff(10s, 300s)`.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// When the worker looks again after a failure that has no back-off of
/// its own (and after a failed pull, to show `ImagePullBackOff`).
const RETRY: Duration = Duration::from_secs(5);

/// Why the image is not there: the container's waiting reason and message,
/// and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub reason: String,
    pub message: String,
    pub retry_after: Duration,
}

impl ImageFailure {
    fn new(reason: &str, message: String, retry_after: Duration) -> Self {
        ImageFailure {
            reason: reason.to_string(),
            message,
            retry_after,
        }
    }
}

/// One back-off entry, as flowcontrol.Backoff keeps it.
struct Entry {
    last: Instant,
    delay: Duration,
    /// The message of the failure that started it.
    error: String,
}

/// A back-off in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Since the failure.
    pub since: Duration,
    /// Until the next pull may start.
    pub left: Duration,
    pub error: String,
}

/// Back-off per `<pod uid>_<image>`, as kubelet keys it.
#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    /// The back-off of `key`, while it lasts.
    pub fn check(&self, key: &str, now: Instant) -> Option<Pending> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        let since = now.saturating_duration_since(e.last);
        (since < e.delay).then(|| Pending {
            since,
            left: e.delay - since,
            error: e.error.clone(),
        })
    }

    /// A failure: the first back-off, or twice the last (an entry idle for
    /// twice the maximum starts over). Returns the delay.
    pub fn fail(&self, key: &str, now: Instant, error: String) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let delay = match entries.get(key) {
            Some(e) if now.saturating_duration_since(e.last) <= 2 * BACKOFF_MAX => {
                (e.delay * 2).min(BACKOFF_MAX)
            }
            _ => BACKOFF_INITIAL,
        };
        entries.insert(
            key.to_string(),
            Entry {
                last: now,
                delay,
                error,
            },
        );
        delay
    }

    /// Forgets entries idle for twice the maximum.
    pub fn gc(&self, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| now.saturating_duration_since(e.last) <= 2 * BACKOFF_MAX);
    }
}

/// The pulls of all pod workers.
pub struct ImageManager {
    puller: Puller,
    backoff: Backoff,
}

/// Upstream's default when the field is unset (the API server normally
/// sets it): Always for `:latest` or no tag, IfNotPresent otherwise.
fn policy(c: &Container, r: &Reference) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let latest = r.digest.is_none() && r.tag.as_deref() == Some("latest");
    if latest { "Always" } else { "IfNotPresent" }.to_string()
}

impl ImageManager {
    pub fn new(puller: Puller) -> Self {
        ImageManager {
            puller,
            backoff: Backoff::default(),
        }
    }

    /// Makes the container's image present as its pull policy says.
    pub async fn ensure(&self, ctx: &Ctx, pod: &Pod, c: &Container) -> Result<Image, ImageFailure> {
        let name = c.image.clone().unwrap_or_default();
        let r = Reference::parse(&name).map_err(|e| {
            ImageFailure::new(
                "InvalidImageName",
                format!("Failed to apply default image tag {name:?}: {e}"),
                RETRY,
            )
        })?;
        let policy = policy(c, &r);
        let store = ctx.images.clone();
        let lookup = name.clone();
        let present = match tokio::task::spawn_blocking(move || store.resolve(&lookup)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(image = %name, error = %e, "image store: image unreadable");
                None
            }
            Err(e) => return Err(ImageFailure::new("ErrImagePull", e.to_string(), RETRY)),
        };
        match (policy.as_str(), present) {
            ("Never" | "IfNotPresent", Some(img)) => {
                let note = format!("Container image \"{name}\" already present on machine");
                ctx.event(pod, "Normal", "Pulled", note);
                return Ok(img);
            }
            ("Never", None) => {
                let msg =
                    format!("Container image \"{name}\" is not present with pull policy of Never");
                ctx.event(pod, "Warning", "ErrImageNeverPull", msg.clone());
                return Err(ImageFailure::new("ErrImageNeverPull", msg, RETRY));
            }
            _ => {}
        }
        let key = format!("{}_{name}", pod.uid().unwrap_or_default());
        let now = Instant::now();
        if let Some(b) = self.backoff.check(&key, now) {
            if b.since < RETRY {
                // The failure stands until the worker's next look (this
                // worker also wakes for its own status writes; kubelet's
                // does not, so there ErrImagePull shows until then too).
                return Err(ImageFailure::new("ErrImagePull", b.error, RETRY - b.since));
            }
            let msg = format!("Back-off pulling image \"{name}\"");
            ctx.event(pod, "Normal", "BackOff", msg.clone());
            return Err(ImageFailure::new(
                "ImagePullBackOff",
                format!("{msg}: ErrImagePull: {}", b.error),
                b.left.max(Duration::from_secs(1)),
            ));
        }
        ctx.event(
            pod,
            "Normal",
            "Pulling",
            format!("Pulling image \"{name}\""),
        );
        let creds = credentials(ctx, pod, &r).await;
        match self.puller.pull(&name, &creds).await {
            Ok(pulled) => {
                let note = format!(
                    "Successfully pulled image \"{name}\" in {} ({} including waiting). Image size: {} bytes.",
                    go_duration(pulled.pulling),
                    go_duration(now.elapsed()),
                    pulled.image.size
                );
                ctx.event(pod, "Normal", "Pulled", note);
                self.backoff.gc(Instant::now());
                Ok(pulled.image)
            }
            Err(e) => {
                let msg = format!("failed to pull and unpack image \"{r}\": {e}");
                tracing::info!(pod = %pod.name_any(), image = %name, error = %msg, "image pull failed");
                ctx.event(
                    pod,
                    "Warning",
                    "Failed",
                    format!("Failed to pull image \"{name}\": {msg}"),
                );
                let delay = self.backoff.fail(&key, Instant::now(), msg.clone());
                Err(ImageFailure::new("ErrImagePull", msg, RETRY.min(delay)))
            }
        }
    }
}

/// The credentials the pod's pull secrets have for this image; secrets
/// that cannot be read are reported and skipped, as kubelet does.
async fn credentials(ctx: &Ctx, pod: &Pod, r: &Reference) -> Vec<Credential> {
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|s| s.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let mut keyring = Keyring::default();
    let mut missing = Vec::new();
    for n in names {
        match api.get_opt(&n).await {
            Ok(Some(s)) => {
                if let Err(e) = keyring.add_secret(&s) {
                    tracing::warn!(pod = %pod.name_any(), error = %e, "pull secret not used");
                }
            }
            Ok(None) => missing.push(n),
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), secret = %n, error = %e, "pull secret not read");
                missing.push(n);
            }
        }
    }
    if !missing.is_empty() {
        ctx.event(
            pod,
            "Warning",
            "FailedToRetrieveImagePullSecret",
            format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        );
    }
    keyring.lookup(r)
}

/// A duration as Go prints one truncated to milliseconds: `523ms`,
/// `1.2s`, `2m3.05s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (secs, frac) = (ms / 1000, ms % 1000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let s = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_expires() {
        let b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.check("k", t0).is_none());
        assert_eq!(b.fail("k", t0, "ErrImagePull: x".into()), BACKOFF_INITIAL);
        let p = b.check("k", t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(p.left, Duration::from_secs(6));
        assert_eq!(p.since, Duration::from_secs(4));
        assert_eq!(p.error, "ErrImagePull: x");
        assert!(b.check("k", t0 + BACKOFF_INITIAL).is_none());
        assert!(b.check("other", t0).is_none());
        let mut t = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            t += Duration::from_secs(1);
            delays.push(b.fail("k", t, String::new()).as_secs());
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300]);
        // Idle for long: starts over, and gc forgets it.
        let later = t + 2 * BACKOFF_MAX + Duration::from_secs(1);
        assert_eq!(b.fail("k", later, String::new()), BACKOFF_INITIAL);
        b.gc(later + 2 * BACKOFF_MAX + Duration::from_secs(1));
        assert!(b.entries.lock().unwrap().is_empty());
    }

    #[test]
    fn default_policy() {
        let c = |p: Option<&str>| Container {
            image_pull_policy: p.map(Into::into),
            ..Default::default()
        };
        let r = |s: &str| Reference::parse(s).unwrap();
        assert_eq!(policy(&c(None), &r("busybox")), "Always");
        assert_eq!(policy(&c(None), &r("busybox:latest")), "Always");
        assert_eq!(policy(&c(None), &r("busybox:1.36")), "IfNotPresent");
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(policy(&c(None), &r(&pinned)), "IfNotPresent");
        assert_eq!(policy(&c(Some("Never")), &r("busybox")), "Never");
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(523)), "523ms");
        assert_eq!(go_duration(ms(1200)), "1.2s");
        assert_eq!(go_duration(ms(2000)), "2s");
        assert_eq!(go_duration(ms(123_050)), "2m3.05s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
    }
}
