//! Service account tokens: the `serviceaccounts/<name>/token` subresource
//! (TokenRequest: `kubectl create token`, the agent's projected token
//! volumes) and the bearer tokens it issues, which authenticate as
//! `system:serviceaccount:<ns>:<name>`.
//!
//! The tokens are JWTs with upstream's claims (issuer and default audience
//! `https://kubernetes.default.svc.cluster.local`, `sub`, `kubernetes.io`
//! with the namespace, the service account and the bound object), signed
//! HS256 with a key derived (HKDF) from the cluster CA's private key: every
//! server sharing the CA (an HA control plane on one datastore) issues and
//! accepts the same tokens with no key of its own to distribute, and no one
//! without the CA's key can make one. A token stops working when it
//! expires, or when its service account or bound object is gone or was
//! made anew (another uid), as upstream checks.

use crate::auth::User;
use crate::error::{ApiError, Cause};
use crate::registry::Registry;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::{hkdf, hmac};
use serde_json::{json, Value};
use skiff_machinery::catalog;
use std::collections::BTreeMap;

/// The issuer, and the audience a token gets when the request names none
/// (upstream's default `--service-account-issuer` and API audience).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Upstream's default and bounds of `spec.expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
/// What a pod-bound token asked for with the kube-api-access lifetime
/// (`registry::serviceaccount::TOKEN_EXPIRATION_SECONDS`) really lasts:
/// upstream's `--service-account-extend-token-expiration` (on by default)
/// gives it a year, so clients that never reread the file keep working,
/// and records when it would have expired as `kubernetes.io/warnafter`.
const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;

/// Issues and checks tokens with the key derived from the CA's.
pub struct Tokens {
    key: hmac::Key,
}

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    /// The object the token is bound to: (kind, name, uid).
    pub bound: Option<(String, String, String)>,
    /// The token's `jti`.
    pub id: Option<String>,
    /// The node of the pod it is bound to: (name, uid).
    pub node: Option<(String, String)>,
}

impl Holder {
    pub fn user(&self) -> User {
        User {
            name: format!(
                "system:serviceaccount:{}:{}",
                self.namespace, self.service_account
            ),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
                "system:authenticated".into(),
            ],
            uid: Some(self.service_account_uid.clone()),
            extra: self.extra(),
        }
    }

    /// Upstream's extra user info for a service account token.
    fn extra(&self) -> BTreeMap<String, Vec<String>> {
        let mut extra = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            extra.insert(
                format!("authentication.kubernetes.io/{key}"),
                vec![value.to_string()],
            );
        };
        if let Some(id) = &self.id {
            put("credential-id", &format!("JTI={id}"));
        }
        if let Some((kind, name, uid)) = &self.bound {
            if kind == "pod" {
                put("pod-name", name);
                put("pod-uid", uid);
            }
        }
        let node = match &self.bound {
            Some((kind, name, uid)) if kind == "node" => Some((name, uid)),
            _ => self.node.as_ref().map(|(name, uid)| (name, uid)),
        };
        if let Some((name, uid)) = node {
            put("node-name", name);
            put("node-uid", uid);
        }
        extra
    }
}

