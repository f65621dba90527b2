//! The generic registry: one store for every kind, as upstream's
//! `registry/generic/registry/store.go`. It owns the metadata rules (names,
//! uid, generation, resourceVersion preconditions, finalizers, graceful
//! deletion) and calls a kind's strategy (`strategy`) for defaults,
//! validation and the spec/status split.

pub mod ipalloc;
mod jobsuccess;
mod limitranger;
pub mod priority;
mod resourcequota;
pub mod serviceaccount;
mod storageclass;
pub mod strategy;
pub mod subresources;
pub mod validation;

use crate::error::{ApiError, Cause};
use crate::fieldvalidation;
use crate::meta;
use crate::storage::{Storage, StorageError};
use crate::watchcache::{CacheStats, Entry, WatchCache};
use bytes::Bytes;
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource, Served};
use skiff_machinery::{fields, labels};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct Registry {
    pub storage: Arc<dyn Storage>,
    caches: HashMap<String, Arc<WatchCache>>,
    /// The custom resources served now, and a watch cache per CRD.
    served: RwLock<Served>,
    custom_caches: RwLock<HashMap<String, Arc<WatchCache>>>,
    history_total: Arc<AtomicUsize>,
    pub services: ipalloc::ServiceAllocator,
}

#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub labels: labels::Selector,
    pub fields: fields::Selector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Arc<Entry>>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force` of an apply patch: take over fields other managers own.
    pub force: Option<bool>,
    /// A subresource written through the main object (`scale`), as its
    /// managedFields entry names it.
    pub subresource: Option<&'static str>,
    /// Set by server-side apply, whose object already carries its
    /// managedFields: the registry records no Update entry of its own.
    pub applied: bool,
    pub field_validation: fieldvalidation::Mode,
    /// Where `Warn` field validation leaves its messages for the response headers.
    pub warnings: Warnings,
    /// What the request's user must be allowed to write (RBAC's escalation
    /// check); none for the server's own writes.
    pub admit: Option<Admission>,
}

/// A check of an object about to be written (the new one, and the old one
/// of an update), on behalf of the request's user.
#[derive(Clone)]
#[allow(clippy::type_complexity)] // one closure type, named here
pub struct Admission(
    pub Arc<dyn Fn(&Resource, Part, &Value, Option<&Value>) -> Result<(), ApiError> + Send + Sync>,
);

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

/// Warnings collected while serving one request (`Warning: 299 - "…"` headers).
#[derive(Debug, Default, Clone)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    pub fn push(&self, w: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(w);
        }
    }

    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Drops fields the kind does not declare; Strict makes them an error.
pub(crate) fn check_fields(
    res: &Resource,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let unknown = fieldvalidation::prune_unknown(res, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    match opts.field_validation {
        fieldvalidation::Mode::Strict => Err(fieldvalidation::strict_error(res, &unknown)),
        fieldvalidation::Mode::Warn => {
            for f in unknown {
                opts.warnings.push(format!("unknown field \"{f}\""));
            }
            Ok(())
        }
        fieldvalidation::Mode::Ignore => Ok(()),
    }
}

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// How an update came in: which part of the object it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
    /// A namespace's `finalize` subresource: only spec.finalizers changes.
    Finalize,
    /// A pod's `ephemeralcontainers` subresource: only
    /// spec.ephemeralContainers changes.
    EphemeralContainers,
}

/// Stored form: the object without its resourceVersion (the store's revision
/// is it), written without copying the object first.
fn encode(obj: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&StoredForm(obj)).unwrap_or_default())
}

/// An object serialized as stored: `metadata.resourceVersion` left out.
struct StoredForm<'a>(&'a Value);

/// A map serialized without one of its keys.
struct Without<'a>(&'a serde_json::Map<String, Value>, &'static str);

impl serde::Serialize for Without<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().filter(|(k, _)| *k != self.1))
    }
}

impl serde::Serialize for StoredForm<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.0 else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &Without(meta, "resourceVersion"))?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

fn decode(kv: &crate::storage::KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("undecodable object at {}: {e}", kv.key)))?;
    meta::set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The continue token, as upstream encodes it: base64 of `{"v","rv","start"}`.
/// One page of a snapshot at `rev`: up to `opts.limit` matching objects
/// after the key `start_after`, with a continue token when keys remain (and,
/// without selectors, how many, as upstream's remainingItemCount).
fn page(
    snapshot: &[Arc<Entry>],
    rev: i64,
    start_after: Option<&str>,
    opts: &ListOptions,
) -> ListResult {
    let from = start_after.map_or(0, |k| snapshot.partition_point(|e| e.key.as_str() <= k));
    let mut items = Vec::new();
    let mut next = from;
    for e in &snapshot[from..] {
        next += 1;
        if e.matches(&opts.labels, &opts.fields) {
            items.push(e.clone());
            if opts.limit > 0 && items.len() == opts.limit {
                break;
            }
        }
    }
    let more = next < snapshot.len();
    let unfiltered = opts.labels.is_empty() && opts.fields.is_empty();
    ListResult {
        continue_token: items
            .last()
            .filter(|_| more)
            .map(|e| encode_continue(rev, &e.key)),
        remaining: (more && unfiltered).then(|| (snapshot.len() - next) as i64),
        items,
        revision: rev,
    }
}

fn encode_continue(rev: i64, start_after: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start_after});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rev, start.to_string()))
}

fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

impl Registry {
    /// Starts a watch cache per stored resource.
    pub async fn new(
        storage: Arc<dyn Storage>,
        service_cidr: &str,
    ) -> anyhow::Result<Arc<Registry>> {
        let mut caches = HashMap::new();
        let history_total = Arc::new(AtomicUsize::new(0));
        for res in catalog::RESOURCES.iter().filter(|r| r.stored) {
            let prefix = res.key_prefix();
            caches.entry(prefix.clone()).or_insert_with(|| {
                WatchCache::start(storage.clone(), prefix, history_total.clone(), &[])
            });
        }
        let services = ipalloc::ServiceAllocator::new(service_cidr)?;
        Ok(Arc::new(Registry {
            storage,
            caches,
            served: RwLock::default(),
            custom_caches: RwLock::default(),
            history_total,
            services,
        }))
    }

    /// The resources served now, the custom ones included.
    pub fn served(&self) -> Served {
        self.served.read().expect("served lock").clone()
    }

    /// Serves these custom resources from now on: a watch cache starts for
    /// each new one, and those no longer served stop.
    pub fn serve_custom(&self, custom: Vec<&'static Resource>) {
        // Each CRD's prefix, with the fields its versions make selectable.
        let mut wanted: HashMap<String, Vec<&'static str>> = HashMap::new();
        for res in &custom {
            let fields = wanted.entry(res.key_prefix()).or_default();
            for f in res.custom.iter().flat_map(|c| &c.selectable) {
                if !fields.contains(f) {
                    fields.push(f);
                }
            }
        }
        {
            let mut caches = self.custom_caches.write().expect("caches lock");
            // A cache whose CRD went, or whose selectable fields changed, stops.
            caches.retain(|prefix, cache| {
                let keep = wanted
                    .get(prefix)
                    .is_some_and(|fields| fields.iter().all(|f| cache.fields.contains(f)));
                if !keep {
                    cache.stop();
                }
                keep
            });
            for (prefix, fields) in wanted {
                caches.entry(prefix.clone()).or_insert_with(|| {
                    WatchCache::start(
                        self.storage.clone(),
                        prefix,
                        self.history_total.clone(),
                        &fields,
                    )
                });
            }
        }
        *self.served.write().expect("served lock") = Served::with_custom(custom);
    }

    /// Gauges of the watch caches, in the Prometheus text format: objects
    /// per resource (upstream's `apiserver_storage_objects`), and the events
    /// and bytes each history holds for watches that resume.
    pub fn cache_metrics(&self) -> String {
        let mut rows: Vec<(String, CacheStats)> = catalog::stored()
            .filter_map(|r| {
                let cache = self.caches.get(&r.key_prefix())?;
                Some((crate::error::qualified(r), cache.stats()))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        let header = |out: &mut String, name: &str, help: &str| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        };
        let mut gauge = |name: &str, help: &str, value: fn(&CacheStats) -> usize| {
            header(&mut out, name, help);
            for (res, stats) in &rows {
                out.push_str(&format!("{name}{{resource=\"{res}\"}} {}\n", value(stats)));
            }
        };
        gauge(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            |s| s.objects,
        );
        gauge(
            "skiff_watch_cache_history_events",
            "Events the watch cache keeps for watches that resume from an older resourceVersion.",
            |s| s.history_events,
        );
        gauge(
            "skiff_watch_cache_history_bytes",
            "Approximate memory held by those events.",
            |s| s.history_bytes,
        );
        let (pieces, bytes) = crate::sharedjson::held();
        for (name, help, value) in [
            (
                "skiff_watch_cache_shared_pieces",
                "Parts of cached objects' JSON held once for all the objects that repeat them.",
                pieces,
            ),
            (
                "skiff_watch_cache_shared_bytes",
                "The text of those parts, in bytes.",
                bytes,
            ),
        ] {
            header(&mut out, name, help);
            out.push_str(&format!("{name} {value}\n"));
        }
        out
    }

    /// The watch cache of a served resource. A custom resource whose CRD
    /// went away meanwhile gets a cache of its own that is never fed.
    pub fn cache(&self, res: &Resource) -> Arc<WatchCache> {
        let prefix = res.key_prefix();
        if let Some(cache) = self.caches.get(&prefix) {
            return cache.clone();
        }
        let custom = self.custom_caches.read().expect("caches lock");
        match custom.get(&prefix) {
            Some(cache) => cache.clone(),
            None => WatchCache::unfed(prefix),
        }
    }

    /// Waits until every cache has synced with storage once.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        for cache in self.caches.values() {
            // Every cache reaches revision 1 or more once its first list is in.
            if !cache.wait_for(1, timeout).await {
                return false;
            }
        }
        true
    }

    fn list_prefix(res: &Resource, ns: Option<&str>) -> String {
        match ns.filter(|_| res.namespaced) {
            Some(ns) => format!("{}{}/", res.key_prefix(), ns),
            None => res.key_prefix(),
        }
    }

    pub async fn get(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = res.key(ns, name);
        match self.storage.get(&key).await? {
            Some(kv) => decode(&kv),
            None => Err(ApiError::not_found(res, name)),
        }
    }

    /// Lists with upstream's resourceVersion semantics: `0` (or NotOlderThan)
    /// from the cache at once; unset (consistent) from the cache once it has
    /// caught up with storage, else from storage. Paged lists are cut from a
    /// cache snapshot their continuations reuse; exact reads and
    /// continuations whose snapshot is gone read storage at their revision.
    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let prefix = Self::list_prefix(res, ns);
        let cache = self.cache(res);
        if let Some(token) = &opts.continue_token {
            let (rev, start) = decode_continue(token)?;
            if let Some(snapshot) = cache.snapshots.at(&prefix, rev) {
                return Ok(page(&snapshot, rev, Some(&start), opts));
            }
            return self
                .list_from_storage(res, &prefix, opts, rev, Some(start))
                .await;
        }
        let rv = opts.resource_version.as_deref().filter(|s| !s.is_empty());
        let exact = opts.resource_version_match.as_deref() == Some("Exact");
        match rv {
            Some(rv) if exact => {
                let rev = parse_rv(rv)?;
                if let Some(snapshot) = cache.snapshots.at(&prefix, rev) {
                    return Ok(page(&snapshot, rev, None, opts));
                }
                self.list_from_storage(res, &prefix, opts, rev, None).await
            }
            Some(rv) => {
                // NotOlderThan (also "0": any): the cache, once it reached `rv`.
                let rev = parse_rv(rv)?;
                if rev > 0 && !cache.wait_for(rev, Duration::from_secs(3)).await {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {rev}, current: {}",
                        cache.revision()
                    )));
                }
                Ok(self.list_from_cache(res, &prefix, opts))
            }
            None => {
                let rev = self.storage.current_revision().await?;
                if !cache.wait_for(rev, Duration::from_millis(100)).await {
                    return self.list_from_storage(res, &prefix, opts, rev, None).await;
                }
                if opts.limit == 0 {
                    return Ok(self.list_from_cache(res, &prefix, opts));
                }
                let (all, revision) = cache.list(&prefix);
                let snapshot = cache.snapshots.keep(&prefix, revision, all);
                Ok(page(&snapshot, revision, None, opts))
            }
        }
    }

    fn list_from_cache(&self, res: &Resource, prefix: &str, opts: &ListOptions) -> ListResult {
        let (all, revision) = self.cache(res).list(prefix);
        let items = all
            .into_iter()
            .filter(|e| e.matches(&opts.labels, &opts.fields))
            .collect();
        ListResult {
            items,
            revision,
            continue_token: None,
            remaining: None,
        }
    }

    async fn list_from_storage(
        &self,
        res: &Resource,
        prefix: &str,
        opts: &ListOptions,
        rev: i64,
        mut start: Option<String>,
    ) -> Result<ListResult, ApiError> {
        let mut items = Vec::new();
        let want = opts.limit;
        loop {
            let batch = if want > 0 {
                (want - items.len()).max(64)
            } else {
                0
            };
            let page = self.storage.list(prefix, start.as_deref(), batch, rev).await.map_err(|e| match e {
                StorageError::Compacted { .. } if opts.continue_token.is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => other.into(),
            })?;
            for kv in &page.items {
                if let Some(entry) = Entry::from_kv(kv, &self.cache(res).fields) {
                    if entry.matches(&opts.labels, &opts.fields) {
                        items.push(Arc::new(entry));
                        if want > 0 && items.len() == want {
                            let last = kv.key.clone();
                            let more = page.more
                                || page.items.last().map(|l| l.key != last).unwrap_or(false);
                            let token = more.then(|| encode_continue(rev, &last));
                            return Ok(ListResult {
                                items,
                                revision: rev,
                                continue_token: token,
                                remaining: None,
                            });
                        }
                    }
                }
            }
            if !page.more || page.items.is_empty() {
                return Ok(ListResult {
                    items,
                    revision: rev,
                    continue_token: None,
                    remaining: None,
                });
            }
            start = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// Checks the namespace of a new namespaced object exists and is not terminating.
    async fn check_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let ns_res = catalog::lookup("", "v1", "namespaces").expect("namespaces in catalog");
        let key = ns_res.key(None, ns);
        // The cache answers almost always; storage only for a namespace made a moment ago.
        let obj = match self.cache(ns_res).get(&key) {
            Some(entry) => entry.object(),
            None => match self.storage.get(&key).await? {
                Some(kv) => decode(&kv)?,
                None => return Err(ApiError::not_found(ns_res, ns)),
            },
        };
        if meta::deletion_timestamp(&obj).is_some()
            || obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        {
            let mut err = ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ));
            err.details = Some(
                json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
            );
            return Err(err);
        }
        Ok(())
    }

    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        strategy::check_type(res, &obj)?;
        obj = meta::with_type(obj, &res.api_version(), res.kind);
        check_fields(res, &mut obj, opts)?;
        let m = meta::metadata_mut(&mut obj);
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = if name.is_empty() {
            match m
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
            {
                Some(prefix) => format!("{prefix}{}", meta::random_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        res,
                        "",
                        vec![Cause {
                            message: "Required value: name or generateName is required".into(),
                            ..Cause::required("metadata.name")
                        }],
                    ))
                }
            }
        } else {
            name
        };
        m.insert("name".into(), Value::String(name.clone()));
        if res.namespaced {
            let url_ns = ns.unwrap_or("default");
            match m.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {}
            }
            m.insert("namespace".into(), Value::String(url_ns.into()));
        } else {
            m.remove("namespace");
        }
        m.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        m.insert(
            "creationTimestamp".into(),
            Value::String(meta::now_rfc3339()),
        );
        for gone in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(gone);
        }
        if strategy::tracks_generation(res) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        strategy::apply_defaults(res, &mut obj);
        if !opts.applied {
            strategy::track_update(res, Part::Main, opts, None, &mut obj);
        }
        strategy::prepare_create(self, res, &mut obj).await?;
        let causes = validation::validate(res, &obj, None);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, &name, causes));
        }
        if let Some(admit) = &opts.admit {
            (admit.0)(res, Part::Main, &obj, None)?;
        }
        if res.namespaced {
            self.check_namespace(meta::namespace(&obj).unwrap_or("default"))
                .await?;
            resourcequota::charge(self, res, &obj, opts.dry_run).await?;
        }
        if opts.dry_run {
            return Ok(obj);
        }
        let key = res.key(meta::namespace(&obj), &name);
        match self.storage.create(&key, encode(&obj)).await {
            Ok(rev) => {
                meta::set_resource_version(&mut obj, rev);
                Ok(obj)
            }
            Err(StorageError::AlreadyExists(_)) => {
                strategy::release(self, res, &obj);
                Err(ApiError::already_exists(res, &name))
            }
            Err(e) => {
                strategy::release(self, res, &obj);
                Err(e.into())
            }
        }
    }

    /// Read-modify-write with optimistic concurrency. `mutate` gets the current
    /// object and returns the desired one; a stale resourceVersion in the result
    /// is a 409, and a storage race is retried only when the caller gave no
    /// resourceVersion (as upstream's GuaranteedUpdate does). An "Update"
    /// records its field manager's changes in managedFields; for an "Apply",
    /// `mutate` has computed them.
    #[allow(clippy::too_many_arguments)] // the verb's whole context; a struct would only rename it
    pub async fn update_with<F>(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        operation: &str,
        mut mutate: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let key = res.key(ns, name);
        for _attempt in 0..16 {
            let kv = self
                .storage
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found(res, name))?;
            // Defaulted as read, as upstream decodes stored objects: one
            // stored before a default existed compares with the update.
            let mut old = decode(&kv)?;
            strategy::apply_defaults(res, &mut old);
            let mut new = mutate(&old)?;
            if !new.is_object() {
                return Err(ApiError::bad_request(
                    "the body of the request must be an object",
                ));
            }
            strategy::check_type(res, &new)?;
            new = meta::with_type(new, &res.api_version(), res.kind);
            check_fields(res, &mut new, opts)?;
            let given_rv = meta::resource_version(&new).map(String::from);
            if let Some(rv) = &given_rv {
                if rv != &kv.mod_revision.to_string() {
                    return Err(ApiError::modified(res, name));
                }
            }
            if meta::name(&new) != name && !meta::name(&new).is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name(&new)
                )));
            }
            strategy::prepare_update(res, &old, &mut new, part);
            // Upstream defaults every object it decodes, an update's too: a
            // replaced Deployment without a strategy gets RollingUpdate again.
            if part == Part::Main {
                strategy::apply_defaults(res, &mut new);
            }
            if operation == "Update" {
                strategy::track_update(res, part, opts, Some(&old), &mut new);
            }
            strategy::prepare_update_kind(self, res, &old, &mut new).await?;
            let causes = validation::validate(res, &new, Some(&old));
            if !causes.is_empty() {
                return Err(ApiError::invalid(res, name, causes));
            }
            if let Some(admit) = &opts.admit {
                (admit.0)(res, part, &new, Some(&old))?;
            }
            // A deleting object whose last finalizer went away is gone now.
            if meta::deletion_timestamp(&new).is_some()
                && meta::finalizers(&new).is_empty()
                && strategy::spec_finalizers(res, &new).is_empty()
                && !opts.dry_run
            {
                let pending_grace = new
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if pending_grace == 0 {
                    return match self.storage.delete(&key, Some(kv.mod_revision)).await {
                        Ok((rev, _)) => {
                            strategy::release(self, res, &new);
                            meta::set_resource_version(&mut new, rev);
                            Ok(new)
                        }
                        Err(StorageError::Conflict { .. }) if given_rv.is_none() => continue,
                        Err(StorageError::Conflict { .. }) => Err(ApiError::modified(res, name)),
                        Err(e) => Err(e.into()),
                    };
                }
            }
            meta::set_resource_version(&mut new, kv.mod_revision);
            if new == old || opts.dry_run {
                return Ok(new);
            }
            match self.write_over(&key, new, kv.mod_revision).await {
                Ok(Some(written)) => return Ok(written),
                Ok(None) if given_rv.is_none() => continue,
                Ok(None) => return Err(ApiError::modified(res, name)),
                Err(StorageError::NotFound(_)) => return Err(ApiError::not_found(res, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            res,
            name,
            "too many concurrent updates, please retry",
        ))
    }

    /// Stores `new` over the version that was read; `None` when another
    /// write got there first (the caller decides whether to retry).
    async fn write_over(
        &self,
        key: &str,
        mut new: Value,
        read: i64,
    ) -> Result<Option<Value>, StorageError> {
        match self.storage.update(key, encode(&new), read).await {
            Ok(rev) => {
                meta::set_resource_version(&mut new, rev);
                Ok(Some(new))
            }
            Err(StorageError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = res.key(ns, name);
        for _attempt in 0..16 {
            let kv = self
                .storage
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found(res, name))?;
            let old = decode(&kv)?;
            if let Some(uid) = &opts.precondition_uid {
                if meta::uid(&old) != Some(uid.as_str()) {
                    return Err(ApiError::conflict(
                        res,
                        name,
                        &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&old).unwrap_or("")
                    ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv != &kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(res, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    )));
                }
            }
            let mut new = old.clone();
            let grace = strategy::grace_period(res, &old, opts.grace_period_seconds);
            let mut finalizers = meta::finalizers(&old);
            match opts.propagation_policy.as_deref() {
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.retain(|f| f != "orphan");
                    finalizers.push("foregroundDeletion".into());
                }
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.retain(|f| f != "foregroundDeletion");
                    finalizers.push("orphan".into());
                }
                Some("Background") => {
                    finalizers.retain(|f| f != "orphan" && f != "foregroundDeletion")
                }
                Some(p @ ("Foreground" | "Orphan")) => {
                    let _ = p;
                }
                Some(other) => {
                    return Err(ApiError::invalid(
                        res,
                        name,
                        vec![Cause::not_supported(
                            "propagationPolicy",
                            &json!(other),
                            &["Foreground", "Background", "Orphan"],
                        )],
                    ))
                }
                None => {}
            }
            let already = meta::deletion_timestamp(&old).is_some();
            strategy::finalizers_on_delete(res, &mut finalizers);
            let old_grace = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            let needs_wait = !finalizers.is_empty()
                || grace > 0
                || !strategy::spec_finalizers(res, &old).is_empty();
            if !needs_wait {
                if opts.dry_run {
                    return Ok(old);
                }
                match self.storage.delete(&key, Some(kv.mod_revision)).await {
                    Ok((rev, _)) => {
                        strategy::release(self, res, &old);
                        let mut gone = old;
                        meta::set_resource_version(&mut gone, rev);
                        return Ok(gone);
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(StorageError::NotFound(_)) => return Err(ApiError::not_found(res, name)),
                    Err(e) => return Err(e.into()),
                }
            }
            // Graceful or finalized deletion: mark it and let the owners finish.
            let m = meta::metadata_mut(&mut new);
            if !already || old_grace.is_some_and(|g| grace < g) {
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                m.insert("deletionTimestamp".into(), Value::String(meta::rfc3339(at)));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), json!(finalizers));
            }
            strategy::mark_deleting(res, &mut new, !already);
            if new == old || opts.dry_run {
                return Ok(new);
            }
            match self.write_over(&key, new, kv.mod_revision).await? {
                Some(written) => return Ok(written),
                None => continue,
            }
        }
        Err(ApiError::conflict(
            res,
            name,
            "too many concurrent updates, please retry",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_leaves_out_only_the_resource_version() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "42", "uid": "u",
                         "labels": {"resourceVersion": "kept"}},
            "spec": {"resourceVersion": "kept"}});
        let stored: Value = serde_json::from_slice(&encode(&obj)).unwrap();
        let mut want = obj.clone();
        meta::clear_resource_version(&mut want);
        assert_eq!(stored, want);
        let text = String::from_utf8(encode(&obj).to_vec()).unwrap();
        assert!(text
            .starts_with(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","uid":"u","#));
    }
}
