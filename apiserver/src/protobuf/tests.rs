//! Bodies captured from kubectl v1.32 (testdata/*.pb), each expected to decode
//! to what `kubectl ... -o json --dry-run=client` prints for the same command
//! (less `creationTimestamp: null`), plus hand-built messages for what kubectl
//! does not send: inline structs, times, quantities, packed scalars.

use serde_json::json;

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/src/protobuf/testdata/{name}.pb",
        env!("CARGO_MANIFEST_DIR")
    );
    decode(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn kubectl_create_namespace() {
    // kubectl create namespace ns1
    assert_eq!(
        fixture("namespace"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}, "spec": {}, "status": {}})
    );
}

#[test]
fn kubectl_create_configmap() {
    // kubectl create configmap a --from-literal=k=v
    assert_eq!(
        fixture("configmap"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
    );
}

#[test]
fn kubectl_create_secret_generic() {
    // kubectl create secret generic s --from-literal=password=hunter2
    assert_eq!(
        fixture("secret"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}})
    );
}

#[test]
fn kubectl_create_deployment() {
    // kubectl create deployment d --image=nginx --replicas=2 --port=80
    assert_eq!(
        fixture("deployment"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [
                        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}
                    ]}
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn zero_replicas_is_kept_because_replicas_is_a_pointer() {
    // kubectl create deployment z --image=nginx --replicas=0
    assert_eq!(
        fixture("deployment-zero-replicas")["spec"]["replicas"],
        json!(0)
    );
}

#[test]
fn kubectl_auth_can_i() {
    // kubectl auth can-i create pods
    assert_eq!(
        fixture("can-i"),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
            "status": {"allowed": false}
        })
    );
    // kubectl auth can-i get pods/log --subresource=log -n kube-system
    assert_eq!(
        fixture("can-i-subresource")["spec"]["resourceAttributes"],
        json!({"namespace": "kube-system", "verb": "get", "resource": "pods", "subresource": "log", "name": "log"})
    );
}

#[test]
fn kubectl_auth_whoami() {
    assert_eq!(
        fixture("whoami"),
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {},
            "status": {"userInfo": {}}
        })
    );
}

#[test]
fn kubectl_create_token() {
    // kubectl create token sa
    assert_eq!(
        fixture("token"),
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {},
            "spec": {},
            "status": {"token": ""}
        })
    );
    // kubectl create token sa --duration=1h --audience=a --audience=b
    assert_eq!(
        fixture("token-audiences")["spec"],
        json!({"audiences": ["a", "b"], "expirationSeconds": 3600})
    );
}

#[test]
fn kubectl_autoscale() {
    // kubectl autoscale deployment d --min=2 --max=5 --cpu-percent=80
    assert_eq!(
        fixture("autoscale"),
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "d"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 80
            },
            "status": {"currentReplicas": 0, "desiredReplicas": 0}
        })
    );
}

#[test]
fn kubectl_create_job_and_cronjob() {
    // kubectl create job j --image=busybox -- echo hi
    assert_eq!(
        fixture("job"),
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {"template": {
                "metadata": {},
                "spec": {
                    "containers": [{"name": "j", "image": "busybox", "command": ["echo", "hi"], "resources": {}}],
                    "restartPolicy": "Never"
                }
            }},
            "status": {}
        })
    );
    // kubectl create cronjob cj --image=busybox --schedule='*/1 * * * *' -- echo hi
    let cronjob = fixture("cronjob");
    assert_eq!(cronjob["spec"]["schedule"], json!("*/1 * * * *"));
    assert_eq!(
        cronjob["spec"]["jobTemplate"]["metadata"],
        json!({"name": "cj"})
    );
    assert_eq!(
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        json!("OnFailure")
    );
}

#[test]
fn kubectl_create_service_and_serviceaccount() {
    // kubectl create service clusterip svc --tcp=80:8080
    assert_eq!(
        fixture("service"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc", "labels": {"app": "svc"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "svc"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
    assert_eq!(
        fixture("serviceaccount"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}})
    );
}

// ---- hand-built messages ----------------------------------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn int(field: u32, v: i64) -> Vec<u8> {
    [varint(u64::from(field) << 3), varint(v as u64)].concat()
}

fn bytes(field: u32, b: &[u8]) -> Vec<u8> {
    [
        varint(u64::from(field) << 3 | 2),
        varint(b.len() as u64),
        b.to_vec(),
    ]
    .concat()
}

fn str(field: u32, s: &str) -> Vec<u8> {
    bytes(field, s.as_bytes())
}

fn msg(field: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    bytes(field, &parts.concat())
}

fn entry(field: u32, key: &str, value: Vec<u8>) -> Vec<u8> {
    msg(field, &[str(1, key), value])
}

fn envelope(api_version: &str, kind: &str, raw: &[Vec<u8>]) -> Vec<u8> {
    let unknown = [
        msg(1, &[str(1, api_version), str(2, kind)]),
        msg(2, raw),
        str(3, ""),
        str(4, ""),
    ];
    [MAGIC.to_vec(), unknown.concat()].concat()
}

