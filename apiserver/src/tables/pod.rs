//! Pods and pod templates: upstream `printPod` / `printPodTemplate` (v1.33).
//!
//! The STATUS cell is the subtle part: it starts from the phase (or
//! `status.reason`), is overridden while init containers run, then by the
//! waiting/terminated reason of regular containers scanned last-to-first,
//! and finally by deletion ("Terminating", or "Unknown" for a lost node).

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::Value;

use super::docs;
use super::fields::{arr_at, at, deleting, int_at, name, opt_bool, opt_str, str_at};
use super::labels::format_labels;
use super::time::{age, since, ts_at};
use super::{col, wide, Column, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

pub(super) static POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", docs::POD_IP),
    wide("Node", "string", docs::POD_NODE_NAME),
    wide("Nominated Node", "string", docs::POD_NOMINATED_NODE_NAME),
    wide("Readiness Gates", "string", docs::POD_READINESS_GATES),
];

pub(super) static POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DESC),
    col("Images", "string", IMAGES_DESC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

/// Containers' names and images, each comma-joined (`layoutContainerCells`).
pub(super) fn containers_and_images(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

pub(super) fn pod_template_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(at(obj, &["template", "spec"]));
    let labels =
        format_labels(at(obj, &["template", "metadata", "labels"]).and_then(Value::as_object));
    row![name(obj), names, images, labels]
}

/// A sidecar: an init container with `restartPolicy: Always`.
fn is_restartable(container: Option<&Value>) -> bool {
    container.is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
}

/// Whether any `Ready` condition is True (`hasPodReadyCondition`).
fn has_ready_condition(status: &Value) -> bool {
    arr_at(status, &["conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True")
}

/// The first `Initialized` condition decides (`isPodInitializedConditionTrue`).
fn initialized(status: &Value) -> bool {
    arr_at(status, &["conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// "Reason" for a terminated state without one: the signal, else the exit code.
fn terminated_reason(term: &Value, prefix: &str) -> String {
    let reason = str_at(term, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int_at(term, &["signal"]);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int_at(term, &["exitCode"]))
    }
}

/// Later of the running maximum and this container's last termination.
fn bump_last_restart(last: &mut Option<Timestamp>, container: &Value) {
    if at(container, &["lastState", "terminated"]).is_some_and(|t| !t.is_null()) {
        if let Some(t) = ts_at(container, &["lastState", "terminated", "finishedAt"]) {
            if last.is_none_or(|l| l < t) {
                *last = Some(t);
            }
        }
    }
}

fn state<'a>(container: &'a Value, which: &str) -> Option<&'a Value> {
    at(container, &["state", which]).filter(|v| !v.is_null())
}

pub(super) fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let status = pod.get("status").unwrap_or(&Value::Null);
    let phase = str_at(status, &["phase"]);

    let mut total = arr_at(spec, &["containers"]).len();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut reason = match str_at(status, &["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr_at(status, &["conditions"]).iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".into();
    }

    let init_specs: HashMap<&str, &Value> = arr_at(spec, &["initContainers"])
        .iter()
        .map(|c| (str_at(c, &["name"]), c))
        .collect();
    let init_count = arr_at(spec, &["initContainers"]).len();
    // Sidecars count towards READY's denominator.
    total += arr_at(spec, &["initContainers"])
        .iter()
        .filter(|c| is_restartable(Some(c)))
        .count();

    let mut initializing = false;
    for (i, c) in arr_at(status, &["initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let sidecar = is_restartable(init_specs.get(str_at(c, &["name"])).copied());
        restarts += int_at(c, &["restartCount"]);
        bump_last_restart(&mut last_restart, c);
        if sidecar {
            sidecar_restarts += int_at(c, &["restartCount"]);
            bump_last_restart(&mut last_sidecar_restart, c);
        }
        let terminated = state(c, "terminated");
        let waiting_reason = state(c, "waiting")
            .map(|w| str_at(w, &["reason"]))
            .unwrap_or("");
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && opt_bool(c, &["started"]) == Some(true) {
            if opt_bool(c, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            terminated_reason(t, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        initializing = true;
        break;
    }

    if !initializing || initialized(status) {
        // Only sidecar restarts carry over once the pod is initialized.
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr_at(status, &["containerStatuses"]).iter().rev() {
            restarts += int_at(c, &["restartCount"]);
            bump_last_restart(&mut last_restart, c);
            let waiting_reason = state(c, "waiting")
                .map(|w| str_at(w, &["reason"]))
                .unwrap_or("");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = state(c, "terminated") {
                reason = terminated_reason(t, "");
            } else if opt_bool(c, &["ready"]) == Some(true) && state(c, "running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A finished container listed first must not mask running ones.
        if reason == "Completed" && has_running {
            reason = if has_ready_condition(status) {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if deleting(pod) {
        if str_at(status, &["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    row![
        name(pod),
        format!("{ready}/{total}"),
        reason,
        restarts_cell,
        age(pod, now),
        pod_ip(status),
        or_none(str_at(spec, &["nodeName"])),
        or_none(str_at(status, &["nominatedNodeName"])),
        readiness_gates(spec, status),
    ]
}

/// `status.podIP` is authoritative over `status.podIPs` (v1 conversion rule).
fn pod_ip(status: &Value) -> String {
    let ip = opt_str(status, &["podIP"])
        .filter(|s| !s.is_empty())
        .or_else(|| {
            arr_at(status, &["podIPs"])
                .first()
                .map(|p| str_at(p, &["ip"]))
        })
        .unwrap_or("");
    or_none(ip)
}

/// "true gates/all gates", or "<none>" without readiness gates.
fn readiness_gates(spec: &Value, status: &Value) -> String {
    let gates = arr_at(spec, &["readinessGates"]);
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = arr_at(status, &["conditions"]);
    let met = gates
        .iter()
        .filter(|g| {
            let t = str_at(g, &["conditionType"]);
            conditions
                .iter()
                .find(|c| str_at(c, &["type"]) == t)
                .is_some_and(|c| str_at(c, &["status"]) == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>" } else { s }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(pod: Value) -> Vec<Value> {
        pod_cells(&pod, now())
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts,
               "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}})
    }

    #[test]
    fn running_pod_with_wide_cells() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}],
                     "readinessGates": [{"conditionType": "x/ready"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                       "conditions": [{"type": "x/ready", "status": "True"}],
                       "containerStatuses": [running("a", true, 0), running("b", false, 0)]}
        });
        assert_eq!(
            cells(pod),
            vec![
                json!("web"),
                json!("1/2"),
                json!("Running"),
                json!("0"),
                json!("5m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("1/1")
            ]
        );
    }

    #[test]
    fn pending_pod_defaults() {
        let c = cells(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
                             "status": {"phase": "Pending"}}),
        );
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Pending");
        assert_eq!(c[4], "<unknown>");
        assert_eq!(c[5], "<none>");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[8], "<none>");
    }

    #[test]
    fn crash_loop_and_restarts_ago() {
        let c = cells(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}}
            }]}
        }));
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "3 (5m ago)");
    }

    #[test]
    fn restarts_without_last_state_is_plain_count() {
        let c = cells(json!({"spec": {"containers": [{"name": "a"}]},
                             "status": {"containerStatuses": [running("a", true, 2)]}}));
        assert_eq!(c[3], "2");
    }

    #[test]
    fn completed_and_terminated_reasons() {
        let done =
            json!({"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let c = cells(json!({"spec": {"containers": [{"name": "a"}]},
                             "status": {"phase": "Succeeded", "containerStatuses": [done]}}));
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Completed");

        let signal = json!({"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}});
        let c = cells(json!({"spec": {"containers": [{"name": "a"}]},
                             "status": {"phase": "Failed", "containerStatuses": [signal]}}));
        assert_eq!(c[2], "Signal:9");

        let code = json!({"name": "a", "state": {"terminated": {"exitCode": 2}}});
        let c = cells(json!({"status": {"containerStatuses": [code]}}));
        assert_eq!(c[2], "ExitCode:2");
    }

    #[test]
    fn completed_container_does_not_mask_running_one() {
        let done =
            json!({"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let status = |ready: &str| {
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [done.clone(), running("b", true, 0)]})
        };
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let c = cells(json!({"spec": spec, "status": status("True")}));
        assert_eq!(
            (c[1].clone(), c[2].clone()),
            (json!("1/2"), json!("Running"))
        );
        let c = cells(json!({"spec": spec, "status": status("False")}));
        assert_eq!(c[2], "NotReady");
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}],
                          "containers": [{"name": "a"}]});
        // First init container done, second still running.
        let c = cells(json!({"spec": spec, "status": {"phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "restartCount": 1, "state": {"running": {}}}
            ],
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}}));
        assert_eq!(c[2], "Init:1/2");
        assert_eq!(c[3], "1");

        let c = cells(json!({"spec": spec, "status": {"initContainerStatuses": [
            {"name": "i1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}));
        assert_eq!(c[2], "Init:ImagePullBackOff");

        let c = cells(json!({"spec": spec, "status": {"initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}));
        assert_eq!(c[2], "Init:Error");

        let c = cells(json!({"spec": spec, "status": {"initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}}));
        assert_eq!(c[2], "Init:ExitCode:3");

        let c = cells(json!({"spec": spec, "status": {"initContainerStatuses": [
            {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}]}}));
        assert_eq!(c[2], "Init:0/2");
    }

    #[test]
    fn sidecar_counts_towards_ready_and_restarts() {
        let spec = json!({"initContainers": [{"name": "side", "restartPolicy": "Always"}],
                          "containers": [{"name": "a"}]});
        let c = cells(json!({"spec": spec, "status": {"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "side", "started": true, "ready": true, "restartCount": 2,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}],
            "containerStatuses": [running("a", true, 1)]}}));
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "3 (2m ago)");
    }

    #[test]
    fn deletion() {
        let base = |phase: &str, reason: &str| {
            json!({
                "metadata": {"name": "p", "deletionTimestamp": "2024-05-01T11:59:00Z"},
                "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": phase, "reason": reason, "containerStatuses": [running("a", true, 0)]}
            })
        };
        assert_eq!(cells(base("Running", ""))[2], "Terminating");
        assert_eq!(cells(base("Running", "NodeLost"))[2], "Unknown");
        let done = json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
                          "status": {"phase": "Succeeded"}});
        assert_eq!(cells(done)[2], "Succeeded");
    }

    #[test]
    fn scheduling_gated_and_status_reason() {
        let c = cells(json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}));
        assert_eq!(c[2], "SchedulingGated");
        let c = cells(json!({"status": {"phase": "Failed", "reason": "Evicted"}}));
        assert_eq!(c[2], "Evicted");
    }

    #[test]
    fn pod_ips() {
        let c = cells(json!({"status": {"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}}));
        assert_eq!(c[5], "fd00::1");
    }

    #[test]
    fn template() {
        let t = json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "i:2"}]}}});
        assert_eq!(
            pod_template_cells(&t, now()),
            vec![json!("t"), json!("a,b"), json!("i:1,i:2"), json!("app=x")]
        );
    }
}
