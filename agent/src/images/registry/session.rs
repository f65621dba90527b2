//! Requests to one repository of one registry, authenticated as the
//! registry asks: anonymous first; on `401` the `WWW-Authenticate`
//! challenge says how — `Bearer`: a token from the realm (anonymous, or
//! with the pull secret's user and password as Basic auth), `Basic`: the
//! user and password on every request. A token is kept for the session
//! and fetched again (once per request) when it stops being accepted.
//! GETs follow redirects (blob storage often lives elsewhere), a bounded
//! number of times, without the registry's credentials on other hosts.

use std::sync::Mutex;

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;

use super::challenge::{self, Challenge};
use super::error::RegistryError;
use super::keyring::Credential;
use super::transport::Transport;

const MAX_REDIRECTS: usize = 5;
/// Token responses and error bodies are small JSON.
const MAX_SMALL_BODY: u64 = 1 << 20;

/// Authenticated access to `repository` on one registry.
pub struct Session<'a> {
    transport: &'a Transport,
    base: String,
    repository: String,
    /// `pull`, or `pull,push`: the token scope asked for.
    actions: &'static str,
    credential: Option<Credential>,
    authorization: Mutex<Option<HeaderValue>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl<'a> Session<'a> {
    pub fn new(
        transport: &'a Transport,
        registry: &str,
        repository: &str,
        actions: &'static str,
        credential: Option<Credential>,
    ) -> Self {
        Session {
            transport,
            base: transport.endpoint(registry),
            repository: repository.to_string(),
            actions,
            credential,
            authorization: Mutex::new(None),
        }
    }

    pub fn transport(&self) -> &'a Transport {
        self.transport
    }

    /// `<endpoint>/v2/<repository>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    fn current(&self) -> Option<HeaderValue> {
        self.authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, v: HeaderValue) {
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }

    /// Sends a request to `url` (absolute), authenticating when challenged
    /// and following a GET's redirects. A 401 after authenticating, or a
    /// 403, is [`RegistryError::Unauthorized`]; other statuses are the
    /// caller's to judge.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, &str)],
        body: Bytes,
    ) -> Result<Response<Incoming>, RegistryError> {
        let mut url = url.to_string();
        let mut authenticated = false;
        let mut redirects = 0;
        loop {
            let ours = origin(&url) == origin(&self.base);
            let mut b = Request::builder().method(method.clone()).uri(&url);
            for (k, v) in headers {
                b = b.header(k, *v);
            }
            if ours {
                if let Some(a) = self.current() {
                    b = b.header(AUTHORIZATION, a);
                }
            }
            let req = b
                .body(Full::new(body.clone()))
                .map_err(|e| RegistryError::invalid("request URL", format!("{url}: {e}")))?;
            let resp = self.transport.send(req).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && ours && !authenticated {
                authenticated = true;
                let challenges = challenge::parse(
                    resp.headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
                self.authenticate(&challenges).await?;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let detail = describe(self.transport, &url, resp).await;
                return Err(RegistryError::Unauthorized(detail));
            }
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            if status.is_redirection() && method == Method::GET {
                if let Some(loc) = location {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(RegistryError::Status {
                            url,
                            status,
                            detail: format!("more than {MAX_REDIRECTS} redirects"),
                        });
                    }
                    url = resolve(&url, &loc);
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Sets the authorization the challenges ask for.
    async fn authenticate(&self, challenges: &[Challenge]) -> Result<(), RegistryError> {
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.token(c).await?;
            let v = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| RegistryError::invalid("token", "not a valid header value"))?;
            self.set(v);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(cred) = &self.credential else {
                return Err(RegistryError::Unauthorized(
                    "the registry wants a user name and password, and no pull secret has any for it"
                        .into(),
                ));
            };
            self.set(basic(cred)?);
            return Ok(());
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Err(RegistryError::Unauthorized(format!(
            "authentication required, with no challenge skiff can answer ({})",
            if schemes.is_empty() {
                "none given".to_string()
            } else {
                schemes.join(", ")
            }
        )))
    }

    /// A token from the challenge's realm for this repository.
    async fn token(&self, c: &Challenge) -> Result<String, RegistryError> {
        let realm = c.param("realm").unwrap_or_default();
        let uri: Uri = realm
            .parse()
            .map_err(|_| RegistryError::invalid("token realm", realm.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(RegistryError::invalid("token realm", realm.to_string()));
        }
        let ours = format!("repository:{}:{}", self.repository, self.actions);
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = c.param("service") {
            query.push(("service", service));
        }
        query.push(("scope", &ours));
        if let Some(scope) = c.param("scope").filter(|s| *s != ours) {
            query.push(("scope", scope));
        }
        let q = serde_urlencoded::to_string(&query)
            .map_err(|e| RegistryError::invalid("token request", e.to_string()))?;
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{q}");
        let mut b = Request::get(&url);
        if let Some(cred) = &self.credential {
            b = b.header(AUTHORIZATION, basic(cred)?);
        }
        let req = b
            .body(Full::new(Bytes::new()))
            .map_err(|e| RegistryError::invalid("token request", e.to_string()))?;
        let resp = self.transport.send(req).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = describe(self.transport, &url, resp).await;
            return Err(RegistryError::Unauthorized(format!(
                "the token service refused: {detail}"
            )));
        }
        if !status.is_success() {
            let detail = describe(self.transport, &url, resp).await;
            return Err(RegistryError::Status {
                url,
                status,
                detail,
            });
        }
        let bytes = self
            .transport
            .read_body(&url, resp.into_body(), MAX_SMALL_BODY, "token response")
            .await?;
        let t: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::invalid("token response", e.to_string()))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::invalid("token response", "no token in it"))
    }
}

fn basic(cred: &Credential) -> Result<HeaderValue, RegistryError> {
    let raw = format!("{}:{}", cred.username, cred.password);
    let enc = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut v = HeaderValue::from_str(&format!("Basic {enc}"))
        .map_err(|_| RegistryError::invalid("credentials", "not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `scheme://authority` of a URL, lower-cased.
fn origin(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(u) => format!(
            "{}://{}",
            u.scheme_str().unwrap_or_default(),
            u.authority().map(|a| a.as_str()).unwrap_or_default()
        )
        .to_ascii_lowercase(),
        Err(_) => String::new(),
    }
}

/// A `Location` relative to the URL it came from.
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin = origin(base);
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    // Relative to the base's directory.
    let path = base
        .strip_prefix(&origin)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{origin}{dir}{location}")
}

/// The registry's own words for an error response, read within bounds:
/// its `errors` (`CODE: message`) or the start of its body.
pub async fn describe(transport: &Transport, url: &str, resp: Response<Incoming>) -> String {
    let status = resp.status();
    let body = transport
        .read_body(url, resp.into_body(), MAX_SMALL_BODY, "error response")
        .await
        .unwrap_or_default();
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(&body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code.to_lowercase(), e.message),
                (false, true) => e.code.to_lowercase(),
                _ => e.message.clone(),
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        status.to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let base = "http://127.0.0.1:5000/v2/x/blobs/uploads/?a=b";
        assert_eq!(
            resolve(base, "/v2/x/blobs/uploads/u1?_state=s"),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u1?_state=s"
        );
        assert_eq!(
            resolve(base, "u2"),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u2"
        );
        assert_eq!(
            resolve(base, "https://blobs.example/a"),
            "https://blobs.example/a"
        );
        assert_eq!(origin("HTTP://LocalHost:5000/v2/"), "http://localhost:5000");
        assert_ne!(origin("http://a:1/"), origin("http://a:2/"));
    }
}
