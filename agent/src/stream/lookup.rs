//! From a request's namespace, pod and container names to what is on this
//! node: the pod (from the API, bound here), the running container of that
//! name (newest attempt, from the runtime's metadata), the log file kubelet
//! would read (current or previous attempt, chosen by the container's
//! status as kubelet does), and the pod's network namespace. Errors carry
//! kubelet's status codes and words.

use super::logs;
use crate::runtime::container::{ContainerMeta, State};
use crate::runtime::sandbox::Sandbox;
use crate::runtime::Runtime;
use http::StatusCode;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::Api;
use kube::{Client, ResourceExt};
use std::path::PathBuf;

/// An answer other than success: status and plain-text message.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

/// The pod, if it exists and is bound to this node.
pub async fn pod(client: &Client, node: &str, ns: &str, name: &str) -> Result<Pod, HttpError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let missing = || {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("pod {name:?} does not exist"),
        )
    };
    match api.get_opt(name).await {
        Ok(Some(p)) if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) => Ok(p),
        Ok(_) => Err(missing()),
        Err(e) => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("looking up pod {name:?}: {e}"),
        )),
    }
}

fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// The newest running instance of `container` in the pod.
pub fn running_container(
    runtime: &Runtime,
    pod: &Pod,
    container: &str,
) -> Result<ContainerMeta, HttpError> {
    let uid = pod.uid().unwrap_or_default();
    let mut mine: Vec<ContainerMeta> = runtime
        .list()
        .into_iter()
        .filter(|m| m.pod_uid == uid && m.name == container)
        .collect();
    mine.sort_by_key(|m| std::cmp::Reverse(m.attempt));
    mine.into_iter()
        .find(|m| matches!(runtime.state(&m.id), State::Running(_)))
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("container not found ({container:?})"),
            )
        })
}

fn status_of<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .chain(st.init_container_statuses.iter())
        .chain(st.ephemeral_container_statuses.iter())
        .flatten()
        .find(|s| s.name == container)
}

/// The log to read for `container` and, to follow it, the id of the
/// container writing it.
pub fn log_source(
    runtime: &Runtime,
    pod: &Pod,
    container: &str,
    previous: bool,
) -> Result<(PathBuf, Option<String>), HttpError> {
    let name = pod.name_any();
    if !has_container(pod, container) {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {name:?}"),
        ));
    }
    let bad = |m: String| HttpError::new(StatusCode::BAD_REQUEST, m);
    let uid = pod.uid().unwrap_or_default();
    let dir = runtime
        .dirs
        .pod_logs(&pod.namespace().unwrap_or_default(), &name, &uid)
        .join(container);
    let attempts = logs::attempts(&dir);
    let newest = attempts.last().cloned();
    let second = attempts
        .len()
        .checked_sub(2)
        .and_then(|i| attempts.get(i).cloned());
    let status = status_of(pod, container);
    let state = status.and_then(|s| s.state.as_ref());
    let current_exists = state.is_some_and(|s| s.running.is_some() || s.terminated.is_some());
    let last_terminated = status
        .and_then(|s| s.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_some();
    let chosen = if previous {
        let no_previous = || {
            bad(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            ))
        };
        if status.is_some() && !last_terminated {
            return Err(no_previous());
        }
        // While the next instance waits (CrashLoopBackOff), the newest log is
        // the previous instance's.
        let pick = if current_exists || status.is_none() {
            second
        } else {
            newest
        };
        pick.ok_or_else(no_previous)?
    } else {
        match (newest, state.and_then(|s| s.waiting.as_ref())) {
            (Some(n), _) if current_exists || last_terminated || status.is_none() => n,
            (_, Some(w)) => {
                let why = match w.reason.as_deref().unwrap_or("") {
                    "ErrImagePull" => "image can't be pulled".to_string(),
                    "ImagePullBackOff" => "trying and failing to pull image".to_string(),
                    other => other.to_string(),
                };
                return Err(bad(format!(
                    "container {container:?} in pod {name:?} is waiting to start: {why}"
                )));
            }
            _ => {
                return Err(bad(format!(
                    "container {container:?} in pod {name:?} is waiting to start - no logs yet"
                )))
            }
        }
    };
    let (attempt, path) = chosen;
    let writer = runtime
        .list()
        .into_iter()
        .find(|m| m.pod_uid == uid && m.name == container && m.attempt == attempt)
        .map(|m| m.id);
    Ok((path, writer))
}

/// The pod's network namespace, `None` when it uses the node's.
pub fn netns(runtime: &Runtime, pod: &Pod) -> Option<PathBuf> {
    let sandbox = Sandbox::for_pod(runtime.dirs.pods.join(pod.uid().unwrap_or_default()), pod);
    (!sandbox.host_network()).then(|| sandbox.namespace("net"))
}
