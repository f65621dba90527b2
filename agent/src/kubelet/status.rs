//! The pod status the real agent reports, from what it observed of each
//! container: phase by upstream's rules (`getPhase`), the five conditions
//! (keeping each one's lastTransitionTime while it holds), init and app
//! container statuses, IPs and start time.

use serde_json::{json, Map, Value};

/// How one container stands, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
    pub container_id: Option<String>,
}

impl Terminated {
    fn json(&self) -> Value {
        let mut t = json!({"exitCode": self.exit_code, "reason": self.reason,
                           "startedAt": self.started_at, "finishedAt": self.finished_at});
        if let Some(m) = self.message.as_ref().filter(|m| !m.is_empty()) {
            t["message"] = json!(m);
        }
        if let Some(id) = &self.container_id {
            t["containerID"] = json!(id);
        }
        if self.exit_code > 128 {
            t["signal"] = json!(self.exit_code - 128);
        }
        json!({"terminated": t})
    }
}

#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: Observed,
    pub last: Option<Terminated>,
    pub restarts: i32,
    pub ready: bool,
    /// Running and past its startup probe.
    pub started: bool,
}

impl ContainerView {
    fn json(&self) -> Value {
        let state = match &self.state {
            Observed::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            Observed::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            Observed::Terminated(t) => t.json(),
        };
        let mut v = json!({
            "name": self.name, "image": self.image, "imageID": self.image_id,
            "ready": self.ready, "restartCount": self.restarts,
            "started": self.started,
            "state": state,
            "lastState": self.last.as_ref().map_or(json!({}), Terminated::json),
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }
}

pub struct PodView<'a> {
    pub pod: &'a Value,
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: String,
    pub init: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    /// Ephemeral containers (`kubectl debug`): reported, never ready.
    pub ephemeral: Vec<ContainerView>,
    /// Set when the pod can never run (e.g. an init container failed for good).
    pub failed: bool,
    /// Why the node evicted the pod, when it did (then it failed).
    pub evicted: Option<String>,
}

/// Upstream's pod phase from the container states.
fn phase(view: &PodView, restart_policy: &str) -> &'static str {
    if view.failed || view.evicted.is_some() {
        return "Failed";
    }
    let init_done = view
        .init
        .iter()
        .all(|c| matches!(&c.state, Observed::Terminated(t) if t.exit_code == 0));
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &view.containers {
        match &c.state {
            Observed::Running { .. } => running += 1,
            Observed::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            Observed::Waiting { .. } if c.last.is_some() => stopped += 1,
            Observed::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match restart_policy {
        "Always" => "Running",
        "OnFailure" if stopped == succeeded => "Succeeded",
        "OnFailure" => "Running",
        _ if stopped == succeeded => "Succeeded",
        _ => "Failed",
    }
}

/// The whole status; `previous` is what the pod's status says now, so
/// unchanged conditions keep their transition times.
pub fn build(view: &PodView, previous: Option<&Value>) -> Value {
    let t = crate::now();
    let spec = view.pod.get("spec").cloned().unwrap_or_default();
    let restart_policy = spec["restartPolicy"].as_str().unwrap_or("Always");
    let phase = phase(view, restart_policy);
    let unfinished_init: Vec<&str> = view
        .init
        .iter()
        .filter(|c| !matches!(&c.state, Observed::Terminated(t) if t.exit_code == 0))
        .map(|c| c.name.as_str())
        .collect();
    let unready: Vec<&str> = view
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let completed = terminal.then_some("PodCompleted");
    let initialized = unfinished_init.is_empty() || terminal;
    let init_msg = (!initialized).then(|| {
        format!(
            "containers with incomplete status: [{}]",
            unfinished_init.join(" ")
        )
    });
    let ready = unready.is_empty() && !terminal && initialized;
    let ready_msg = (!ready && !terminal)
        .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let prev_conditions: Vec<Value> = previous
        .and_then(|p| p.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = prev_conditions
            .iter()
            .find(|c| c["type"] == ty && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(t));
        let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    let not_ready_reason = completed.or((!ready).then_some("ContainersNotReady"));
    let mut status = Map::new();
    status.insert("phase".into(), json!(phase));
    let mut conditions = vec![
        cond("PodReadyToStartContainers", view.sandbox_ready, None, None),
        cond(
            "Initialized",
            initialized,
            completed.or((!initialized).then_some("ContainersNotInitialized")),
            init_msg,
        ),
        cond("Ready", ready, not_ready_reason, ready_msg.clone()),
        cond("ContainersReady", ready, not_ready_reason, ready_msg),
        cond("PodScheduled", true, None, None),
    ];
    if let Some(message) = &view.evicted {
        status.insert("reason".into(), json!("Evicted"));
        status.insert("message".into(), json!(message));
        conditions.push(cond(
            "DisruptionTarget",
            true,
            Some("TerminationByKubelet"),
            Some(message.clone()),
        ));
    }
    status.insert("conditions".into(), Value::Array(conditions));
    status.insert("hostIP".into(), json!(view.host_ip));
    status.insert("hostIPs".into(), json!([{"ip": view.host_ip}]));
    if let Some(ip) = &view.pod_ip {
        status.insert("podIP".into(), json!(ip));
        status.insert("podIPs".into(), json!([{"ip": ip}]));
    }
    status.insert("startTime".into(), json!(view.start_time));
    if !view.init.is_empty() {
        status.insert(
            "initContainerStatuses".into(),
            view.init.iter().map(ContainerView::json).collect(),
        );
    }
    status.insert(
        "containerStatuses".into(),
        view.containers.iter().map(ContainerView::json).collect(),
    );
    if !view.ephemeral.is_empty() {
        status.insert(
            "ephemeralContainerStatuses".into(),
            view.ephemeral.iter().map(ContainerView::json).collect(),
        );
    }
    if let Some(q) = view.pod.pointer("/status/qosClass") {
        status.insert("qosClass".into(), q.clone());
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(pod: &'a Value, states: Vec<Observed>) -> PodView<'a> {
        PodView {
            pod,
            sandbox_ready: true,
            pod_ip: Some("10.42.0.5".into()),
            host_ip: "10.0.0.1".into(),
            start_time: "2026-01-01T00:00:00Z".into(),
            init: vec![],
            containers: states
                .into_iter()
                .enumerate()
                .map(|(i, s)| ContainerView {
                    name: format!("c{i}"),
                    image: "img".into(),
                    image_id: "sha256:x".into(),
                    container_id: None,
                    ready: matches!(s, Observed::Running { .. }),
                    started: matches!(s, Observed::Running { .. }),
                    state: s,
                    last: None,
                    restarts: 0,
                })
                .collect(),
            ephemeral: vec![],
            failed: false,
            evicted: None,
        }
    }

    fn done(code: i32) -> Observed {
        Observed::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: "2026-01-01T00:00:01Z".into(),
            container_id: None,
        })
    }

    #[test]
    fn an_evicted_pod_failed_and_says_why() {
        let always = json!({"spec": {"restartPolicy": "Always"}});
        let mut v = view(&always, vec![done(137)]);
        v.evicted = Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ".into());
        let s = build(&v, None);
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "Evicted");
        assert!(s["message"].as_str().unwrap().contains("\"scratch\""));
        let target = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .expect("a DisruptionTarget condition");
        assert_eq!(target["status"], "True");
        assert_eq!(target["reason"], "TerminationByKubelet");
        assert_eq!(s["conditions"][2]["type"], "Ready");
        assert_eq!(s["conditions"][2]["status"], "False");
    }

    #[test]
    fn phases() {
        let never = json!({"spec": {"restartPolicy": "Never"}});
        let running = Observed::Running {
            started_at: "t".into(),
        };
        let creating = Observed::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(
            build(&view(&never, vec![running.clone()]), None)["phase"],
            "Running"
        );
        assert_eq!(
            build(&view(&never, vec![creating]), None)["phase"],
            "Pending"
        );
        assert_eq!(
            build(&view(&never, vec![done(0), done(0)]), None)["phase"],
            "Succeeded"
        );
        assert_eq!(
            build(&view(&never, vec![done(0), done(1)]), None)["phase"],
            "Failed"
        );
        assert_eq!(
            build(&view(&never, vec![running, done(1)]), None)["phase"],
            "Running"
        );
        let on_failure = json!({"spec": {"restartPolicy": "OnFailure"}});
        assert_eq!(
            build(&view(&on_failure, vec![done(1)]), None)["phase"],
            "Running"
        );
        let s = build(&view(&never, vec![done(137)]), None);
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["signal"],
            9
        );
        assert_eq!(s["conditions"][2]["reason"], "PodCompleted");
    }

    #[test]
    fn keeps_transition_times() {
        let pod = json!({"spec": {}});
        let prev = json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        let s = build(
            &view(
                &pod,
                vec![Observed::Running {
                    started_at: "t".into(),
                }],
            ),
            Some(&prev),
        );
        assert_eq!(
            s["conditions"][2]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(s["conditions"][2]["status"], "True");
    }
}
