//! The resource catalog: every built-in kind skiff serves, with its group,
//! version, plural, scope, short names, categories and subresources, as
//! upstream's discovery documents them.

/// One served resource (a group/version/plural), as discovery describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Verbs beyond the standard eight (e.g. none for most; `create` only for reviews).
    pub verbs: &'static [&'static str],
    /// The resource that owns storage when several versions share one (autoscaling v1/v2,
    /// core/events.k8s.io events): objects live under this resource's key.
    pub storage_plural: &'static str,
    /// False for requests answered without storage (access reviews).
    pub stored: bool,
    /// What a CustomResourceDefinition says of a custom resource; `None`
    /// for the built-in kinds.
    pub custom: Option<&'static Custom>,
}

/// A custom resource's definition, for one served version: what the API
/// server needs beyond the discovery fields to serve it.
#[derive(Debug, PartialEq, Eq)]
pub struct Custom {
    /// The CustomResourceDefinition's name, `<plural>.<group>`.
    pub crd: String,
    /// Its `metadata.generation`: a definition is new with every change
    /// to the CRD's spec, its documentation's too.
    pub generation: i64,
    /// The version's `openAPIV3Schema` (`Null` when it has none).
    pub schema: serde_json::Value,
    /// The version's `additionalPrinterColumns` (a JSON array).
    pub columns: serde_json::Value,
    /// The version's `subresources.scale` (`Null` when it has none).
    pub scale: serde_json::Value,
    /// The version objects are stored in; `None` when it is this one.
    pub storage: Option<&'static Resource>,
    /// The version's `deprecationWarning`, when it is deprecated.
    pub deprecation: Option<String>,
    /// Whether versions convert through a webhook (`spec.conversion.strategy`).
    pub webhook_conversion: bool,
    /// Fields field selectors may name beyond metadata's: the version's
    /// `selectableFields`, as paths without the leading dot (`spec.color`).
    pub selectable: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Eviction,
    Log,
    Exec,
    Attach,
    PortForward,
    Proxy,
    Token,
    Finalize,
    /// A pod's `ephemeralcontainers`: only spec.ephemeralContainers changes
    /// (`kubectl debug`).
    EphemeralContainers,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
            Subresource::EphemeralContainers => "ephemeralcontainers",
        }
    }

    /// (group, version, kind) of the subresource's body, `None` when it is the parent kind.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
            Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
            Subresource::Log
            | Subresource::Exec
            | Subresource::Attach
            | Subresource::PortForward
            | Subresource::Proxy => Some(("", "v1", "")),
            Subresource::Status | Subresource::Finalize | Subresource::EphemeralContainers => None,
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale | Subresource::EphemeralContainers => {
                &["get", "patch", "update"]
            }
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                &["create", "get"]
            }
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
            Subresource::Finalize => &["update"],
        }
    }
}

pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

use Subresource::*;

#[allow(clippy::too_many_arguments)] // one row of the table below
const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        subresources,
        verbs: STANDARD_VERBS,
        storage_plural: plural,
        stored: true,
        custom: None,
    }
}

/// A create-only review resource of version v1, answered and never stored.
const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Resource {
    let mut res = r(
        group,
        "v1",
        kind,
        plural,
        singular,
        namespaced,
        &[],
        &[],
        &[],
    );
    res.verbs = &["create"];
    res.stored = false;
    res
}

/// A read-only metrics.k8s.io/v1beta1 resource (`get` and `list`),
/// computed from the nodes' statistics and never stored, as metrics-server
/// serves it.
const fn metrics(kind: &'static str, plural: &'static str, namespaced: bool) -> Resource {
    let mut res = r(
        "metrics.k8s.io",
        "v1beta1",
        kind,
        plural,
        "",
        namespaced,
        &[],
        &[],
        &[],
    );
    res.verbs = &["get", "list"];
    res.stored = false;
    res
}

const fn stored_as(mut res: Resource, storage_plural: &'static str) -> Resource {
    res.storage_plural = storage_plural;
    res
}

const NS: bool = true;
const CLUSTER: bool = false;
const ALL: &[&str] = &["all"];

