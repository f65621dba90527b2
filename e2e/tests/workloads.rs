//! Workload kinds on a 3-node lab: a DaemonSet on every node and on a node
//! added later; Jobs that complete, a Job that stops at its backoffLimit
//! and a CronJob that creates Jobs; a StatefulSet whose pods come up in
//! order with names that resolve from other pods, each with a volume of the
//! default class whose data outlives the pod.

use skiff_e2e::{eventually, lab_for, name_of, pod_ready, Lab};
use std::collections::BTreeSet;

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentd}
spec:
  selector: {matchLabels: {app: agentd}}
  template:
    metadata: {labels: {app: agentd}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, "3600"]
"#;

fn daemon_nodes(lab: &Lab) -> BTreeSet<String> {
    lab.ready_pods("app=agentd")
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_daemonset_runs_on_every_node_and_on_a_node_added_later() {
    let Some(lab) = lab_for("the DaemonSet e2e test") else {
        return;
    };
    lab.apply(DAEMONSET);
    let three: BTreeSet<String> = ["node-1", "node-2", "node-3"].map(String::from).into();
    eventually("a Ready daemon pod on each of 3 nodes", 90, || {
        daemon_nodes(&lab) == three
    });
    let printed = lab.skiff(&["lab", "node", "add"]);
    assert!(printed.contains("node-4 Ready"), "{printed}");
    let mut four = three.clone();
    four.insert("node-4".into());
    eventually("a Ready daemon pod on node-4 too", 90, || {
        daemon_nodes(&lab) == four
    });
    let ds = lab.get_json(&["daemonset", "agentd"]);
    assert_eq!(ds["status"]["desiredNumberScheduled"], 4, "{ds}");
    eventually("the DaemonSet reports 4 ready", 30, || {
        lab.get_json(&["daemonset", "agentd"])["status"]["numberReady"] == 4
    });
}

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: five}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: work
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'sleep 1; echo done']
---
apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: work
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'exit 3']
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: minutely}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 1
          containers:
          - name: tick
            image: localhost/busybox:latest
            imagePullPolicy: IfNotPresent
            command: [sh, -c, 'date']
"#;

