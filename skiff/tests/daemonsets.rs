//! DaemonSets on a real server with simulated nodes (pods run and turn Ready
//! at once): one pod per eligible node (nodeSelector, taints and
//! tolerations), new and no-longer-eligible nodes, RollingUpdate within
//! maxUnavailable and maxSurge watched event by event, OnDelete, and the
//! kubectl views (`get ds`, `rollout status|history|undo`).

mod common;

use common::{default_service_account, eventually, pod_image, pod_ready, Server, Simulator};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

async fn cluster(nodes: usize, prefix: &str) -> (Server, Client, Simulator) {
    let s = Server::start(None);
    let c = s.client().await;
    let sim = Simulator::start(&s, nodes, prefix);
    default_service_account(&c).await;
    let api: Api<Node> = Api::all(c.clone());
    // Ready, not just registered: a node that is not Ready yet carries the
    // not-ready NoSchedule taint, which daemon pods do not tolerate.
    eventually("the simulated nodes Ready", 30, async || {
        let items = api.list(&ListParams::default()).await.unwrap().items;
        items.len() == nodes
            && items.iter().all(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    && n.spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_none_or(|t| t.is_empty())
            })
    })
    .await;
    (s, c, sim)
}

/// A DaemonSet `name` selecting `app=name`, with more template spec fields
/// and an update strategy.
async fn create(c: &Client, name: &str, spec: Value, strategy: Value) {
    let mut template_spec = json!({"containers": [{"name": "c", "image": "busybox:1"}]});
    template_spec
        .as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "updateStrategy": strategy,
                 "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec}}
    }))
    .unwrap();
    Api::<DaemonSet>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
}

