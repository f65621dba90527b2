//! CustomResourceDefinitions with the real kubectl: a CRD is accepted and
//! established, its objects are served at their own paths with the
//! schema's defaults, pruning and validation, printer columns, the status
//! and scale subresources, every served version, `kubectl explain`, and go
//! away with their CRD.

mod common;

use common::{get_json, kubectl_until, server_and_namespace, Server};
use std::time::{Duration, Instant};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    selectableFields:
    - jsonPath: .spec.image
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the cron job runs, and when.
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
          status:
            type: object
            properties:
              replicas:
                type: integer
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: my-cron
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"#;

/// `kubectl get crd <name>`'s condition `kind`, its `field` (status, reason).
fn crd_condition_args(name: &str, kind: &str, field: &str) -> [String; 5] {
    [
        "get".into(),
        "crd".into(),
        name.into(),
        "-o".into(),
        format!(r#"jsonpath={{.status.conditions[?(@.type=="{kind}")].{field}}}"#),
    ]
}

/// Waits until the condition has an answer, and returns it.
fn crd_condition(s: &Server, name: &str, kind: &str, field: &str) -> String {
    let args = crd_condition_args(name, kind, field);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kubectl_until(s, &format!("{name}'s {kind}"), &args, |out| !out.is_empty())
}

fn established(s: &Server) {
    let args = crd_condition_args("crontabs.stable.example.com", "Established", "status");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kubectl_until(s, "the CRD established", &args, |out| out == "True");
}

/// A server, a namespace, and the CronTab CRD established.
fn server_with_crontabs(prefix: &str) -> Option<(Server, String)> {
    let (s, ns) = server_and_namespace(prefix)?;
    s.apply(&ns, CRD);
    established(&s);
    Some((s, ns))
}

#[test]
fn custom_resources_are_served_as_their_definition_says() {
    let Some((mut s, ns)) = server_and_namespace("crd") else {
        return;
    };
    let out = s.apply(&ns, CRD);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
        ),
        "{out}"
    );
    established(&s);
    let crd = get_json(&s, "crd", "crontabs.stable.example.com", &ns);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");

    // Created with the schema's default, listed with the CRD's columns.
    let out = s.apply(&ns, CRONTAB);
    assert!(
        out.contains("crontab.stable.example.com/my-cron created"),
        "{out}"
    );
    let ct = get_json(&s, "ct", "my-cron", &ns);
    assert_eq!(ct["spec"]["replicas"], 1);
    assert_eq!(ct["metadata"]["generation"], 1);
    let table = s.ok(&["get", "crontabs", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert!(table.contains("my-cron   * * * * */5   1"), "{table}");

    // Unknown fields are refused (kubectl asks for Strict), bad values are 422s naming the field.
    let bogus = CRONTAB.replace("  image:", "  bogus: 1\n  image:");
    let out = s.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &bogus);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"unknown field "spec.bogus""#), "{err}");
    let bad = CRONTAB
        .replace("my-cron", "bad")
        .replace("  image:", "  replicas: 20\n  image:");
    let out = s.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"),
        "{err}"
    );
    let bad = CRONTAB
        .replace("my-cron", "bad")
        .replace("* * * * */5", "every minute");
    let out = s.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &bad);
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.cronSpec"));

    // A changed manifest applies as a merge patch; generation counts it.
    let out = s.apply(
        &ns,
        &CRONTAB.replace("my-awesome-cron-image", "other-image"),
    );
    assert!(
        out.contains("crontab.stable.example.com/my-cron configured"),
        "{out}"
    );
    let ct = get_json(&s, "ct", "my-cron", &ns);
    assert_eq!(
        (
            ct["spec"]["image"].as_str(),
            ct["metadata"]["generation"].as_i64()
        ),
        (Some("other-image"), Some(2))
    );

    // scale and status subresources.
    let out = s.ok(&["scale", "ct", "my-cron", "-n", &ns, "--replicas=3"]);
    assert!(
        out.contains("crontab.stable.example.com/my-cron scaled"),
        "{out}"
    );
    s.ok(&[
        "patch",
        "ct",
        "my-cron",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":3},"spec":{"replicas":9}}"#,
    ]);
    let ct = get_json(&s, "ct", "my-cron", &ns);
    assert_eq!(
        (
            ct["spec"]["replicas"].as_i64(),
            ct["status"]["replicas"].as_i64()
        ),
        (Some(3), Some(3))
    );
    // A main write cannot change status.
    s.ok(&[
        "patch",
        "ct",
        "my-cron",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ]);
    assert_eq!(get_json(&s, "ct", "my-cron", &ns)["status"]["replicas"], 3);

    // Server-side apply merges a list the schema makes a map: two managers
    // each keep their own port. (A new object: kubectl would hand
    // my-cron's client-side-applied fields to the first manager, which
    // would then drop them, as upstream.)
    let ports = |manager: &str, port: &str| {
        let manifest = format!(
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {{name: ported}}\nspec:\n  ports:\n  - {{name: {manager}, port: {port}}}\n"
        );
        let out = s.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                manager,
                "-n",
                &ns,
                "-f",
                "-",
            ],
            &manifest,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ports("web", "80");
    ports("metrics", "9090");
    let got = s.ok(&[
        "get",
        "ct",
        "ported",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.ports[*].name}",
    ]);
    assert_eq!(got, "web metrics");
    s.ok(&["delete", "ct", "ported", "-n", &ns]);

    // Field selectors on metadata and on the CRD's selectable fields.
    let sel = |selector: &str| {
        s.kubectl(&[
            "get",
            "ct",
            "-n",
            &ns,
            "-o",
            "name",
            "--field-selector",
            selector,
        ])
    };
    let out = sel("spec.image=other-image");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "crontab.stable.example.com/my-cron\n"
    );
    let out = sel("spec.image=nothing,metadata.name=my-cron");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let out = sel("spec.cronSpec=x");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("field label not supported: spec.cronSpec"),
        "{err}"
    );

    // The other served version, discovery and explain.
    let v = s.ok(&[
        "get",
        "crontabs.v1beta1.stable.example.com",
        "my-cron",
        "-n",
        &ns,
        "-o",
        "jsonpath={.apiVersion} {.spec.image}",
    ]);
    assert_eq!(v, "stable.example.com/v1beta1 other-image");
    let resources = s.ok(&["api-resources", "--api-group=stable.example.com"]);
    assert!(
        resources.contains("crontabs") && resources.contains("ct") && resources.contains("CronTab"),
        "{resources}"
    );
    let explain = s.ok(&["explain", "crontab.spec"]);
    assert!(
        explain.contains("What the cron job runs, and when.") && explain.contains("cronSpec"),
        "{explain}"
    );

    // Served again after a restart.
    s.restart();
    established(&s);
    assert_eq!(
        get_json(&s, "ct", "my-cron", &ns)["spec"]["image"],
        "other-image"
    );

    // Conversion webhooks are not called: the other version is refused.
    let webhook = r#"{"spec":{"conversion":{"strategy":"Webhook","webhook":{"clientConfig":{"url":"https://127.0.0.1:9/convert"},"conversionReviewVersions":["v1"]}}}}"#;
    s.ok(&[
        "patch",
        "crd",
        "crontabs.stable.example.com",
        "--type=merge",
        "-p",
        webhook,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = s.kubectl(&[
            "get",
            "crontabs.v1beta1.stable.example.com",
            "my-cron",
            "-n",
            &ns,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("conversion webhook for stable.example.com/v1, Kind=CronTab failed") {
            break;
        }
        assert!(Instant::now() < deadline, "{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        get_json(&s, "ct", "my-cron", &ns)["spec"]["image"],
        "other-image"
    );

    // Deleting the CRD deletes its objects, then it is gone.
    let out = s.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert!(out.contains("deleted"), "{out}");
    let err = s.fails(&["get", "crontabs.stable.example.com", "-n", &ns]);
    assert!(
        err.contains("the server doesn't have a resource type"),
        "{err}"
    );
    let leftover = s.ok(&[
        "get",
        "--raw",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    ]);
    assert!(!leftover.contains("crontabs"), "{leftover}");
}

/// A second CRD claiming a plural its group already serves is not
/// established; the first keeps serving.
#[test]
fn conflicting_names_are_not_accepted() {
    let Some((s, ns)) = server_with_crontabs("crdnames") else {
        return;
    };
    let rival = CRD
        .replace("crontabs.stable.example.com", "rivals.stable.example.com")
        .replace("plural: crontabs", "plural: rivals")
        .replace("singular: crontab", "singular: rival")
        .replace("shortNames: [ct]", "shortNames: [rv]");
    s.apply(&ns, &rival);
    let rival = "rivals.stable.example.com";
    assert_eq!(
        crd_condition(&s, rival, "NamesAccepted", "reason"),
        "KindConflict"
    );
    assert_eq!(crd_condition(&s, rival, "Established", "status"), "False");
    s.apply(&ns, CRONTAB);
    assert_eq!(get_json(&s, "ct", "my-cron", &ns)["kind"], "CronTab");

    // Its namespace's deletion deletes it.
    s.ok(&["delete", "namespace", &ns, "--timeout=60s"]);
    let all = s.ok(&["get", "--raw", "/apis/stable.example.com/v1/crontabs"]);
    assert!(!all.contains("my-cron"), "{all}");
}

/// The garbage collector follows owner references to and from custom
/// resources: an operator's ConfigMap goes with the CronTab that owns it,
/// and a CronTab with the ConfigMap that owns it.
#[test]
fn owners_and_dependents_of_custom_kinds_are_collected() {
    let Some((s, ns)) = server_with_crontabs("crdgc") else {
        return;
    };
    s.apply(&ns, CRONTAB);
    let owner_ref = |api_version: &str, kind: &str, name: &str, uid: &str| {
        format!(
            "  ownerReferences:\n  - {{apiVersion: {api_version}, kind: {kind}, name: {name}, uid: {uid}}}\n"
        )
    };
    let cron_uid = get_json(&s, "ct", "my-cron", &ns)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let config = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made-by-cron\n{}data: {{a: b}}\n",
        owner_ref("stable.example.com/v1", "CronTab", "my-cron", &cron_uid)
    );
    s.apply(&ns, &config);
    s.ok(&["create", "configmap", "owner", "-n", &ns]);
    let cm_uid = get_json(&s, "cm", "owner", &ns)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let owned = CRONTAB.replace(
        "  name: my-cron\n",
        &format!(
            "  name: owned\n{}",
            owner_ref("v1", "ConfigMap", "owner", &cm_uid)
        ),
    );
    s.apply(&ns, &owned);

    s.ok(&["delete", "ct", "my-cron", "-n", &ns]);
    kubectl_until(
        &s,
        "the CronTab's ConfigMap collected",
        &["get", "cm", "-n", &ns, "-o", "name"],
        |out| !out.contains("made-by-cron"),
    );
    s.ok(&["delete", "cm", "owner", "-n", &ns]);
    kubectl_until(
        &s,
        "the ConfigMap's CronTab collected",
        &["get", "ct", "-n", &ns, "-o", "name"],
        |out| !out.contains("owned"),
    );
}

/// A ResourceQuota counts custom resources as `count/<plural>.<group>`,
/// at create and in its controller's recount.
#[test]
fn quotas_count_custom_resources() {
    let Some((s, ns)) = server_with_crontabs("crdquota") else {
        return;
    };
    s.ok(&[
        "create",
        "quota",
        "crons",
        "-n",
        &ns,
        "--hard=count/crontabs.stable.example.com=1",
    ]);
    let used = |want: &str| {
        kubectl_until(
            &s,
            "the quota's count",
            &[
                "get",
                "quota",
                "crons",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.used}",
            ],
            |out| out == want,
        )
    };
    used(r#"{"count/crontabs.stable.example.com":"0"}"#);
    s.apply(&ns, CRONTAB);
    let out = s.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &CRONTAB.replace("my-cron", "second"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeded quota: crons, requested: count/crontabs.stable.example.com=1, used: count/crontabs.stable.example.com=1, limited: count/crontabs.stable.example.com=1"),
        "{err}"
    );
    s.ok(&["delete", "ct", "my-cron", "-n", &ns]);
    used(r#"{"count/crontabs.stable.example.com":"0"}"#);
}
