//! Watch streams: newline-delimited `{"type","object"}` events from the watch
//! cache, filtered by selectors (an object leaving the selection is DELETED,
//! one entering it ADDED), with bookmarks, `sendInitialEvents`, and the
//! upstream 410 `Expired` error event for a too-old resourceVersion.

use super::output::{self, Format};
use super::request::{Query, Target};
use super::resources::list_options;
use crate::conversion;
use crate::error::ApiError;
use crate::registry::{ListOptions, Registry};
use crate::watchcache::{CacheEvent, Cursor, Entry, EventType};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use skiff_machinery::catalog::Resource;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// How often a watch blocked on a client that does not read checks whether
/// it has fallen too far behind.
const STALL_CHECK: Duration = Duration::from_secs(1);

struct Filter {
    res: &'static Resource,
    prefix: String,
    opts: ListOptions,
    format: Format,
    sent_columns: bool,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        e.key.starts_with(&self.prefix) && e.matches(&self.opts.labels, &self.opts.fields)
    }

    /// The event a client of this selection sees, if any.
    fn translate(&mut self, ev: &CacheEvent) -> Option<Bytes> {
        let now = self.matches(&ev.entry);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        let kind = match (ev.kind, before, now) {
            (EventType::Deleted, true, _) => EventType::Deleted,
            (EventType::Deleted, false, _) => return None,
            (_, false, true) => EventType::Added,
            (_, true, true) => EventType::Modified,
            (_, true, false) => EventType::Deleted,
            (_, false, false) => return None,
        };
        Some(self.encode(kind.as_str(), &ev.entry))
    }

    fn encode(&mut self, kind: &str, entry: &Entry) -> Bytes {
        let converted = !std::ptr::eq(self.res, conversion::storage_resource(self.res));
        match self.format {
            Format::Metadata => output::bytes_line(
                &json!({"type": kind, "object": output::partial_metadata(&entry.object())}),
            ),
            Format::Json if converted => {
                let obj = conversion::from_storage(self.res, entry.object());
                output::bytes_line(&json!({"type": kind, "object": obj}))
            }
            Format::Json => {
                let mut b = BytesMut::with_capacity(entry.json.len() + 32);
                b.put_slice(b"{\"type\":\"");
                b.put_slice(kind.as_bytes());
                b.put_slice(b"\",\"object\":");
                entry.json.write_to(&mut b);
                b.put_slice(b"}\n");
                b.freeze()
            }
            Format::Table(include) => {
                let rv = entry.mod_revision.to_string();
                let t = output::table(
                    self.res,
                    &[&conversion::from_storage(self.res, entry.object())],
                    &rv,
                    None,
                    include,
                    !self.sent_columns,
                );
                self.sent_columns = true;
                output::bytes_line(&json!({"type": kind, "object": t}))
            }
        }
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": md});
        output::bytes_line(&json!({"type": "BOOKMARK", "object": obj}))
    }
}

