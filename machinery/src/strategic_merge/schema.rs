//! Patch metadata: what upstream reads from the Go struct tags
//! `patchStrategy:"merge" patchMergeKey:"…"` of the typed API objects.
//!
//! Only the apply side is served here, so only the paths that lead to a field
//! with a patch strategy are described. Everything else is "untyped": maps
//! merge recursively and lists are replaced, which is what upstream does for
//! fields without tags. (`retainKeys` tags are left out on purpose: they only
//! tell the *client* to emit `$retainKeys`; applying honours the directive
//! wherever it appears.)

/// How a field's value is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: maps merge recursively, lists are replaced by the patch's list.
    Default,
    /// `patchStrategy:"merge"` on a list, with its `patchMergeKey`; the key is
    /// "" for a list of primitives, which is merged as a set.
    Merge(&'static str),
    /// `patchStrategy:"replace"` on a map: the patch's value replaces it whole.
    Replace,
}

/// A type name from [`Schema`], or `None` for untyped JSON.
pub(crate) type Ty = Option<&'static str>;

/// One field: (type, JSON field name, type of the value — of its elements for
/// a list — or "" when untyped, strategy).
pub(crate) type Row = (&'static str, &'static str, &'static str, Strategy);

/// A set of typed objects, as a flat table of their interesting fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schema {
    pub(crate) rows: &'static [Row],
}

impl Schema {
    /// The type and strategy of `field` inside a value of type `ty`.
    pub(crate) fn field(&self, ty: Ty, field: &str) -> (Ty, Strategy) {
        let Some(ty) = ty else {
            return (None, Strategy::Default);
        };
        match self.rows.iter().find(|r| r.0 == ty && r.1 == field) {
            Some(&(_, _, child, strategy)) => ((!child.is_empty()).then_some(child), strategy),
            None => (None, Strategy::Default),
        }
    }
}

/// The built-in kinds skiff serves.
pub(crate) const BUILTIN: Schema = Schema { rows: ROWS };

/// The root type of a built-in kind; `None` for kinds without Go types
/// (custom resources), which upstream patches with JSON merge patch.
pub(crate) fn root_type(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|&(_, ty)| ty)
}

use Strategy::{Default as D, Merge, Replace};