#[test]
fn pod_with_inline_structs_times_quantities_and_pointers() {
    let metadata = msg(
        1,
        &[
            str(1, "p"),
            str(2, ""), // generateName: omitempty, dropped
            int(7, 0),  // generation: omitempty, dropped
            msg(8, &[int(1, 1_795_305_600)]),
            msg(9, &[]), // deletionTimestamp: zero time, dropped
            entry(11, "a", str(2, "b")),
            str(16, "future"), // a field this table does not know: skipped
        ],
    );
    let container = msg(
        2,
        &[
            str(1, "c"),
            str(2, "nginx"),
            msg(
                7,
                &[
                    str(1, "PASSWORD"),
                    msg(3, &[msg(4, &[msg(1, &[str(1, "creds")]), str(2, "pw")])]),
                ],
            ),
            msg(
                8,
                &[
                    entry(1, "cpu", msg(2, &[str(1, "500m")])),
                    entry(2, "memory", msg(2, &[str(1, "64Mi")])),
                ],
            ),
            msg(
                10,
                &[
                    msg(
                        1,
                        &[msg(
                            2,
                            &[str(1, "/healthz"), msg(2, &[int(1, 1), str(3, "http")])],
                        )],
                    ),
                    int(2, 0),
                    int(7, 0),
                ],
            ),
            int(16, 0), // stdin: omitempty, dropped
        ],
    );
    let spec = msg(
        2,
        &[
            msg(
                1,
                &[
                    str(1, "scratch"),
                    msg(2, &[msg(2, &[msg(2, &[str(1, "1Gi")])])]),
                ],
            ),
            container,
            int(4, 0),  // terminationGracePeriodSeconds: a pointer, kept
            int(11, 0), // hostNetwork: omitempty, dropped
            int(21, 0), // automountServiceAccountToken: a pointer, kept
            msg(14, &[bytes(4, &[1, 2]), int(4, 300), bytes(4, &[])]), // supplementalGroups packed, then not
        ],
    );
    let body = envelope("v1", "Pod", &[metadata, spec]);
    assert_eq!(
        decode(&body).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": "2026-11-22T00:00:00Z", "labels": {"a": "b"}},
            "spec": {
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                "containers": [{
                    "name": "c",
                    "image": "nginx",
                    "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}}],
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "terminationGracePeriodSeconds": 0}
                }],
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "securityContext": {"supplementalGroups": [1, 2, 300]}
            }
        })
    );
}

#[test]
fn secret_bytes_and_user_extra() {
    let secret = envelope(
        "v1",
        "Secret",
        &[
            msg(1, &[str(1, "s")]),
            entry(2, "bin", bytes(2, &[0, 0xff])),
            entry(2, "empty", vec![]),
            str(3, "Opaque"),
            int(5, 0),
        ],
    );
    assert_eq!(
        decode(&secret).unwrap(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
               "data": {"bin": "AP8=", "empty": ""}, "type": "Opaque", "immutable": false})
    );
    let review = envelope(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &[msg(
            2,
            &[msg(
                1,
                &[
                    str(1, "alice"),
                    str(3, "devs"),
                    entry(4, "scopes", msg(2, &[str(1, "x"), str(1, "y")])),
                ],
            )],
        )],
    );
    assert_eq!(
        decode(&review).unwrap()["status"]["userInfo"],
        json!({"username": "alice", "groups": ["devs"], "extra": {"scopes": ["x", "y"]}})
    );
}

#[test]
fn errors_say_what_and_where() {
    let err = |body: &[u8]| decode(body).unwrap_err().to_string();
    assert_eq!(
        err(b"{\"kind\":\"Pod\"}"),
        "protobuf body does not start with the Kubernetes magic prefix \"k8s\\x00\""
    );
    assert_eq!(
        err(&envelope("v9", "Gizmo", &[])),
        "unknown kind \"Gizmo\" in \"v9\" for protobuf"
    );
    assert_eq!(
        err(&envelope("", "", &[])),
        "protobuf envelope has no apiVersion and kind"
    );

    let full = std::fs::read(format!(
        "{}/src/protobuf/testdata/deployment.pb",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(matches!(
        decode(&full[..full.len() - 3]),
        Err(DecodeError::Truncated { .. })
    ));

    let bad_name = envelope(
        "apps/v1",
        "Deployment",
        &[msg(
            2,
            &[msg(
                3,
                &[msg(2, &[msg(2, &[str(1, "ok")]), msg(2, &[int(1, 7)])])],
            )],
        )],
    );
    assert_eq!(
        err(&bad_name),
        "malformed protobuf message at spec.template.spec.containers[1].name: wire type Varint, expected Len"
    );

    let mut gzip = envelope("v1", "ConfigMap", &[]);
    gzip.extend(str(3, "gzip"));
    assert_eq!(
        err(&gzip),
        "unsupported content encoding \"gzip\" in protobuf envelope"
    );
}

#[test]
fn schema_is_consistent_and_acyclic() {
    // Acyclic means decoding recursion is bounded by the schema's depth,
    // whatever the input.
    fn visit(fields: &'static [Field], stack: &mut Vec<*const Field>) {
        assert!(
            !stack.contains(&fields.as_ptr()),
            "cycle through {:?}",
            fields.first().map(|f| f.1)
        );
        stack.push(fields.as_ptr());
        for (i, Field(number, name, ty, card)) in fields.iter().enumerate() {
            assert!(
                fields[..i].iter().all(|f| f.0 != *number),
                "duplicate field {number} ({name})"
            );
            assert_eq!(name.is_empty(), *card == Card::Inline, "{name}");
            if let Ty::Msg(sub) = ty {
                visit(sub, stack);
            } else {
                assert!(*card != Card::Inline, "inline scalar {number}");
            }
        }
        stack.pop();
    }
    for (_, _, fields) in schema::KINDS {
        visit(fields, &mut Vec::new());
    }
}