/// The live pods of DaemonSet `name`.
async fn pods_of(c: &Client, name: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(c.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// The pod's node, or before it is bound, the node its affinity names.
fn node_of(p: &Pod) -> String {
    let spec = p.spec.as_ref().unwrap();
    if let Some(n) = spec.node_name.clone() {
        return n;
    }
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.clone())
        .unwrap_or_default();
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(|r| r.values.as_ref().and_then(|v| v.first().cloned()))
        .unwrap_or_default()
}

/// The nodes running a ready pod of `name`, or None while some pod is not
/// ready or two share a node.
async fn placed(c: &Client, name: &str) -> Option<Vec<String>> {
    let pods = pods_of(c, name).await;
    let nodes: Vec<String> = pods.iter().filter(|p| pod_ready(p)).map(node_of).collect();
    let distinct: BTreeSet<&String> = nodes.iter().collect();
    (nodes.len() == pods.len() && distinct.len() == nodes.len())
        .then(|| distinct.into_iter().cloned().collect())
}

fn names(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

/// `kubectl get ds` columns DESIRED CURRENT READY UP-TO-DATE AVAILABLE and NODE SELECTOR.
fn get_ds(s: &Server, name: &str) -> Vec<String> {
    s.ok(&["get", "ds", name, "--no-headers"])
        .split_whitespace()
        .skip(1)
        .take(6)
        .map(String::from)
        .collect()
}

async fn label(c: &Client, node: &str, labels: Value) {
    Api::<Node>::all(c.clone())
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node() {
    let (s, c, _sim) = cluster(3, "d").await;
    // d-0 has an SSD; d-2 is reserved for infrastructure.
    label(&c, "d-0", json!({"disk": "ssd"})).await;
    s.ok(&["taint", "nodes", "d-2", "dedicated=infra:NoSchedule"]);
    create(&c, "all", json!({}), json!({})).await;
    create(
        &c,
        "ssd",
        json!({"nodeSelector": {"disk": "ssd"}}),
        json!({}),
    )
    .await;
    let infra =
        json!({"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"});
    create(&c, "tolerant", json!({"tolerations": [infra]}), json!({})).await;
    eventually("each set on its nodes", 30, async || {
        placed(&c, "all").await == names(&["d-0", "d-1"])
            && placed(&c, "ssd").await == names(&["d-0"])
            && placed(&c, "tolerant").await == names(&["d-0", "d-1", "d-2"])
    })
    .await;
    let sets: Api<DaemonSet> = Api::namespaced(c.clone(), "default");
    eventually("the status counts", 20, async || {
        let ds = sets.get("all").await.unwrap();
        let st = ds.status.unwrap_or_default();
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_ready,
        ) == (2, 2, 2)
            && (
                st.number_available,
                st.updated_number_scheduled,
                st.number_unavailable,
            ) == (Some(2), Some(2), Some(0))
            && st.number_misscheduled == 0
            && st.observed_generation == ds.metadata.generation
    })
    .await;
    assert_eq!(get_ds(&s, "all"), ["2", "2", "2", "2", "2", "<none>"]);
    assert_eq!(get_ds(&s, "ssd"), ["1", "1", "1", "1", "1", "disk=ssd"]);

    // Each pod was pinned to its node by affinity and bound by the
    // scheduler; it carries the daemon tolerations and the revision hash.
    let revisions: Vec<ControllerRevision> =
        Api::<ControllerRevision>::namespaced(c.clone(), "default")
            .list(&ListParams::default().labels("app=all"))
            .await
            .unwrap()
            .items;
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].revision, 1);
    let hash = revisions[0].labels()["controller-revision-hash"].clone();
    assert_eq!(revisions[0].name_any(), format!("all-{hash}"));
    for p in pods_of(&c, "all").await {
        let spec = p.spec.as_ref().unwrap();
        let term = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let field = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (field.key.as_str(), field.operator.as_str()),
            ("metadata.name", "In")
        );
        assert_eq!(field.values.as_deref(), Some(&[node_of(&p)][..]));
        let tolerations: Vec<(String, String)> = spec
            .tolerations
            .iter()
            .flatten()
            .filter(|t| t.toleration_seconds.is_none() && t.operator.as_deref() == Some("Exists"))
            .map(|t| {
                (
                    t.key.clone().unwrap_or_default(),
                    t.effect.clone().unwrap_or_default(),
                )
            })
            .collect();
        for (key, effect) in [
            ("not-ready", "NoExecute"),
            ("unreachable", "NoExecute"),
            ("disk-pressure", "NoSchedule"),
            ("memory-pressure", "NoSchedule"),
            ("pid-pressure", "NoSchedule"),
            ("unschedulable", "NoSchedule"),
        ] {
            let key = format!("node.kubernetes.io/{key}");
            assert!(
                tolerations.contains(&(key.clone(), effect.into())),
                "{key} not tolerated"
            );
        }
        assert_eq!(p.labels()["controller-revision-hash"], hash);
        assert!(p.name_any().starts_with("all-"));
        assert_eq!(p.owner_references()[0].kind, "DaemonSet");
    }

    // A new node gets a pod of every set it is eligible for.
    let _more = Simulator::start(&s, 1, "e");
    eventually("the new node's pods", 30, async || {
        placed(&c, "all").await == names(&["d-0", "d-1", "e-0"])
            && placed(&c, "tolerant").await == names(&["d-0", "d-1", "d-2", "e-0"])
            && placed(&c, "ssd").await == names(&["d-0"])
    })
    .await;

    // The SSD moves from d-0 to d-1: so does the pod.
    label(&c, "d-1", json!({"disk": "ssd"})).await;
    label(&c, "d-0", json!({"disk": null})).await;
    eventually("the ssd pod follows the label", 30, async || {
        placed(&c, "ssd").await == names(&["d-1"])
    })
    .await;
    // A NoExecute taint nobody tolerates takes e-0 away from "all".
    s.ok(&["taint", "nodes", "e-0", "maintenance=now:NoExecute"]);
    eventually("the tainted node emptied", 30, async || {
        placed(&c, "all").await == names(&["d-0", "d-1"])
    })
    .await;

    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    let notes: Vec<(String, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("daemonset-controller"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect();
    assert!(notes
        .iter()
        .any(|(r, n)| r == "SuccessfulCreate" && n.starts_with("Created pod: ssd-")));
    assert!(notes
        .iter()
        .any(|(r, n)| r == "SuccessfulDelete" && n.starts_with("Deleted pod: ssd-")));
}

/// The worst moments of a rollout, seen event by event through a watch:
/// the most nodes without an available pod, and the most nodes running two.
struct Watched {
    unavailable: Arc<AtomicUsize>,
    doubled: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    fn start(c: &Client, app: &str, nodes: usize) -> Watched {
        let (unavailable, doubled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let api: Api<Pod> = Api::namespaced(c.clone(), "default");
        let cfg = watcher::Config::default().labels(&format!("app={app}"));
        let (u, d) = (unavailable.clone(), doubled.clone());
        let task = tokio::spawn(async move {
            let mut pods: HashMap<String, Pod> = HashMap::new();
            let mut listed = false;
            let mut stream = std::pin::pin!(watcher(api, cfg));
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                        pods.insert(p.name_any(), p);
                    }
                    watcher::Event::Delete(p) => {
                        pods.remove(&p.name_any());
                    }
                    watcher::Event::InitDone => listed = true,
                    watcher::Event::Init => {}
                }
                if !listed {
                    continue;
                }
                let mut per_node: BTreeMap<String, (usize, bool)> = BTreeMap::new();
                for p in pods
                    .values()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    let e = per_node.entry(node_of(p)).or_default();
                    e.0 += 1;
                    e.1 |= pod_ready(p);
                }
                let serving = per_node.values().filter(|(_, r)| *r).count();
                u.fetch_max(nodes.saturating_sub(serving), Ordering::SeqCst);
                d.fetch_max(
                    per_node.values().filter(|(n, _)| *n > 1).count(),
                    Ordering::SeqCst,
                );
            }
        });
        Watched {
            unavailable,
            doubled,
            task,
        }
    }

    /// (most unavailable, most doubled) so far.
    fn worst(&self) -> (usize, usize) {
        (
            self.unavailable.load(Ordering::SeqCst),
            self.doubled.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const WEB: &str = "
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: c, image: 'busybox:1'}
";

async fn images(c: &Client, name: &str) -> BTreeSet<String> {
    pods_of(c, name).await.iter().map(pod_image).collect()
}

/// Revision numbers of `web`'s ControllerRevisions, by hash.
async fn revisions(c: &Client) -> BTreeMap<i64, String> {
    Api::<ControllerRevision>::namespaced(c.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| (r.revision, r.labels()["controller-revision-hash"].clone()))
        .collect()
}

/// `kubectl rollout history` revision numbers.
fn history(s: &Server) -> Vec<String> {
    s.ok(&["rollout", "history", "ds/web"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<i64>().is_ok())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_within_budget_and_kubectl_rollout() {
    let (s, c, _sim) = cluster(4, "r").await;
    s.apply("default", WEB);
    s.ok(&["rollout", "status", "ds/web", "--timeout=60s"]);
    assert_eq!(get_ds(&s, "web"), ["4", "4", "4", "4", "4", "<none>"]);

    // maxUnavailable 1: pods are replaced one node at a time.
    let watched = Watched::start(&c, "web", 4);
    s.ok(&["set", "image", "ds/web", "c=busybox:2"]);
    s.ok(&["rollout", "status", "ds/web", "--timeout=90s"]);
    assert_eq!(placed(&c, "web").await.map(|n| n.len()), Some(4));
    assert_eq!(
        images(&c, "web").await,
        BTreeSet::from(["busybox:2".to_string()])
    );
    assert_eq!(get_ds(&s, "web"), ["4", "4", "4", "4", "4", "<none>"]);
    assert_eq!(
        watched.worst(),
        (1, 0),
        "(most unavailable, most doubled) during the rollout"
    );
    drop(watched);

    // Two revisions, the pods on the second's hash; kubectl lists them.
    let revs = revisions(&c).await;
    assert_eq!(revs.keys().copied().collect::<Vec<_>>(), [1, 2]);
    for p in pods_of(&c, "web").await {
        assert_eq!(p.labels()["controller-revision-hash"], revs[&2]);
    }
    assert_eq!(history(&s), ["1", "2"]);

    // Undo returns to the first template, which becomes revision 3.
    s.ok(&["rollout", "undo", "ds/web"]);
    s.ok(&["rollout", "status", "ds/web", "--timeout=90s"]);
    eventually("the first template back on every node", 30, async || {
        images(&c, "web").await == BTreeSet::from(["busybox:1".to_string()])
            && placed(&c, "web").await.map(|n| n.len()) == Some(4)
    })
    .await;
    assert_eq!(history(&s), ["2", "3"]);
    assert_eq!(revisions(&c).await[&3], revs[&1]);
    // kubectl recognises the revision the set already runs.
    let again = s.ok(&["rollout", "undo", "ds/web", "--to-revision=3"]);
    assert!(again.contains("skipped rollback"), "{again}");

    // maxSurge 1, maxUnavailable 0: a new pod starts beside the old one on
    // one node at a time, and every node keeps serving throughout.
    let watched = Watched::start(&c, "web", 4);
    s.ok(&[
        "patch",
        "ds",
        "web",
        "-p",
        r#"{"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:3"}]}}}}"#,
    ]);
    s.ok(&["rollout", "status", "ds/web", "--timeout=90s"]);
    eventually("one busybox:3 pod per node", 30, async || {
        images(&c, "web").await == BTreeSet::from(["busybox:3".to_string()])
            && placed(&c, "web").await.map(|n| n.len()) == Some(4)
    })
    .await;
    assert_eq!(
        watched.worst(),
        (0, 1),
        "(most unavailable, most doubled) during the surge rollout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_deleted_pods() {
    let (s, c, _sim) = cluster(2, "o").await;
    create(&c, "od", json!({}), json!({"type": "OnDelete"})).await;
    eventually("a pod per node", 30, async || {
        placed(&c, "od").await == names(&["o-0", "o-1"])
    })
    .await;
    let before: BTreeMap<String, String> = pods_of(&c, "od")
        .await
        .iter()
        .map(|p| (node_of(p), p.name_any()))
        .collect();
    let sets: Api<DaemonSet> = Api::namespaced(c.clone(), "default");
    sets.patch("od", &PatchParams::default(), &Patch::Strategic(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}})))
        .await
        .unwrap();
    eventually(
        "the new template observed, no pod updated",
        20,
        async || {
            let st = sets.get("od").await.unwrap().status.unwrap_or_default();
            st.observed_generation == Some(2)
                && st.updated_number_scheduled == Some(0)
                && st.desired_number_scheduled == 2
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let now: BTreeMap<String, String> = pods_of(&c, "od")
        .await
        .iter()
        .map(|p| (node_of(p), p.name_any()))
        .collect();
    assert_eq!(now, before, "OnDelete must not replace pods by itself");

    Api::<Pod>::namespaced(c.clone(), "default")
        .delete(&before["o-0"], &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the deleted pod replaced from the new template",
        30,
        async || {
            let pods = pods_of(&c, "od").await;
            let by_node: BTreeMap<String, (String, String)> = pods
                .iter()
                .filter(|p| pod_ready(p))
                .map(|p| (node_of(p), (p.name_any(), pod_image(p))))
                .collect();
            pods.len() == 2
                && by_node
                    .get("o-0")
                    .is_some_and(|(n, i)| *n != before["o-0"] && i == "busybox:2")
                && by_node.get("o-1") == Some(&(before["o-1"].clone(), "busybox:1".to_string()))
        },
    )
    .await;
    eventually("one pod updated", 20, async || {
        let st = sets.get("od").await.unwrap().status.unwrap_or_default();
        st.updated_number_scheduled == Some(1) && st.number_available == Some(2)
    })
    .await;
    let out = s.ok(&["rollout", "history", "ds/od"]);
    assert!(
        out.lines().any(|l| l.starts_with('1')) && out.lines().any(|l| l.starts_with('2')),
        "{out}"
    );
}