/// Several kinds share a shape as far as patching goes, hence the shared
/// roots: "Object" (only ObjectMeta carries tags), "Workload" (pod template
/// under spec, conditions under status) and "ObjectWithConditions".
const KINDS: &[(&str, &str)] = &[
    ("Pod", "Pod"),
    ("PodTemplate", "PodTemplate"),
    ("ReplicationController", "Workload"),
    ("Deployment", "Workload"),
    ("ReplicaSet", "Workload"),
    ("DaemonSet", "Workload"),
    ("StatefulSet", "Workload"),
    ("Job", "Workload"),
    ("CronJob", "CronJob"),
    ("Service", "Service"),
    ("Node", "Node"),
    ("ServiceAccount", "ServiceAccount"),
    ("PodDisruptionBudget", "PodDisruptionBudget"),
    ("Namespace", "ObjectWithConditions"),
    ("PersistentVolumeClaim", "ObjectWithConditions"),
    ("HorizontalPodAutoscaler", "ObjectWithConditions"),
    ("Endpoints", "Object"),
    ("ConfigMap", "Object"),
    ("Secret", "Object"),
    ("Event", "Object"),
    ("PersistentVolume", "Object"),
    ("LimitRange", "Object"),
    ("ResourceQuota", "Object"),
    ("ControllerRevision", "Object"),
    ("EndpointSlice", "Object"),
    ("Lease", "Object"),
    ("Ingress", "Object"),
    ("NetworkPolicy", "Object"),
    ("StorageClass", "Object"),
    ("PriorityClass", "Object"),
    ("Role", "Object"),
    ("RoleBinding", "Object"),
    ("ClusterRole", "Object"),
    ("ClusterRoleBinding", "Object"),
    ("Scale", "Object"),
];

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // meta/v1
    ("ObjectMeta", "finalizers", "", Merge("")),
    ("ObjectMeta", "ownerReferences", "", Merge("uid")),

    ("Object", "metadata", "ObjectMeta", D),
    ("ObjectWithConditions", "metadata", "ObjectMeta", D),
    ("ObjectWithConditions", "status", "StatusWithConditions", D),
    ("StatusWithConditions", "conditions", "", Merge("type")),

    // core/v1 Pod and its template
    ("Pod", "metadata", "ObjectMeta", D),
    ("Pod", "spec", "PodSpec", D),
    ("Pod", "status", "PodStatus", D),
    ("PodTemplate", "metadata", "ObjectMeta", D),
    ("PodTemplate", "template", "PodTemplateSpec", D),
    ("PodTemplateSpec", "metadata", "ObjectMeta", D),
    ("PodTemplateSpec", "spec", "PodSpec", D),
    ("PodSpec", "containers", "Container", Merge("name")),
    ("PodSpec", "initContainers", "Container", Merge("name")),
    // EphemeralContainerCommon carries the same tags as Container.
    ("PodSpec", "ephemeralContainers", "Container", Merge("name")),
    ("PodSpec", "volumes", "", Merge("name")),
    ("PodSpec", "imagePullSecrets", "", Merge("name")),
    ("PodSpec", "hostAliases", "", Merge("ip")),
    ("PodSpec", "topologySpreadConstraints", "", Merge("topologyKey")),
    ("PodSpec", "schedulingGates", "", Merge("name")),
    ("PodSpec", "resourceClaims", "", Merge("name")),
    ("Container", "ports", "", Merge("containerPort")),
    ("Container", "env", "", Merge("name")),
    ("Container", "volumeMounts", "", Merge("mountPath")),
    ("Container", "volumeDevices", "", Merge("devicePath")),
    ("PodStatus", "conditions", "", Merge("type")),
    ("PodStatus", "hostIPs", "", Merge("ip")),
    ("PodStatus", "podIPs", "", Merge("ip")),
    ("PodStatus", "resourceClaimStatuses", "", Merge("name")),

    // apps/v1 workloads, core/v1 ReplicationController, batch/v1 Job
    ("Workload", "metadata", "ObjectMeta", D),
    ("Workload", "spec", "WorkloadSpec", D),
    ("Workload", "status", "StatusWithConditions", D),
    ("WorkloadSpec", "template", "PodTemplateSpec", D),

    // batch/v1 CronJob: spec.jobTemplate.spec.template
    ("CronJob", "metadata", "ObjectMeta", D),
    ("CronJob", "spec", "CronJobSpec", D),
    ("CronJobSpec", "jobTemplate", "JobTemplateSpec", D),
    ("JobTemplateSpec", "metadata", "ObjectMeta", D),
    ("JobTemplateSpec", "spec", "WorkloadSpec", D),

    // core/v1 Service
    ("Service", "metadata", "ObjectMeta", D),
    ("Service", "spec", "ServiceSpec", D),
    ("Service", "status", "StatusWithConditions", D),
    ("ServiceSpec", "ports", "", Merge("port")),

    // core/v1 Node (taints carry no tag: they are replaced)
    ("Node", "metadata", "ObjectMeta", D),
    ("Node", "spec", "NodeSpec", D),
    ("Node", "status", "NodeStatus", D),
    ("NodeSpec", "podCIDRs", "", Merge("")),
    ("NodeStatus", "conditions", "", Merge("type")),
    ("NodeStatus", "addresses", "", Merge("type")),

    // core/v1 ServiceAccount
    ("ServiceAccount", "metadata", "ObjectMeta", D),
    ("ServiceAccount", "secrets", "", Merge("name")),

    // policy/v1 PodDisruptionBudget
    ("PodDisruptionBudget", "metadata", "ObjectMeta", D),
    ("PodDisruptionBudget", "spec", "PodDisruptionBudgetSpec", D),
    ("PodDisruptionBudget", "status", "StatusWithConditions", D),
    ("PodDisruptionBudgetSpec", "selector", "", Replace),
];
