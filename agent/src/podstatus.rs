//! The pod status a kubelet writes, in upstream's shape: phase, the five
//! conditions, container statuses with state / lastState / restartCount,
//! pod and host IPs. Shared by the real runtime and the simulated one.

use crate::now;
use serde_json::{json, Value};

/// How the pod's containers stand.
#[derive(Debug, Clone, PartialEq)]
pub enum Containers {
    /// All started and ready.
    Running,
    /// All exited with this code, for good (Succeeded or Failed).
    Exited(i64),
    /// Exited with this code and started again (restartPolicy said so).
    Restarted { exit_code: i64, restarts: i64 },
    /// Exited with this code, waiting out the back-off before starting again.
    BackOff {
        exit_code: i64,
        restarts: i64,
        delay_secs: u64,
    },
}

fn condition(ty: &str, ok: bool, reason: Option<&str>, t: &str) -> Value {
    let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": t});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

fn exit_reason(code: i64) -> &'static str {
    if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The status for `pod` given how its containers stand.
pub fn status(
    pod: &Value,
    containers: &Containers,
    pod_ip: &str,
    host_ip: &str,
    runtime: &str,
) -> Value {
    let t = now();
    let started_at = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .unwrap_or(&t)
        .to_string();
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let finished = matches!(containers, Containers::Exited(_));
    let statuses: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let id = format!("{runtime}://{uid}-{name}");
            let terminated = |code: i64| json!({"terminated": {"exitCode": code, "reason": exit_reason(code), "startedAt": started_at, "finishedAt": t, "containerID": id}});
            let (state, last, restarts, ready) = match containers {
                Containers::Running => (json!({"running": {"startedAt": started_at}}), json!({}), 0, true),
                Containers::Exited(code) => (terminated(*code), json!({}), 0, false),
                Containers::Restarted { exit_code, restarts } => {
                    (json!({"running": {"startedAt": t}}), terminated(*exit_code), *restarts, true)
                }
                Containers::BackOff { exit_code, restarts, delay_secs } => {
                    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
                    let message = format!("back-off {delay_secs}s restarting failed container={name} pod={pod_name}_{ns}({uid})");
                    (json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}), terminated(*exit_code), *restarts, false)
                }
            };
            json!({
                "name": name, "image": image, "imageID": format!("{image}@sim"), "containerID": id,
                "ready": ready, "started": !finished, "restartCount": restarts, "state": state, "lastState": last,
            })
        })
        .collect();
    let inits: Vec<Value> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            json!({
                "name": name, "image": c.get("image"), "imageID": "", "containerID": format!("{runtime}://{uid}-{name}"),
                "ready": true, "started": false, "restartCount": 0, "lastState": {},
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started_at, "finishedAt": started_at}},
            })
        })
        .collect();
    let phase = match containers {
        Containers::Exited(0) => "Succeeded",
        Containers::Exited(_) => "Failed",
        _ => "Running",
    };
    let done = finished.then_some("PodCompleted");
    let backing_off = matches!(containers, Containers::BackOff { .. });
    let not_ready = if backing_off {
        Some("ContainersNotReady")
    } else {
        done
    };
    let ready = !finished && !backing_off;
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", !finished, None, &t),
            condition("Initialized", true, done, &t),
            condition("Ready", ready, not_ready, &t),
            condition("ContainersReady", ready, not_ready, &t),
            condition("PodScheduled", true, None, &t),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started_at,
        "containerStatuses": statuses,
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    if let Some(q) = pod.pointer("/status/qosClass") {
        status["qosClass"] = q.clone();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a", "image": "i"}]}, "status": {"qosClass": "BestEffort"}})
    }

    #[test]
    fn running_and_finished() {
        let s = status(
            &pod(),
            &Containers::Running,
            "10.42.0.2",
            "198.51.100.1",
            "sim",
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert!(s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "True"));
        let s = status(
            &pod(),
            &Containers::Exited(3),
            "10.42.0.2",
            "198.51.100.1",
            "sim",
        );
        assert_eq!(s["phase"], "Failed");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
        let s = status(
            &pod(),
            &Containers::Restarted {
                exit_code: 1,
                restarts: 2,
            },
            "10.42.0.2",
            "198.51.100.1",
            "sim",
        );
        assert_eq!(s["containerStatuses"][0]["restartCount"], 2);
        assert_eq!(
            s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
        assert_eq!(s["qosClass"], "BestEffort");
    }
}