impl Tokens {
    pub fn from_ca_key(ca_key_pem: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"skiff service account tokens")
            .extract(ca_key_pem.as_bytes());
        let okm = prk
            .expand(&[b"HS256"], hmac::HMAC_SHA256)
            .expect("HMAC_SHA256's key length is within HKDF's limit");
        Tokens {
            key: hmac::Key::from(okm),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{payload}");
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The holder of `token` if we signed it, it is valid at `now` (Unix
    /// seconds) and meant for the API server; `None` otherwise.
    #[cfg(test)]
    fn verify(&self, token: &str, now: i64) -> Option<Holder> {
        self.verify_for(token, now, &[ISSUER.to_string()])
            .map(|(holder, _)| holder)
    }

    /// Like `verify`, for a token meant for any of `audiences` (a
    /// TokenReview's): its holder and the audiences it is meant for.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Option<(Holder, Vec<String>)> {
        let (signed, tag) = token.rsplit_once('.')?;
        let (_, payload) = signed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, signed.as_bytes(), &tag).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let int = |k: &str| claims.get(k).and_then(Value::as_i64);
        let in_time =
            int("exp").is_some_and(|exp| now < exp) && int("nbf").is_none_or(|nbf| nbf <= now + 60);
        let meant_for: Vec<String> = claims["aud"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|a| audiences.iter().any(|x| x == a))
            .map(String::from)
            .collect();
        if !in_time || claims["iss"] != ISSUER || meant_for.is_empty() {
            return None;
        }
        let k8s = &claims["kubernetes.io"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        let bound = ["pod", "secret", "node"].into_iter().find_map(|kind| {
            let o = k8s.get(kind)?;
            Some((kind.to_string(), text(&o["name"])?, text(&o["uid"])?))
        });
        let holder = Holder {
            namespace: text(&k8s["namespace"])?,
            service_account: text(&k8s["serviceaccount"]["name"])?,
            service_account_uid: text(&k8s["serviceaccount"]["uid"])?,
            node: k8s
                .get("pod")
                .and(k8s.get("node"))
                .and_then(|n| Some((text(&n["name"])?, text(&n["uid"])?))),
            bound,
            id: text(&claims["jti"]),
        };
        Some((holder, meant_for))
    }

    /// The service account a token proves its bearer to be, for any of
    /// `audiences`, with the audiences it is meant for: signed by us, in
    /// time, and its account and bound object still as they were.
    pub async fn authenticate(
        &self,
        reg: &Registry,
        token: &str,
        audiences: &[String],
    ) -> Option<(User, Vec<String>)> {
        let now = jiff::Timestamp::now().as_second();
        let (holder, meant_for) = self.verify_for(token, now, audiences)?;
        Self::still_valid(reg, &holder)
            .await
            .then(|| (holder.user(), meant_for))
    }

    /// Whether `holder`'s service account and bound object still exist as
    /// they were when the token was issued.
    pub async fn still_valid(reg: &Registry, holder: &Holder) -> bool {
        let ns = Some(holder.namespace.as_str());
        if !same_uid(
            reg,
            "serviceaccounts",
            ns,
            &holder.service_account,
            &holder.service_account_uid,
        )
        .await
        {
            return false;
        }
        match &holder.bound {
            None => true,
            Some((kind, name, uid)) => {
                let (plural, ns) = match kind.as_str() {
                    "pod" => ("pods", ns),
                    "secret" => ("secrets", ns),
                    _ => ("nodes", None),
                };
                same_uid(reg, plural, ns, name, uid).await
            }
        }
    }

    /// Serves a TokenRequest for service account `name` in `ns`: the
    /// request with its defaults and, in its status, a new token.
    pub async fn request(
        &self,
        reg: &Registry,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = spec
            .get("expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_EXPIRATION);
        let invalid = |cause: Cause| {
            ApiError::invalid_kind("authentication.k8s.io", "TokenRequest", name, vec![cause])
        };
        let field = "spec.expirationSeconds";
        if expiration < MIN_EXPIRATION {
            return Err(invalid(Cause::invalid(
                field,
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            )));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(Cause::invalid(
                field,
                &json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            )));
        }
        let audiences = match spec.get("audiences").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => a.clone(),
            _ => vec![json!(ISSUER)],
        };
        let sa_res = catalog::lookup("", "v1", "serviceaccounts").expect("serviceaccounts");
        let sa = reg.get(sa_res, Some(ns), name).await?;
        let mut k8s = json!({
            "namespace": ns,
            "serviceaccount": {"name": name, "uid": crate::meta::uid(&sa)},
        });
        let bound_ref = spec.get("boundObjectRef").filter(|r| !r.is_null()).cloned();
        if let Some(r) = &bound_ref {
            let (kind, key, res, scope) = match r["kind"].as_str().unwrap_or("") {
                "Pod" => ("Pod", "pod", "pods", Some(ns)),
                "Secret" => ("Secret", "secret", "secrets", Some(ns)),
                "Node" => ("Node", "node", "nodes", None),
                other => {
                    return Err(invalid(Cause::not_supported(
                        "spec.boundObjectRef.kind",
                        &json!(other),
                        &["Pod", "Secret", "Node"],
                    )))
                }
            };
            let object_name = r["name"].as_str().unwrap_or("");
            let res = catalog::lookup("", "v1", res).expect("core kind");
            let object = reg.get(res, scope, object_name).await?;
            let uid = crate::meta::uid(&object).unwrap_or("");
            if r["uid"]
                .as_str()
                .is_some_and(|want| !want.is_empty() && want != uid)
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {kind} \"{object_name}\": the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                        r["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
            k8s[key] = json!({"name": object_name, "uid": uid});
            // A pod's token also names the pod's node (upstream's
            // ServiceAccountTokenPodNodeInfo), when it has one.
            if let Some(node) = object.pointer("/spec/nodeName").and_then(Value::as_str) {
                let nodes = catalog::lookup("", "v1", "nodes").expect("nodes");
                if let Ok(n) = reg.get(nodes, None, node).await {
                    k8s["node"] = json!({"name": node, "uid": crate::meta::uid(&n)});
                }
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let lifetime = lifetime(expiration, k8s.get("pod").is_some(), &audiences);
        if lifetime != expiration {
            k8s["warnafter"] = json!(now + expiration);
        }
        let exp = now + lifetime;
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": format!("system:serviceaccount:{ns}:{name}"),
        });
        // The status names the lifetime asked for, also when extended: the
        // holder refreshes on that schedule.
        let expires = jiff::Timestamp::from_second(now + expiration)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let mut spec = spec;
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(expiration);
        if bound_ref.is_none() {
            spec["boundObjectRef"] = Value::Null;
        }
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec,
            "status": {"token": self.sign(&claims), "expirationTimestamp": expires},
        }))
    }
}