/// Every built-in resource, in upstream's discovery order within each group.
#[rustfmt::skip]
pub static RESOURCES: &[Resource] = &[
    // core/v1
    r("", "v1", "ConfigMap", "configmaps", "configmap", NS, &["cm"], &[], &[]),
    r("", "v1", "Endpoints", "endpoints", "endpoints", NS, &["ep"], &[], &[]),
    r("", "v1", "Event", "events", "event", NS, &["ev"], &[], &[]),
    r("", "v1", "LimitRange", "limitranges", "limitrange", NS, &["limits"], &[], &[]),
    r("", "v1", "Namespace", "namespaces", "namespace", CLUSTER, &["ns"], &[], &[Status, Finalize]),
    r("", "v1", "Node", "nodes", "node", CLUSTER, &["no"], &[], &[Status, Proxy]),
    r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", NS, &["pvc"], &[], &[Status]),
    r("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", CLUSTER, &["pv"], &[], &[Status]),
    r("", "v1", "Pod", "pods", "pod", NS, &["po"], ALL, &[Attach, Binding, EphemeralContainers, Eviction, Exec, Log, PortForward, Proxy, Status]),
    r("", "v1", "PodTemplate", "podtemplates", "podtemplate", NS, &[], &[], &[]),
    r("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", NS, &["rc"], ALL, &[Scale, Status]),
    r("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", NS, &["quota"], &[], &[Status]),
    r("", "v1", "Secret", "secrets", "secret", NS, &[], &[], &[]),
    r("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", NS, &["sa"], &[], &[Token]),
    r("", "v1", "Service", "services", "service", NS, &["svc"], ALL, &[Proxy, Status]),
    // apps/v1
    r("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", NS, &[], &[], &[]),
    r("apps", "v1", "DaemonSet", "daemonsets", "daemonset", NS, &["ds"], ALL, &[Status]),
    r("apps", "v1", "Deployment", "deployments", "deployment", NS, &["deploy"], ALL, &[Scale, Status]),
    r("apps", "v1", "ReplicaSet", "replicasets", "replicaset", NS, &["rs"], ALL, &[Scale, Status]),
    r("apps", "v1", "StatefulSet", "statefulsets", "statefulset", NS, &["sts"], ALL, &[Scale, Status]),
    // authentication.k8s.io/v1 and authorization.k8s.io/v1: reviews, answered, never stored
    review("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", CLUSTER),
    review("authentication.k8s.io", "TokenReview", "tokenreviews", "tokenreview", CLUSTER),
    review("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", NS),
    review("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", CLUSTER),
    review("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", CLUSTER),
    review("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", CLUSTER),
    // autoscaling: v1 is stored as v2
    r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", NS, &["hpa"], ALL, &[Status]),
    r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", NS, &["hpa"], ALL, &[Status]),
    // apiextensions.k8s.io/v1
    r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", CLUSTER, &["crd", "crds"], &["api-extensions"], &[Status]),
    // batch/v1
    r("batch", "v1", "CronJob", "cronjobs", "cronjob", NS, &["cj"], ALL, &[Status]),
    r("batch", "v1", "Job", "jobs", "job", NS, &[], ALL, &[Status]),
    // coordination.k8s.io/v1
    r("coordination.k8s.io", "v1", "Lease", "leases", "lease", NS, &[], &[], &[]),
    // discovery.k8s.io/v1
    r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", NS, &[], &[], &[]),
    // events.k8s.io/v1 is stored as core/v1 events
    stored_as(r("events.k8s.io", "v1", "Event", "events", "event", NS, &["ev"], &[], &[]), "events"),
    // networking.k8s.io/v1
    r("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", NS, &["ing"], &[], &[Status]),
    r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", NS, &["netpol"], &[], &[]),
    // policy/v1
    r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", NS, &["pdb"], &[], &[Status]),
    // rbac.authorization.k8s.io/v1
    r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", CLUSTER, &[], &[], &[]),
    r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", CLUSTER, &[], &[], &[]),
    r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", NS, &[], &[], &[]),
    r("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", NS, &[], &[], &[]),
    // scheduling.k8s.io/v1
    r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", CLUSTER, &["pc"], &[], &[]),
    // storage.k8s.io/v1
    r("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", CLUSTER, &["sc"], &[], &[]),
    // metrics.k8s.io/v1beta1: resource metrics for `kubectl top`, computed, never stored
    metrics("NodeMetrics", "nodes", CLUSTER),
    metrics("PodMetrics", "pods", NS),
];

/// Groups in discovery order, each with its versions, preferred first.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    groups_of(RESOURCES.iter())
}

fn groups_of<'a>(
    resources: impl Iterator<Item = &'a Resource>,
) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for res in resources {
        match out.iter_mut().find(|(g, _)| *g == res.group) {
            Some((_, versions)) => {
                if !versions.contains(&res.version) {
                    versions.push(res.version);
                }
            }
            None => out.push((res.group, vec![res.version])),
        }
    }
    out
}