#[test]
fn jobs_complete_fail_at_their_backoff_limit_and_a_cronjob_creates_jobs() {
    let Some(lab) = lab_for("the Job e2e test") else {
        return;
    };
    lab.apply(JOBS);

    // completions 5, parallelism 2: never more than 2 running at once.
    let mut most_active = 0;
    eventually("job five Complete", 180, || {
        let job = lab.get_json(&["job", "five"]);
        most_active = most_active.max(job["status"]["active"].as_u64().unwrap_or(0));
        job["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        })
    });
    assert!(most_active <= 2, "{most_active} pods active at once");
    let job = lab.get_json(&["job", "five"]);
    assert_eq!(job["status"]["succeeded"], 5, "{job}");
    let shown = lab.kubectl(&["get", "job", "five"]);
    assert!(shown.contains("5/5"), "{shown}");

    // backoffLimit 2: three pods fail, then the Job is Failed.
    lab.kubectl(&[
        "wait",
        "--for=condition=Failed",
        "job/doomed",
        "--timeout=180s",
    ]);
    let job = lab.get_json(&["job", "doomed"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
    assert_eq!(job["status"]["failed"], 3, "{job}");
    let pods = lab.pods("job-name=doomed");
    assert_eq!(pods.len(), 3, "one pod per try");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3,
            "{p}"
        );
    }

    // The CronJob has created a Job that ran to completion.
    eventually("a Job from the CronJob completed", 150, || {
        lab.get_json(&["jobs"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == "minutely")
            .any(|j| j["status"]["succeeded"] == 1)
    });
    let cron = lab.get_json(&["cronjob", "minutely"]);
    assert!(!cron["status"]["lastScheduleTime"].is_null(), "{cron}");
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "I am $(hostname)" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
        volumeMounts: [{name: www, mountPath: /data}]
  # The default class (local-path): a volume on the node of each pod.
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
"#;

/// RFC 3339 timestamps of the same form compare as strings.
fn ts<'a>(v: &'a serde_json::Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} missing"))
}

#[test]
fn a_statefulset_comes_up_in_order_with_names_that_resolve() {
    let Some(lab) = lab_for("the StatefulSet e2e test") else {
        return;
    };
    lab.apply(WEB);
    eventually("web-0..2 Ready", 120, || {
        lab.ready_pods("app=web").len() == 3
    });
    lab.kubectl(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    // OrderedReady: web-N is created only once web-(N-1) is Ready.
    let pods = lab.pods("app=web");
    let pod = |n: usize| {
        pods.iter()
            .find(|p| name_of(p) == format!("web-{n}"))
            .unwrap_or_else(|| panic!("web-{n}: {pods:?}"))
    };
    for n in 1..3 {
        let before = pod(n - 1);
        let ready_at = before["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap();
        assert!(
            ts(
                &pod(n)["metadata"]["creationTimestamp"],
                "creationTimestamp"
            ) >= ts(&ready_at, "Ready time"),
            "web-{n} created before web-{} was Ready",
            n - 1
        );
    }

    // Stable names from another pod: `web-0.web` through the resolver's
    // search list (wget), the full name through nslookup (which takes a
    // name as given), and the headless Service answering with every pod.
    eventually("client Ready", 60, || {
        pod_ready(&lab.get_json(&["pod", "client"]))
    });
    let ip0 = pod(0)["status"]["podIP"].as_str().unwrap().to_string();
    // The first lookups may precede the client node's DNS rules.
    eventually("web-0's full name resolves to its IP", 30, || {
        let out = lab.exec("client", "nslookup web-0.web.default.svc.cluster.local");
        String::from_utf8_lossy(&out.stdout).contains(&ip0)
    });
    for n in 0..3 {
        let out = lab.exec(
            "client",
            &format!("timeout 5 wget -q -O - http://web-{n}.web:8080/"),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("I am web-{n}"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = lab.exec("client", "nslookup web.default.svc.cluster.local");
    let text = String::from_utf8_lossy(&out.stdout);
    for p in &pods {
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(text.contains(ip), "nslookup web lacks {ip}: {text}");
    }

    // Each member has its own bound claim of the default class.
    let claims = lab.get_json(&["pvc"]);
    let claims = claims["items"].as_array().unwrap();
    assert_eq!(claims.len(), 3, "{claims:?}");
    for c in claims {
        assert_eq!(c["status"]["phase"], "Bound", "{c}");
        assert_eq!(c["spec"]["storageClassName"], "local-path", "{c}");
    }
    let shown = lab.kubectl(&["get", "storageclass"]);
    assert!(shown.contains("local-path (default)"), "{shown}");

    // A deleted member comes back under the same name, on the same node
    // (its volume's), with its data, and answers again.
    let out = lab.exec("web-0", "echo kept > /data/note");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node0 = pod(0)["spec"]["nodeName"].clone();
    let uid0 = pod(0)["metadata"]["uid"].clone();
    lab.kubectl(&["delete", "pod", "web-0", "--wait=false"]);
    eventually("web-0 back", 90, || {
        let p = lab.get_json(&["pods", "-l", "app=web"]);
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| name_of(p) == "web-0" && p["metadata"]["uid"] != uid0 && pod_ready(p))
    });
    let back = lab.get_json(&["pod", "web-0"]);
    assert_eq!(back["spec"]["nodeName"], node0, "back on its volume's node");
    let out = lab.exec("web-0", "cat /data/note");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    eventually("web-0.web answers again", 60, || {
        let out = lab.exec("client", "timeout 5 wget -q -O - http://web-0.web:8080/");
        String::from_utf8_lossy(&out.stdout).trim() == "I am web-0"
    });
}
