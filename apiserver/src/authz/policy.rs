//! The bootstrap policy: the ClusterRoles, ClusterRoleBindings, Roles and
//! RoleBindings every cluster starts with, with upstream's names and
//! permissions (kube-apiserver's bootstrappolicy), so `view`, `edit`,
//! `admin`, `system:node` … mean what they mean upstream.

/// One PolicyRule. Empty slices are absent fields.
pub struct Rule {
    pub verbs: &'static [&'static str],
    pub groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub names: &'static [&'static str],
    pub urls: &'static [&'static str],
}

/// A rule on resources.
const fn r(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        groups,
        resources,
        names: &[],
        urls: &[],
    }
}

/// A rule on resources of the given names only.
const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        groups,
        resources,
        names,
        urls: &[],
    }
}

/// A rule on non-resource URLs.
const fn urls(verbs: &'static [&'static str], urls: &'static [&'static str]) -> Rule {
    Rule {
        verbs,
        groups: &[],
        resources: &[],
        names: &[],
        urls,
    }
}

pub struct Role {
    pub name: &'static str,
    /// Labels besides `kubernetes.io/bootstrapping: rbac-defaults`
    /// (for example `rbac.authorization.k8s.io/aggregate-to-view: "true"`).
    pub labels: &'static [(&'static str, &'static str)],
    pub rules: &'static [Rule],
    /// An aggregationRule: each entry is one clusterRoleSelector's matchLabels.
    pub aggregate: &'static [&'static [(&'static str, &'static str)]],
}