/// The resource served at `group/version/plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// What one API server serves: the built-in resources and, after them, the
/// custom resources its CustomResourceDefinitions establish (each group's
/// versions in order of preference).
#[derive(Debug, Clone, Default)]
pub struct Served {
    custom: std::sync::Arc<[&'static Resource]>,
}

impl Served {
    pub fn with_custom(custom: Vec<&'static Resource>) -> Served {
        Served {
            custom: custom.into(),
        }
    }

    /// The custom resources alone.
    pub fn custom(&self) -> &[&'static Resource] {
        &self.custom
    }

    pub fn all(&self) -> impl Iterator<Item = &'static Resource> + '_ {
        RESOURCES.iter().chain(self.custom.iter().copied())
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&'static Resource> {
        let (group, version) = split_api_version(api_version);
        self.all()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        groups_of(self.all())
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static Resource> + 'a {
        self.all()
            .filter(move |r| r.group == group && r.version == version)
    }
}

/// A resource made while the process runs (a custom one), as the
/// `&'static Resource` everything takes: leaked once, and the same one
/// returned for an equal resource after that.
pub fn intern(res: Resource) -> &'static Resource {
    static ALL: std::sync::Mutex<Vec<&'static Resource>> = std::sync::Mutex::new(Vec::new());
    let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = all.iter().find(|r| ***r == res) {
        return found;
    }
    let leaked: &'static Resource = Box::leak(Box::new(res));
    all.push(leaked);
    leaked
}

/// A string for such a resource, leaked once per distinct text.
pub fn intern_str(s: &str) -> &'static str {
    static ALL: std::sync::Mutex<Option<std::collections::HashSet<&'static str>>> =
        std::sync::Mutex::new(None);
    let mut guard = ALL.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(Default::default);
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The resource whose version is stored for `res`: itself, except for
/// versions that share storage (events.k8s.io/v1 Events are stored as core/v1
/// Events, autoscaling/v1 HPAs as autoscaling/v2), as upstream stores them.
pub fn storage_resource(res: &'static Resource) -> &'static Resource {
    if let Some(custom) = res.custom {
        return custom.storage.unwrap_or(res);
    }
    let stored_as = match (res.group, res.version, res.plural) {
        ("events.k8s.io", "v1", "events") => lookup("", "v1", "events"),
        ("autoscaling", "v1", "horizontalpodautoscalers") => {
            lookup("autoscaling", "v2", "horizontalpodautoscalers")
        }
        _ => None,
    };
    stored_as.unwrap_or(res)
}

/// Every stored resource in its storage version, once each.
pub fn stored() -> impl Iterator<Item = &'static Resource> {
    RESOURCES
        .iter()
        .filter(|r| r.stored && std::ptr::eq(storage_resource(r), *r))
}

/// Resources of a group/version, in discovery order.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// `"apps/v1"` → `("apps", "v1")`, `"v1"` → `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key prefix for this resource, as upstream lays out etcd:
    /// `/registry/<resource>/` (with a few historical exceptions).
    pub fn key_prefix(&self) -> String {
        if self.custom.is_some() {
            return format!("/registry/{}/{}/", self.group, self.storage_plural);
        }
        let segment = match (self.group, self.storage_plural) {
            ("", "services") => "services/specs",
            ("", "endpoints") => "services/endpoints",
            ("", "nodes") => "minions",
            ("", "replicationcontrollers") => "controllers",
            ("apps", "deployments") => "deployments",
            ("networking.k8s.io", "ingresses") => "ingress",
            ("coordination.k8s.io", "leases") => "leases",
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                "apiextensions.k8s.io/customresourcedefinitions"
            }
            (_, plural) => plural,
        };
        format!("/registry/{segment}/")
    }

    /// The full storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{}{}/{}", self.key_prefix(), ns, name),
            None => format!("{}{}", self.key_prefix(), name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let d = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(
            d.key(Some("default"), "web"),
            "/registry/deployments/default/web"
        );
        assert_eq!(by_kind("v1", "Pod").unwrap().plural, "pods");
        assert_eq!(
            lookup("", "v1", "nodes").unwrap().key(None, "n1"),
            "/registry/minions/n1"
        );
        assert_eq!(
            lookup("", "v1", "services").unwrap().key(Some("a"), "b"),
            "/registry/services/specs/a/b"
        );
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups
            .iter()
            .any(|(g, v)| *g == "autoscaling" && v == &vec!["v2", "v1"]));
    }

    #[test]
    fn shared_storage() {
        let ev = lookup("events.k8s.io", "v1", "events").unwrap();
        let core = lookup("", "v1", "events").unwrap();
        assert_eq!(ev.key(Some("x"), "e"), core.key(Some("x"), "e"));
    }
}
