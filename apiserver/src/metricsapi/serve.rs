//! The verbs of metrics.k8s.io/v1beta1: `get` and `list` of `nodes`
//! (cluster-scoped) and `pods` (namespaced, or across namespaces), with
//! label and field selectors applied to the nodes and pods themselves, as
//! metrics-server applies them. Only Running pods have metrics. Missing
//! metrics are NotFound in metrics-server's words
//! (`nodemetrics.metrics.k8s.io "n" not found`,
//! `podmetrics.metrics.k8s.io "ns/p" not found`); every other verb is
//! MethodNotAllowed.

use super::objects::{self, Item};
use super::scrape::{Scraper, RESOLUTION};
use crate::error::ApiError;
use crate::http::output::{self, Format};
use crate::http::request::{self, Target};
use crate::http::resources::{list_options, Call};
use crate::registry::{ListOptions, Registry};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource};
use std::collections::BTreeSet;

/// Serves one metrics.k8s.io request.
pub async fn handle(scraper: &Scraper, registry: &Registry, call: &Call<'_>) -> Response {
    serve(scraper, registry, call)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError {
        details: Some(json!({"name": name, "group": "metrics.k8s.io", "kind": kind})),
        ..ApiError::new(
            404,
            "NotFound",
            format!("{kind}.metrics.k8s.io \"{name}\" not found"),
        )
    }
}

fn core(plural: &str) -> Result<&'static Resource, ApiError> {
    catalog::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no {plural} in the catalog")))
}

async fn serve(
    scraper: &Scraper,
    registry: &Registry,
    call: &Call<'_>,
) -> Result<Response, ApiError> {
    let target = request::parse_path(call.path, &registry.served())?;
    if call.method != Method::GET || target.sub.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    if call.query.flag("watch") {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "watch is not supported on resources of kind \"{}.metrics.k8s.io\"",
                target.res.plural
            ),
        ));
    }
    let format = output::negotiate(call.accept.as_deref(), call.query.get("includeObject"));
    let items = match (target.res.plural, target.name.as_deref()) {
        ("nodes", Some(name)) => vec![node(scraper, registry, name).await?],
        ("nodes", None) => nodes(scraper, registry, &target, call).await?,
        ("pods", Some(name)) => {
            let ns = target.namespace.as_deref().unwrap_or("default");
            vec![pod(scraper, registry, ns, name).await?]
        }
        ("pods", None) => pods(scraper, registry, &target, call).await?,
        _ => return Err(ApiError::not_found_path()),
    };
    let single = target.name.is_some();
    let body = match format {
        Format::Table(include) => objects::table(&items, include),
        Format::Metadata if single => output::partial_metadata(&items[0].object),
        Format::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "items": items.iter().map(|i| output::partial_metadata(&i.object)).collect::<Vec<_>>(),
        }),
        Format::Json if single => items
            .into_iter()
            .next()
            .map(|i| i.object)
            .unwrap_or_default(),
        Format::Json => objects::list(
            target.res.kind,
            items.into_iter().map(|i| i.object).collect(),
        ),
    };
    Ok(output::value_response(StatusCode::OK, &body))
}

/// The selectors of a list, for the nodes or pods the metrics are of.
fn selection(target: &Target, call: &Call<'_>) -> Result<ListOptions, ApiError> {
    let opts = list_options(target, &call.query)?;
    Ok(ListOptions {
        labels: opts.labels,
        fields: opts.fields,
        ..ListOptions::default()
    })
}

async fn node(scraper: &Scraper, registry: &Registry, name: &str) -> Result<Item, ApiError> {
    let node = registry
        .get(core("nodes")?, None, name)
        .await
        .map_err(|e| {
            if e.code == 404 {
                not_found("nodemetrics", name)
            } else {
                e
            }
        })?;
    scraper.ensure(std::slice::from_ref(&node)).await;
    let usage = scraper
        .entry(name)
        .and_then(|e| e.node())
        .ok_or_else(|| not_found("nodemetrics", name))?;
    Ok(Item::node(&node, &usage))
}

async fn nodes(
    scraper: &Scraper,
    registry: &Registry,
    target: &Target,
    call: &Call<'_>,
) -> Result<Vec<Item>, ApiError> {
    let list = registry
        .list(core("nodes")?, None, &selection(target, call)?)
        .await?;
    let nodes: Vec<Value> = list.items.iter().map(|e| e.object()).collect();
    scraper.ensure(&nodes).await;
    Ok(nodes
        .iter()
        .filter_map(|n| {
            let usage = scraper.entry(crate::meta::name(n))?.node()?;
            Some(Item::node(n, &usage))
        })
        .collect())
}

fn running(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
}

fn node_name(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The metrics of `pods` that have them, scraping their nodes as needed.
async fn pod_items(
    scraper: &Scraper,
    registry: &Registry,
    pods: &[Value],
) -> Result<Vec<Item>, ApiError> {
    let names: BTreeSet<&str> = pods
        .iter()
        .filter(|p| running(p))
        .map(node_name)
        .filter(|n| !n.is_empty())
        .collect();
    let mut nodes = Vec::with_capacity(names.len());
    for name in names {
        match registry.get(core("nodes")?, None, name).await {
            Ok(n) => nodes.push(n),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    scraper.ensure(&nodes).await;
    Ok(pods
        .iter()
        .filter(|p| running(p))
        .filter_map(|p| {
            let ns = crate::meta::namespace(p).unwrap_or("");
            let usage = scraper
                .entry(node_name(p))?
                .pod(ns, crate::meta::name(p), RESOLUTION)?;
            Some(Item::pod(p, &usage))
        })
        .collect())
}

async fn pod(
    scraper: &Scraper,
    registry: &Registry,
    ns: &str,
    name: &str,
) -> Result<Item, ApiError> {
    let missing = || not_found("podmetrics", &format!("{ns}/{name}"));
    let pod = registry
        .get(core("pods")?, Some(ns), name)
        .await
        .map_err(|e| if e.code == 404 { missing() } else { e })?;
    pod_items(scraper, registry, std::slice::from_ref(&pod))
        .await?
        .pop()
        .ok_or_else(missing)
}

async fn pods(
    scraper: &Scraper,
    registry: &Registry,
    target: &Target,
    call: &Call<'_>,
) -> Result<Vec<Item>, ApiError> {
    let list = registry
        .list(
            core("pods")?,
            target.namespace.as_deref(),
            &selection(target, call)?,
        )
        .await?;
    let pods: Vec<Value> = list.items.iter().map(|e| e.object()).collect();
    pod_items(scraper, registry, &pods).await
}