pub enum Subject {
    User(&'static str),
    Group(&'static str),
    /// namespace, name
    ServiceAccount(&'static str, &'static str),
}

pub struct Binding {
    pub name: &'static str,
    /// The (Cluster)Role it refers to; a namespaced binding's role is a Role
    /// of its namespace.
    pub role: &'static str,
    pub subjects: &'static [Subject],
}

// ---- data below ----

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Upstream's eventsRule(): create/update/patch events in both groups.
const EVENTS: Rule = r(
    &["create", "patch", "update"],
    &["", "events.k8s.io"],
    &["events"],
);

const AGGREGATE_TO_ADMIN: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
const AGGREGATE_TO_EDIT: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
const AGGREGATE_TO_VIEW: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-view", "true");
/// Marks the controller roles skiff's single-credential controller manager
/// needs; they aggregate into `skiff:controller-manager`.
const AGGREGATE_TO_CM: (&str, &str) = ("rbac.skiff.dev/aggregate-to-controller-manager", "true");
const TO_CM: &[(&str, &str)] = &[AGGREGATE_TO_CM];

pub static CLUSTER_ROLES: &[Role] = &[
    Role {
        name: "admin",
        labels: &[],
        rules: &[],
        aggregate: &[&[AGGREGATE_TO_ADMIN]],
    },
    Role {
        name: "cluster-admin",
        labels: &[],
        rules: &[r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        aggregate: &[],
    },
    Role {
        name: "edit",
        labels: &[AGGREGATE_TO_ADMIN],
        rules: &[],
        aggregate: &[&[AGGREGATE_TO_EDIT]],
    },
    Role {
        name: "system:aggregate-to-admin",
        labels: &[AGGREGATE_TO_ADMIN],
        rules: &[
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews"],
            ),
            r(
                READ_WRITE,
                &["rbac.authorization.k8s.io"],
                &["rolebindings", "roles"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:aggregate-to-edit",
        labels: &[AGGREGATE_TO_EDIT],
        rules: &[
            r(
                READ,
                &[""],
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            r(&["impersonate"], &[""], &["serviceaccounts"]),
            r(
                WRITE,
                &[""],
                &[
                    "pods",
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                ],
            ),
            r(&["create"], &[""], &["pods/eviction"]),
            r(
                WRITE,
                &[""],
                &[
                    "configmaps",
                    "events",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            r(&["create"], &[""], &["serviceaccounts/token"]),
            r(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(WRITE, &["batch"], &["cronjobs", "jobs"]),
            r(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
            ),
            r(WRITE, &["policy"], &["poddisruptionbudgets"]),
            r(
                WRITE,
                &["networking.k8s.io"],
                &["ingresses", "networkpolicies"],
            ),
            r(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:aggregate-to-view",
        labels: &[AGGREGATE_TO_VIEW],
        rules: &[
            r(
                READ,
                &[""],
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            r(
                READ,
                &[""],
                &[
                    "bindings",
                    "events",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            r(READ, &[""], &["namespaces"]),
            r(READ, &["discovery.k8s.io"], &["endpointslices"]),
            r(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            r(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
            ),
            r(
                READ,
                &["batch"],
                &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            ),
            r(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
            ),
            r(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            r(
                READ,
                &["networking.k8s.io"],
                &["ingresses", "ingresses/status", "networkpolicies"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:auth-delegator",
        labels: &[],
        rules: &[
            r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:basic-user",
        labels: &[],
        rules: &[
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            r(
                &["create"],
                &["authentication.k8s.io"],
                &["selfsubjectreviews"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        labels: &[],
        rules: &[r(
            &["create"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests/nodeclient"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        labels: &[],
        rules: &[r(
            &["create"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests/selfnodeclient"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:certificates.k8s.io:kube-apiserver-client-approver",
        labels: &[],
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        labels: &[],
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client-kubelet"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:certificates.k8s.io:kubelet-serving-approver",
        labels: &[],
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/kubelet-serving"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:certificates.k8s.io:legacy-unknown-approver",
        labels: &[],
        rules: &[named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &["kubernetes.io/legacy-unknown"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:discovery",
        labels: &[],
        rules: &[urls(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:heapster",
        labels: &[],
        rules: &[
            r(READ, &[""], &["events", "namespaces", "nodes", "pods"]),
            r(READ, &["extensions"], &["deployments"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:kube-aggregator",
        labels: &[],
        rules: &[r(READ, &[""], &["endpoints", "services"])],
        aggregate: &[],
    },
    Role {
        name: "system:kube-controller-manager",
        labels: &[],
        rules: &[
            EVENTS,
            r(&["create"], &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-controller-manager"],
            ),
            r(&["create"], &[""], &["secrets", "serviceaccounts"]),
            r(&["delete"], &[""], &["secrets"]),
            r(
                &["get"],
                &[""],
                &["configmaps", "namespaces", "secrets", "serviceaccounts"],
            ),
            r(&["update"], &[""], &["secrets", "serviceaccounts"]),
            r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            r(&["list", "watch"], &["*"], &["*"]),
            r(&["create"], &[""], &["serviceaccounts/token"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:kube-dns",
        labels: &[],
        rules: &[r(&["list", "watch"], &[""], &["endpoints", "services"])],
        aggregate: &[],
    },
    Role {
        name: "system:kube-scheduler",
        labels: &[],
        rules: &[
            EVENTS,
            r(&["create"], &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "list", "update", "watch"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-scheduler"],
            ),
            r(READ_WRITE, &["coordination.k8s.io"], &["leasecandidates"]),
            r(READ, &[""], &["nodes"]),
            r(&["delete", "get", "list", "watch"], &[""], &["pods"]),
            r(&["create"], &[""], &["bindings", "pods/binding"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(READ, &[""], &["replicationcontrollers", "services"]),
            r(READ, &["apps", "extensions"], &["replicasets"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(READ, &["policy"], &["poddisruptionbudgets"]),
            r(
                READ,
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            r(READ, &["storage.k8s.io"], &["csinodes"]),
            r(READ, &["storage.k8s.io"], &["volumeattachments"]),
            r(READ, &[""], &["namespaces"]),
            r(READ, &["storage.k8s.io"], &["csidrivers"]),
            r(READ, &["storage.k8s.io"], &["csistoragecapacities"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:kubelet-api-admin",
        labels: &[],
        rules: &[
            r(READ, &[""], &["nodes"]),
            r(&["proxy"], &[""], &["nodes"]),
            r(
                &["*"],
                &[""],
                &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:monitoring",
        labels: &[],
        rules: &[urls(
            &["get"],
            &[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:node",
        labels: &[],
        rules: &[
            r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews", "subjectaccessreviews"],
            ),
            r(READ, &[""], &["services"]),
            r(&["create", "get", "list", "watch"], &[""], &["nodes"]),
            r(&["patch", "update"], &[""], &["nodes/status"]),
            r(&["patch", "update"], &[""], &["nodes"]),
            r(&["create", "patch", "update"], &[""], &["events"]),
            r(READ, &[""], &["pods"]),
            r(&["create", "delete"], &[""], &["pods"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(&["create"], &[""], &["pods/eviction"]),
            r(READ, &[""], &["configmaps", "secrets"]),
            r(
                &["get"],
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            r(&["get"], &[""], &["endpoints"]),
            r(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            r(
                &["create", "delete", "get", "patch", "update"],
                &["coordination.k8s.io"],
                &["leases"],
            ),
            r(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
            r(&["create"], &[""], &["serviceaccounts/token"]),
            r(
                &["get", "patch", "update"],
                &[""],
                &["persistentvolumeclaims/status"],
            ),
            r(READ, &["storage.k8s.io"], &["csidrivers"]),
            r(
                &["create", "delete", "get", "patch", "update"],
                &["storage.k8s.io"],
                &["csinodes"],
            ),
            r(READ, &["node.k8s.io"], &["runtimeclasses"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:node-bootstrapper",
        labels: &[],
        rules: &[r(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:node-problem-detector",
        labels: &[],
        rules: &[
            r(&["get"], &[""], &["nodes"]),
            r(&["patch"], &[""], &["nodes/status"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:node-proxier",
        labels: &[],
        rules: &[
            r(&["list", "watch"], &[""], &["endpoints", "services"]),
            r(READ, &[""], &["nodes"]),
            EVENTS,
            r(
                &["list", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:persistent-volume-provisioner",
        labels: &[],
        rules: &[
            r(
                &["create", "delete", "get", "list", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(&["watch"], &[""], &["events"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:public-info-viewer",
        labels: &[],
        rules: &[urls(
            &["get"],
            &["/healthz", "/livez", "/readyz", "/version", "/version/"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:service-account-issuer-discovery",
        labels: &[],
        rules: &[urls(
            &["get"],
            &[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:volume-scheduler",
        labels: &[],
        rules: &[
            r(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "view",
        labels: &[AGGREGATE_TO_EDIT],
        rules: &[],
        aggregate: &[&[AGGREGATE_TO_VIEW]],
    },
    // The controller roles (upstream's controller_policy.go).
    Role {
        name: "system:controller:attachdetach-controller",
        labels: &[],
        rules: &[
            r(
                &["list", "watch"],
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            r(READ, &[""], &["nodes"]),
            r(&["patch", "update"], &[""], &["nodes/status"]),
            r(&["list", "watch"], &[""], &["pods"]),
            EVENTS,
            r(
                &["create", "delete", "get", "list", "watch"],
                &["storage.k8s.io"],
                &["volumeattachments"],
            ),
            r(READ, &["storage.k8s.io"], &["csidrivers"]),
            r(READ, &["storage.k8s.io"], &["csinodes"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:certificate-controller",
        labels: &[],
        rules: &[
            r(
                &["delete", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            r(
                &["update"],
                &["certificates.k8s.io"],
                &[
                    "certificatesigningrequests/approval",
                    "certificatesigningrequests/status",
                ],
            ),
            named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client-kubelet"],
            ),
            named(
                &["sign"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                    "kubernetes.io/legacy-unknown",
                ],
            ),
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:clusterrole-aggregation-controller",
        labels: &[],
        rules: &[r(
            &["escalate", "get", "list", "patch", "update", "watch"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
        )],
        aggregate: &[],
    },
    Role {
        name: "system:controller:cronjob-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["get", "list", "update", "watch"],
                &["batch"],
                &["cronjobs"],
            ),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["batch"],
                &["jobs"],
            ),
            r(&["update"], &["batch"], &["cronjobs/status"]),
            r(&["update"], &["batch"], &["cronjobs/finalizers"]),
            r(&["delete", "list", "watch"], &[""], &["pods"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:daemon-set-controller",
        labels: TO_CM,
        rules: &[
            r(READ, &["apps", "extensions"], &["daemonsets"]),
            r(&["update"], &["apps", "extensions"], &["daemonsets/status"]),
            r(
                &["update"],
                &["apps", "extensions"],
                &["daemonsets/finalizers"],
            ),
            r(&["list", "watch"], &[""], &["nodes"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            r(&["create"], &[""], &["pods/binding"]),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["apps"],
                &["controllerrevisions"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:deployment-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["get", "list", "update", "watch"],
                &["apps", "extensions"],
                &["deployments"],
            ),
            r(
                &["update"],
                &["apps", "extensions"],
                &["deployments/status"],
            ),
            r(
                &["update"],
                &["apps", "extensions"],
                &["deployments/finalizers"],
            ),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["apps", "extensions"],
                &["replicasets"],
            ),
            r(&["get", "list", "update", "watch"], &[""], &["pods"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:disruption-controller",
        labels: TO_CM,
        rules: &[
            r(READ, &["apps", "extensions"], &["deployments"]),
            r(READ, &["apps", "extensions"], &["replicasets"]),
            r(READ, &[""], &["replicationcontrollers"]),
            r(READ, &["policy"], &["poddisruptionbudgets"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(&["get"], &["*"], &["*/scale"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:endpoint-controller",
        labels: TO_CM,
        rules: &[
            r(READ, &[""], &["pods", "services"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &[""],
                &["endpoints"],
            ),
            r(&["create"], &[""], &["endpoints/restricted"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:endpointslice-controller",
        labels: TO_CM,
        rules: &[
            r(READ, &[""], &["nodes", "pods", "services"]),
            r(&["update"], &[""], &["services/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:endpointslicemirroring-controller",
        labels: &[],
        rules: &[
            r(READ, &[""], &["endpoints", "services"]),
            r(&["update"], &[""], &["services/finalizers"]),
            r(&["update"], &[""], &["endpoints/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:ephemeral-volume-controller",
        labels: TO_CM,
        rules: &[
            r(READ, &[""], &["pods"]),
            r(&["update"], &[""], &["pods/finalizers"]),
            r(
                &["create", "get", "list", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:expand-controller",
        labels: &[],
        rules: &[
            r(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(
                &["patch", "update"],
                &[""],
                &["persistentvolumeclaims/status"],
            ),
            r(READ, &[""], &["persistentvolumeclaims"]),
            EVENTS,
            r(&["get"], &[""], &["services"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:generic-garbage-collector",
        labels: TO_CM,
        rules: &[
            r(
                &["delete", "get", "list", "patch", "update", "watch"],
                &["*"],
                &["*"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:horizontal-pod-autoscaler",
        labels: &[],
        rules: &[
            r(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(
                &["update"],
                &["autoscaling"],
                &["horizontalpodautoscalers/status"],
            ),
            r(&["get", "update"], &["*"], &["*/scale"]),
            r(&["list", "watch"], &[""], &["pods"]),
            r(&["list", "watch"], &["metrics.k8s.io"], &["pods"]),
            r(READ, &["custom.metrics.k8s.io"], &["*"]),
            r(READ, &["external.metrics.k8s.io"], &["*"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:job-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["get", "list", "patch", "update", "watch"],
                &["batch"],
                &["jobs"],
            ),
            r(&["update"], &["batch"], &["jobs/status"]),
            r(&["update"], &["batch"], &["jobs/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:legacy-service-account-token-cleaner",
        labels: &[],
        rules: &[
            named(
                &["get"],
                &[""],
                &["configmaps"],
                &["kube-apiserver-legacy-service-account-token-tracking"],
            ),
            r(&["delete", "patch"], &[""], &["secrets"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:namespace-controller",
        labels: TO_CM,
        rules: &[
            r(&["delete", "get", "list", "watch"], &[""], &["namespaces"]),
            r(
                &["update"],
                &[""],
                &["namespaces/finalize", "namespaces/status"],
            ),
            r(
                &["delete", "deletecollection", "get", "list", "watch"],
                &["*"],
                &["*"],
            ),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:node-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["delete", "get", "list", "patch", "update", "watch"],
                &[""],
                &["nodes"],
            ),
            r(&["patch", "update"], &[""], &["nodes/status"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(&["delete", "get", "list", "watch"], &[""], &["pods"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:persistent-volume-binder",
        labels: TO_CM,
        rules: &[
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(&["update"], &[""], &["persistentvolumes/status"]),
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(&["update"], &[""], &["persistentvolumeclaims/status"]),
            r(
                &["create", "delete", "get", "list", "watch"],
                &[""],
                &["pods"],
            ),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(&["list", "watch"], &[""], &["nodes"]),
            EVENTS,
            r(&["watch"], &[""], &["events"]),
            r(&["get"], &[""], &["services"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:pod-garbage-collector",
        labels: TO_CM,
        rules: &[
            r(&["delete", "list", "watch"], &[""], &["pods"]),
            r(READ, &[""], &["nodes"]),
            r(&["patch"], &[""], &["pods/status"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:pv-protection-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:pvc-protection-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(READ, &[""], &["pods"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:replicaset-controller",
        labels: TO_CM,
        rules: &[
            r(
                &["get", "list", "update", "watch"],
                &["apps", "extensions"],
                &["replicasets"],
            ),
            r(
                &["update"],
                &["apps", "extensions"],
                &["replicasets/status"],
            ),
            r(
                &["update"],
                &["apps", "extensions"],
                &["replicasets/finalizers"],
            ),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:replication-controller",
        labels: &[],
        rules: &[
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["replicationcontrollers"],
            ),
            r(&["update"], &[""], &["replicationcontrollers/status"]),
            r(&["update"], &[""], &["replicationcontrollers/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:resourcequota-controller",
        labels: TO_CM,
        rules: &[
            r(&["list", "watch"], &["*"], &["*"]),
            r(&["update"], &[""], &["resourcequotas/status"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:root-ca-cert-publisher",
        labels: TO_CM,
        rules: &[r(&["create", "update"], &[""], &["configmaps"]), EVENTS],
        aggregate: &[],
    },
    Role {
        name: "system:controller:route-controller",
        labels: &[],
        rules: &[
            r(&["list", "watch"], &[""], &["nodes"]),
            r(&["patch"], &[""], &["nodes/status"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:service-account-controller",
        labels: TO_CM,
        rules: &[r(&["create"], &[""], &["serviceaccounts"]), EVENTS],
        aggregate: &[],
    },
    Role {
        name: "system:controller:service-controller",
        // skiff's ServiceLB plays this controller's part.
        labels: TO_CM,
        rules: &[
            r(READ, &[""], &["services"]),
            r(&["patch", "update"], &[""], &["services/status"]),
            r(&["list", "watch"], &[""], &["nodes"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:statefulset-controller",
        labels: TO_CM,
        rules: &[
            r(&["list", "watch"], &[""], &["pods"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(&["update"], &["apps"], &["statefulsets/status"]),
            r(&["update"], &["apps"], &["statefulsets/finalizers"]),
            r(
                &["create", "delete", "get", "patch", "update"],
                &[""],
                &["pods"],
            ),
            r(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["apps"],
                &["controllerrevisions"],
            ),
            r(
                &["create", "get", "list", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            EVENTS,
            r(&["delete", "update"], &[""], &["persistentvolumeclaims"]),
            r(&["update"], &[""], &["pods/finalizers"]),
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:ttl-after-finished-controller",
        labels: TO_CM,
        rules: &[
            r(&["delete", "get", "list", "watch"], &["batch"], &["jobs"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:ttl-controller",
        labels: &[],
        rules: &[
            r(&["list", "patch", "update", "watch"], &[""], &["nodes"]),
            EVENTS,
        ],
        aggregate: &[],
    },
    Role {
        name: "system:controller:validatingadmissionpolicy-status-controller",
        labels: &[],
        rules: &[
            r(
                READ,
                &["admissionregistration.k8s.io"],
                &["validatingadmissionpolicies"],
            ),
            r(
                &["get", "patch", "update"],
                &["admissionregistration.k8s.io"],
                &["validatingadmissionpolicies/status"],
            ),
            EVENTS,
        ],
        aggregate: &[],
    },
    // skiff: the controller manager runs every controller with one
    // credential; this role gathers the controller roles it runs.
    Role {
        name: "skiff:controller-manager",
        labels: &[],
        rules: &[],
        aggregate: &[&[AGGREGATE_TO_CM]],
    },
    // skiff's local-path provisioner makes its StorageClass, the default;
    // the volumes themselves are the persistent-volume-binder's.
    Role {
        name: "skiff:controller:local-path-provisioner",
        labels: TO_CM,
        rules: &[r(
            &["create", "get"],
            &["storage.k8s.io"],
            &["storageclasses"],
        )],
        aggregate: &[],
    },
];

/// The binding upstream's addControllerRole makes for each controller role:
/// `system:controller:X` to ServiceAccount kube-system/X.
macro_rules! controller_binding {
    ($sa:literal) => {
        Binding {
            name: concat!("system:controller:", $sa),
            role: concat!("system:controller:", $sa),
            subjects: &[Subject::ServiceAccount("kube-system", $sa)],
        }
    };
}

pub static CLUSTER_ROLE_BINDINGS: &[Binding] = &[
    Binding {
        name: "cluster-admin",
        role: "cluster-admin",
        subjects: &[Subject::Group("system:masters")],
    },
    Binding {
        name: "system:basic-user",
        role: "system:basic-user",
        subjects: &[Subject::Group("system:authenticated")],
    },
    Binding {
        name: "system:discovery",
        role: "system:discovery",
        subjects: &[Subject::Group("system:authenticated")],
    },
    Binding {
        name: "system:kube-controller-manager",
        role: "system:kube-controller-manager",
        subjects: &[Subject::User("system:kube-controller-manager")],
    },
    Binding {
        name: "system:kube-dns",
        role: "system:kube-dns",
        subjects: &[Subject::ServiceAccount("kube-system", "kube-dns")],
    },
    Binding {
        name: "system:kube-scheduler",
        role: "system:kube-scheduler",
        subjects: &[Subject::User("system:kube-scheduler")],
    },
    Binding {
        name: "system:monitoring",
        role: "system:monitoring",
        subjects: &[Subject::Group("system:monitoring")],
    },
    // Upstream keeps this binding without subjects; nodes are authorized by
    // the Node authorizer.
    Binding {
        name: "system:node",
        role: "system:node",
        subjects: &[],
    },
    // skiff: the node agent runs the service proxy with its node credential.
    Binding {
        name: "system:node-proxier",
        role: "system:node-proxier",
        subjects: &[
            Subject::User("system:kube-proxy"),
            Subject::Group("system:nodes"),
        ],
    },
    Binding {
        name: "system:public-info-viewer",
        role: "system:public-info-viewer",
        subjects: &[
            Subject::Group("system:authenticated"),
            Subject::Group("system:unauthenticated"),
        ],
    },
    Binding {
        name: "system:service-account-issuer-discovery",
        role: "system:service-account-issuer-discovery",
        subjects: &[Subject::Group("system:serviceaccounts")],
    },
    Binding {
        name: "system:volume-scheduler",
        role: "system:volume-scheduler",
        subjects: &[Subject::User("system:kube-scheduler")],
    },
    controller_binding!("attachdetach-controller"),
    controller_binding!("certificate-controller"),
    controller_binding!("clusterrole-aggregation-controller"),
    controller_binding!("cronjob-controller"),
    controller_binding!("daemon-set-controller"),
    controller_binding!("deployment-controller"),
    controller_binding!("disruption-controller"),
    controller_binding!("endpoint-controller"),
    controller_binding!("endpointslice-controller"),
    controller_binding!("endpointslicemirroring-controller"),
    controller_binding!("ephemeral-volume-controller"),
    controller_binding!("expand-controller"),
    controller_binding!("generic-garbage-collector"),
    controller_binding!("horizontal-pod-autoscaler"),
    controller_binding!("job-controller"),
    controller_binding!("legacy-service-account-token-cleaner"),
    controller_binding!("namespace-controller"),
    controller_binding!("node-controller"),
    controller_binding!("persistent-volume-binder"),
    controller_binding!("pod-garbage-collector"),
    controller_binding!("pv-protection-controller"),
    controller_binding!("pvc-protection-controller"),
    controller_binding!("replicaset-controller"),
    controller_binding!("replication-controller"),
    controller_binding!("resourcequota-controller"),
    controller_binding!("root-ca-cert-publisher"),
    controller_binding!("route-controller"),
    controller_binding!("service-account-controller"),
    controller_binding!("service-controller"),
    controller_binding!("statefulset-controller"),
    controller_binding!("ttl-after-finished-controller"),
    controller_binding!("ttl-controller"),
    controller_binding!("validatingadmissionpolicy-status-controller"),
    // skiff's controller manager authenticates as system:kube-controller-manager.
    Binding {
        name: "skiff:controller-manager",
        role: "skiff:controller-manager",
        subjects: &[Subject::User("system:kube-controller-manager")],
    },
];

pub static ROLES: &[(&str, Role)] = &[
    (
        "kube-public",
        Role {
            name: "system:controller:bootstrap-signer",
            labels: &[],
            rules: &[
                r(READ, &[""], &["configmaps"]),
                named(&["update"], &[""], &["configmaps"], &["cluster-info"]),
                EVENTS,
            ],
            aggregate: &[],
        },
    ),
    (
        "kube-system",
        Role {
            name: "extension-apiserver-authentication-reader",
            labels: &[],
            rules: &[named(
                READ,
                &[""],
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
            aggregate: &[],
        },
    ),
    (
        "kube-system",
        Role {
            name: "system::leader-locking-kube-controller-manager",
            labels: &[],
            rules: &[
                r(&["watch"], &[""], &["configmaps"]),
                named(
                    &["get", "update"],
                    &[""],
                    &["configmaps"],
                    &["kube-controller-manager"],
                ),
                r(
                    &["create", "get", "list", "update", "watch"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                r(
                    &["create", "get", "list", "update", "watch"],
                    &["coordination.k8s.io"],
                    &["leasecandidates"],
                ),
            ],
            aggregate: &[],
        },
    ),
    (
        "kube-system",
        Role {
            name: "system::leader-locking-kube-scheduler",
            labels: &[],
            rules: &[
                r(&["watch"], &[""], &["configmaps"]),
                named(
                    &["get", "update"],
                    &[""],
                    &["configmaps"],
                    &["kube-scheduler"],
                ),
                r(
                    &["create", "get", "list", "update", "watch"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                r(
                    &["create", "get", "list", "update", "watch"],
                    &["coordination.k8s.io"],
                    &["leasecandidates"],
                ),
            ],
            aggregate: &[],
        },
    ),
    (
        "kube-system",
        Role {
            name: "system:controller:bootstrap-signer",
            labels: &[],
            rules: &[r(READ, &[""], &["secrets"])],
            aggregate: &[],
        },
    ),
    (
        "kube-system",
        Role {
            name: "system:controller:cloud-provider",
            labels: &[],
            rules: &[r(
                &["create", "get", "list", "watch"],
                &[""],
                &["configmaps"],
            )],
            aggregate: &[],
        },
    ),
    (
        "kube-system",
        Role {
            name: "system:controller:token-cleaner",
            labels: &[],
            rules: &[
                r(&["delete", "get", "list", "watch"], &[""], &["secrets"]),
                EVENTS,
            ],
            aggregate: &[],
        },
    ),
    // skiff: see the binding of the same name.
    (
        "kube-system",
        Role {
            name: "skiff:node-dns",
            labels: &[],
            rules: &[r(
                &["create", "get", "patch", "update"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            )],
            aggregate: &[],
        },
    ),
];

pub static ROLE_BINDINGS: &[(&str, Binding)] = &[
    (
        "kube-public",
        Binding {
            name: "system:controller:bootstrap-signer",
            role: "system:controller:bootstrap-signer",
            subjects: &[Subject::ServiceAccount("kube-system", "bootstrap-signer")],
        },
    ),
    (
        "kube-system",
        Binding {
            name: "system::extension-apiserver-authentication-reader",
            role: "extension-apiserver-authentication-reader",
            subjects: &[
                Subject::User("system:kube-controller-manager"),
                Subject::User("system:kube-scheduler"),
            ],
        },
    ),
    (
        "kube-system",
        Binding {
            name: "system::leader-locking-kube-controller-manager",
            role: "system::leader-locking-kube-controller-manager",
            subjects: &[
                Subject::User("system:kube-controller-manager"),
                Subject::ServiceAccount("kube-system", "kube-controller-manager"),
                Subject::ServiceAccount("kube-system", "leader-election-controller"),
            ],
        },
    ),
    (
        "kube-system",
        Binding {
            name: "system::leader-locking-kube-scheduler",
            role: "system::leader-locking-kube-scheduler",
            subjects: &[
                Subject::User("system:kube-scheduler"),
                Subject::ServiceAccount("kube-system", "kube-scheduler"),
            ],
        },
    ),
    (
        "kube-system",
        Binding {
            name: "system:controller:bootstrap-signer",
            role: "system:controller:bootstrap-signer",
            subjects: &[Subject::ServiceAccount("kube-system", "bootstrap-signer")],
        },
    ),
    (
        "kube-system",
        Binding {
            name: "system:controller:cloud-provider",
            role: "system:controller:cloud-provider",
            subjects: &[Subject::ServiceAccount("kube-system", "cloud-provider")],
        },
    ),
    (
        "kube-system",
        Binding {
            name: "system:controller:token-cleaner",
            role: "system:controller:token-cleaner",
            subjects: &[Subject::ServiceAccount("kube-system", "token-cleaner")],
        },
    ),
    // skiff: every node's DNS server publishes its own EndpointSlice of the
    // kube-dns Service (NodeRestriction holds each to its own).
    (
        "kube-system",
        Binding {
            name: "skiff:node-dns",
            role: "skiff:node-dns",
            subjects: &[Subject::Group("system:nodes")],
        },
    ),
];