pub async fn serve(
    reg: Arc<Registry>,
    target: &Target,
    q: &Query,
    format: Format,
) -> Result<Response, ApiError> {
    let mut opts = list_options(target, q)?;
    let res = target.res;
    opts.fields = conversion::field_selector_to_storage(res, opts.fields);
    let prefix = match &target.namespace {
        Some(ns) if res.namespaced => format!("{}{}/", res.key_prefix(), ns),
        _ => res.key_prefix(),
    };
    let send_initial = q.flag("sendInitialEvents");
    let bookmarks = q.flag("allowWatchBookmarks");
    let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
    let after: i64 = match rv {
        Some(r) => r
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r:?}")))?,
        None => 0,
    };
    if send_initial && !bookmarks {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_secs(1800 + rand::random::<u64>() % 1800));
    let cache = reg.cache(res);
    // Without a version (or with sendInitialEvents) the client first gets the current state.
    let start_from_state = after == 0 || send_initial;
    if !start_from_state && !cache.wait_for(after, Duration::from_secs(3)).await {
        return Err(ApiError::timeout(format!(
            "Too large resource version: {after}, current: {}",
            cache.revision()
        )));
    }
    let mut filter = Filter {
        res,
        prefix: prefix.clone(),
        opts,
        format,
        sent_columns: false,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    let sub = if start_from_state {
        cache.subscribe(0, &prefix)
    } else {
        cache.subscribe(after, &prefix)
    };
    let sub = match sub {
        Ok(s) => s,
        Err(floor) => {
            // Upstream answers 200 and a single ERROR event carrying the 410.
            let status = ApiError::gone(format!("too old resource version: {after} ({floor})"))
                .status_json();
            let line = output::bytes_line(&json!({"type": "ERROR", "object": status}));
            return Ok(stream_response(Body::from(line)));
        }
    };
    tokio::spawn(async move {
        let mut last_rev = sub.revision;
        let mut live = sub.live;
        let mut out = Outlet {
            tx,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            res: res.plural,
        };
        for ev in &sub.backlog {
            if let Some(b) = filter.translate(ev) {
                if !out.send(b, &live).await {
                    return;
                }
            }
        }
        if send_initial && !out.send(filter.bookmark(last_rev, true), &live).await {
            return;
        }
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            // Everything published so far (all after the backlog: the cursor
            // was taken with it), then wait for more. A watcher whose client
            // reads slowly falls behind here and catches up from the events
            // it holds (see watchcache::Link).
            live.mark_seen();
            while let Some(ev) = live.next() {
                last_rev = ev.revision;
                if let Some(b) = filter.translate(&ev) {
                    if !out.send(b, &live).await {
                        return;
                    }
                }
                if out.too_far_behind(&live) {
                    return;
                }
            }
            tokio::select! {
                _ = &mut out.deadline => return,
                _ = out.tx.closed() => return,
                _ = cache.stopped() => return,
                _ = ticker.tick(), if bookmarks => {
                    if !out.send(filter.bookmark(last_rev, false), &live).await { return; }
                }
                _ = live.changed() => {}
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(stream_response(Body::from_stream(stream)))
}

/// Where a watch's events go: the response body, until the watch's deadline.
struct Outlet {
    tx: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    res: &'static str,
}

impl Outlet {
    /// Sends `b` once the body has room; false when the watch is over: the
    /// client went away, the deadline passed, or the client stopped reading
    /// while events kept coming. A watcher holds every event it has yet to
    /// send, so one whose client never reads must not hold them for ever
    /// (upstream's cacher likewise closes a watcher it cannot deliver to).
    async fn send(&mut self, b: Bytes, live: &Cursor) -> bool {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Ok(b));
                return true;
            }
            Err(mpsc::error::TrySendError::Closed(())) => return false,
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
        loop {
            tokio::select! {
                permit = self.tx.reserve() => {
                    let Ok(permit) = permit else { return false };
                    permit.send(Ok(b));
                    return true;
                }
                _ = &mut self.deadline => return false,
                _ = tokio::time::sleep(STALL_CHECK) => {
                    if self.too_far_behind(live) {
                        return false;
                    }
                }
            }
        }
    }

    fn too_far_behind(&self, live: &Cursor) -> bool {
        if !live.too_far_behind() {
            return false;
        }
        // As upstream's cacher does; the client resumes from its last
        // version (or re-lists on 410).
        tracing::warn!(resource = self.res, "closing a watch too slow to keep up");
        true
    }
}

fn stream_response(body: Body) -> Response {
    let mut resp = (http::StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, private"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn outlet(
        buffer: usize,
        deadline: Duration,
    ) -> (
        Outlet,
        mpsc::Receiver<Result<Bytes, std::convert::Infallible>>,
    ) {
        let (tx, rx) = mpsc::channel(buffer);
        let out = Outlet {
            tx,
            deadline: Box::pin(tokio::time::sleep(deadline)),
            res: "pods",
        };
        (out, rx)
    }

    #[tokio::test]
    async fn a_watch_whose_client_does_not_read_ends_at_its_deadline() {
        let (mut out, _rx) = outlet(1, Duration::from_millis(200));
        let live = Cursor::detached(0);
        assert!(out.send(Bytes::from_static(b"a"), &live).await);
        let start = Instant::now();
        // The body is full and nobody reads it: the deadline still holds.
        assert!(!out.send(Bytes::from_static(b"b"), &live).await);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_stalled_watch_too_far_behind_is_closed_before_its_deadline() {
        let (mut out, _rx) = outlet(1, Duration::from_secs(3600));
        let live = Cursor::detached(u64::MAX);
        assert!(out.send(Bytes::from_static(b"a"), &live).await);
        assert!(!out.send(Bytes::from_static(b"b"), &live).await);
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_event() {
        let (mut out, mut rx) = outlet(1, Duration::from_secs(3600));
        let live = Cursor::detached(0);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Ok(b)) = rx.recv().await {
                tokio::time::sleep(Duration::from_millis(5)).await;
                got.push(b);
            }
            got
        });
        for i in 0..5u8 {
            assert!(out.send(Bytes::from(vec![i]), &live).await);
        }
        drop(out);
        assert_eq!(reader.await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_client_gone_ends_the_watch() {
        let (mut out, rx) = outlet(1, Duration::from_secs(3600));
        drop(rx);
        assert!(
            !out.send(Bytes::from_static(b"a"), &Cursor::detached(0))
                .await
        );
    }
}