/// How long a token asked to last `requested` seconds is valid: extended
/// for a pod-bound kube-api-access token meant for the API server alone.
fn lifetime(requested: i64, pod_bound: bool, audiences: &[Value]) -> i64 {
    let extend = requested == crate::registry::serviceaccount::TOKEN_EXPIRATION_SECONDS
        && pod_bound
        && audiences.iter().all(|a| a == ISSUER);
    if extend {
        EXTENDED_EXPIRATION
    } else {
        requested
    }
}

/// Whether the core object `plural`/`name` exists with `uid`. Every
/// request a token authenticates asks this: the watch cache answers without
/// I/O; only an object too new for it is read from storage.
async fn same_uid(reg: &Registry, plural: &str, ns: Option<&str>, name: &str, uid: &str) -> bool {
    let Some(res) = catalog::lookup("", "v1", plural) else {
        return false;
    };
    let object = match reg.cache(res).get(&res.key(ns, name)) {
        Some(entry) => entry.object(),
        None => match reg.get(res, ns, name).await {
            Ok(object) => object,
            Err(_) => return false,
        },
    };
    crate::meta::uid(&object) == Some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64, aud: &str) -> Value {
        json!({"aud": [aud], "exp": exp, "iat": 0, "nbf": 0, "iss": ISSUER, "jti": "j",
               "sub": "system:serviceaccount:ns:sa",
               "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u1"},
                                 "pod": {"name": "p", "uid": "u2"}, "node": {"name": "n", "uid": "u3"}}})
    }

    #[test]
    fn only_pod_bound_api_access_tokens_are_extended() {
        let api = [json!(ISSUER)];
        assert_eq!(lifetime(3607, true, &api), EXTENDED_EXPIRATION);
        assert_eq!(lifetime(3600, true, &api), 3600);
        assert_eq!(lifetime(3607, false, &api), 3607);
        assert_eq!(lifetime(3607, true, &[json!("vault")]), 3607);
    }

    #[test]
    fn a_token_we_signed_names_its_holder_until_it_expires() {
        let tokens = Tokens::from_ca_key("ca key");
        let token = tokens.sign(&claims(100, ISSUER));
        let holder = tokens.verify(&token, 50).unwrap();
        assert_eq!(holder.user().name, "system:serviceaccount:ns:sa");
        assert_eq!(
            holder.user().groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        assert_eq!(holder.bound, Some(("pod".into(), "p".into(), "u2".into())));
        let extra = holder.user().extra;
        assert_eq!(extra["authentication.kubernetes.io/pod-name"], ["p"]);
        assert_eq!(extra["authentication.kubernetes.io/node-name"], ["n"]);
        assert_eq!(
            extra["authentication.kubernetes.io/credential-id"],
            ["JTI=j"]
        );
        assert_eq!(holder.user().uid.as_deref(), Some("u1"));
        assert_eq!(tokens.verify(&token, 100), None, "expired");
    }

    #[test]
    fn other_keys_other_audiences_and_altered_tokens_are_refused() {
        let tokens = Tokens::from_ca_key("ca key");
        let token = tokens.sign(&claims(100, ISSUER));
        assert_eq!(Tokens::from_ca_key("another CA").verify(&token, 50), None);
        assert_eq!(tokens.verify(&tokens.sign(&claims(100, "vault")), 50), None);
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(claims(1000, ISSUER).to_string());
        assert_eq!(tokens.verify(&format!("{head}.{forged}.{sig}"), 50), None);
        assert_eq!(tokens.verify("not.a-token", 50), None);
    }
}
