use super::approval::APPROVAL;
use super::*;
use skiff_machinery::names;

fn crontab() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string"},
                            "image": {"type": "string"},
                            "replicas": {"type": "integer"}
                        }},
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"},
                            "labelSelector": {"type": "string"}
                        }}
                    }
                }},
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.labelSelector"
                    }
                },
                "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "selectableFields": [{"jsonPath": ".spec.cronSpec"}]
            }]
        }
    })
}

/// What the server validates: defaulted, with status as the strategy sets it.
fn prepared(mut crd: Value, old: Option<&Value>) -> Value {
    apply_defaults(&mut crd);
    prepare_status(&mut crd, old);
    crd
}

fn rendered(causes: Vec<Cause>) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn on_create(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut crd = crontab();
    change(&mut crd);
    rendered(validate(&prepared(crd, None), None))
}

fn on_update(old: &Value, change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut crd = old.clone();
    change(&mut crd);
    let crd = prepared(crd, Some(old));
    rendered(validate(&crd, Some(old)))
}

fn schema(crd: &mut Value) -> &mut Value {
    &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

#[track_caller]
fn has(errs: &[String], want: &str) {
    assert!(
        errs.iter().any(|e| e == want),
        "missing {want:?} in {errs:#?}"
    );
}

/// For causes whose value is a whole object: match the field and the detail.
#[track_caller]
fn has_detail(errs: &[String], field: &str, detail: &str) {
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{field}: ")) && e.ends_with(detail)),
        "missing {field}: …{detail:?} in {errs:#?}"
    );
}

const DNS1035: &str = names::DNS1035_LABEL_MSG;
const ROOT: &str = "spec.validation.openAPIV3Schema";

#[test]
fn a_valid_crontab_passes() {
    let crd = prepared(crontab(), None);
    assert_eq!(rendered(validate(&crd, None)), Vec::<String>::new());
    assert_eq!(rendered(validate(&crd, Some(&crd))), Vec::<String>::new());
    assert!(validate_status(&crd, Some(&crd)).is_empty());
}

#[test]
fn defaults_follow_upstream_v1() {
    let mut crd = crontab();
    crd["spec"]["names"] = json!({"plural": "crontabs", "kind": "CronTab"});
    crd["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {
        "clientConfig": {"service": {"namespace": "ns", "name": "conv"}},
        "conversionReviewVersions": ["v1"]
    }});
    apply_defaults(&mut crd);
    assert_eq!(crd["spec"]["names"]["singular"], "crontab");
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
    assert_eq!(
        crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["port"],
        443
    );
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert!(validate(&crd, None).is_empty());

    let mut crd = crontab();
    crd["spec"]["names"]["singular"] = json!("tab");
    apply_defaults(&mut crd);
    assert_eq!(crd["spec"]["names"]["singular"], "tab");
    assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
}

#[test]
fn the_status_is_the_strategys() {
    let mut crd = crontab();
    crd["status"] =
        json!({"storedVersions": ["v0"], "acceptedNames": {"plural": "x", "kind": "X"}});
    prepare_status(&mut crd, None);
    assert_eq!(
        crd["status"],
        json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": ["v1"]})
    );
    let old = json!({"status": {"storedVersions": ["v1beta1"]}});
    prepare_status(&mut crd, Some(&old));
    assert_eq!(crd["status"]["storedVersions"], json!(["v1beta1", "v1"]));
}

#[test]
fn the_name_is_plural_dot_group() {
    let errs = on_create(|c| c["metadata"]["name"] = json!("crontab.stable.example.com"));
    assert_eq!(
        errs,
        [
            r#"metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group"#
        ]
    );
}

#[test]
fn the_group_is_a_dotted_subdomain() {
    let errs = on_create(|c| c["spec"]["group"] = json!(""));
    has(&errs, "spec.group: Required value");
    let errs = on_create(|c| c["spec"]["group"] = json!("example"));
    has(
        &errs,
        r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
    );
    let errs = on_create(|c| c["spec"]["group"] = json!("Stable.example.com"));
    has(
        &errs,
        &format!(
            r#"spec.group: Invalid value: "Stable.example.com": {}"#,
            names::DNS1123_SUBDOMAIN_MSG
        ),
    );
}

#[test]
fn the_scope_is_cluster_or_namespaced() {
    let errs = on_create(|c| c["spec"]["scope"] = json!(null));
    assert_eq!(errs, ["spec.scope: Required value"]);
    let errs = on_create(|c| c["spec"]["scope"] = json!("Global"));
    assert_eq!(
        errs,
        [r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#]
    );
}

#[test]
fn names_are_required_labels() {
    let errs = on_create(|c| c["spec"]["names"]["plural"] = json!(null));
    has(&errs, "spec.names.plural: Required value");
    let errs = on_create(|c| c["spec"]["names"]["kind"] = json!(null));
    has(&errs, "spec.names.kind: Required value");
    has(&errs, "spec.names.listKind: Required value");
    let errs = on_create(|c| c["spec"]["names"]["plural"] = json!("CronTabs"));
    has(
        &errs,
        &format!(r#"spec.names.plural: Invalid value: "CronTabs": {DNS1035}"#),
    );
    let long = "a".repeat(64);
    let errs = on_create(|c| c["spec"]["names"]["singular"] = json!(long));
    has(
        &errs,
        &format!(
            r#"spec.names.singular: Invalid value: "{long}": must be no more than 63 characters"#
        ),
    );
    let errs = on_create(|c| c["spec"]["names"]["kind"] = json!("Cron_Tab"));
    has(
        &errs,
        &format!(
            r#"spec.names.kind: Invalid value: "Cron_Tab": may have mixed case, but should otherwise match: {DNS1035}"#
        ),
    );
    let errs = on_create(|c| c["spec"]["names"]["listKind"] = json!("CronTab"));
    assert_eq!(
        errs,
        [r#"spec.names.listKind: Invalid value: "CronTab": kind and listKind may not be the same"#]
    );
    let errs = on_create(|c| c["spec"]["names"]["shortNames"] = json!(["ct", "c t"]));
    assert_eq!(
        errs,
        [format!(
            r#"spec.names.shortNames[1]: Invalid value: "c t": {DNS1035}"#
        )]
    );
    let errs = on_create(|c| c["spec"]["names"]["categories"] = json!(["All"]));
    assert_eq!(
        errs,
        [format!(
            r#"spec.names.categories[0]: Invalid value: "All": {DNS1035}"#
        )]
    );
}

#[test]
fn there_is_exactly_one_storage_version() {
    let errs = on_create(|c| c["spec"]["versions"] = json!([]));
    assert_eq!(
        errs,
        [
            "spec.versions: Invalid value: []: must have exactly one version marked as storage version",
            "status.storedVersions: Invalid value: null: must have at least one stored version",
        ]
    );
    let errs = on_create(|c| {
        let mut second = c["spec"]["versions"][0].clone();
        second["name"] = json!("v2");
        c["spec"]["versions"].as_array_mut().unwrap().push(second);
    });
    has_detail(
        &errs,
        "spec.versions",
        ": must have exactly one version marked as storage version",
    );
    let errs = on_create(|c| {
        let mut second = c["spec"]["versions"][0].clone();
        second["storage"] = json!(false);
        c["spec"]["versions"].as_array_mut().unwrap().push(second);
    });
    has_detail(
        &errs,
        "spec.versions",
        ": must contain unique version names",
    );
}

#[test]
fn version_names_are_dns1035_labels() {
    let errs = on_create(|c| c["spec"]["versions"][0]["name"] = json!("1beta"));
    has(
        &errs,
        &format!(r#"spec.versions[0].name: Invalid value: "1beta": {DNS1035}"#),
    );
    // Upstream's internal form also carries the first name as spec.version.
    has(
        &errs,
        &format!(r#"spec.version: Invalid value: "1beta": {DNS1035}"#),
    );
}

#[test]
fn every_version_needs_a_schema() {
    let errs = on_create(|c| {
        c["spec"]["versions"][0]["schema"] = json!(null);
        c["spec"]["versions"][0]["selectableFields"] = json!(null);
    });
    assert_eq!(
        errs,
        ["spec.versions[0].schema.openAPIV3Schema: Required value"]
    );
}

#[test]
fn the_root_is_an_object() {
    let errs = on_create(|c| schema(c)["type"] = json!("string"));
    has(
        &errs,
        &format!(r#"{ROOT}.type: Invalid value: "string": must be object at the root"#),
    );
    has(
        &errs,
        &format!(
            r#"{ROOT}.type: Invalid value: "string": only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#
        ),
    );
    let errs = on_create(|c| schema(c)["type"] = json!(null));
    has(
        &errs,
        &format!("{ROOT}.type: Required value: must not be empty at the root"),
    );
    let errs = on_create(|c| schema(c)["nullable"] = json!(true));
    has(
        &errs,
        &format!("{ROOT}.nullable: Forbidden: nullable cannot be true at the root"),
    );
    let errs = on_create(|c| schema(c)["type"] = json!("thing"));
    has(
        &errs,
        &format!(
            r#"{ROOT}.type: Unsupported value: "thing": supported values: "array", "boolean", "integer", "number", "object", "string""#
        ),
    );
}

#[test]
fn every_specified_field_has_a_type() {
    let errs = on_create(|c| {
        schema(c)["properties"]["spec"]["properties"]["foo"] = json!({});
        schema(c)["properties"]["spec"]["properties"]["list"] =
            json!({"type": "array", "items": {}});
        schema(c)["properties"]["spec"]["properties"]["arr"] = json!({"type": "array"});
    });
    let spec = format!("{ROOT}.properties[spec].properties");
    assert_eq!(
        errs,
        [
            format!("{spec}[arr].items: Required value: must be specified"),
            format!("{spec}[foo].type: Required value: must not be empty for specified object fields"),
            format!("{spec}[list].items.type: Required value: must not be empty for specified array items"),
        ]
    );
    let errs = on_create(|c| {
        let p = &mut schema(c)["properties"]["spec"]["properties"];
        p["port"] = json!({"x-kubernetes-int-or-string": true});
        p["raw"] = json!({"x-kubernetes-preserve-unknown-fields": true});
        p["either"] = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
    });
    assert_eq!(errs, Vec::<String>::new());
}

#[test]
fn junctors_only_restrict_values() {
    let errs = on_create(|c| {
        schema(c)["properties"]["spec"]["properties"]["x"] = json!({"type": "string", "anyOf": [{"type": "string"}, {"description": "d", "pattern": "a"}]});
    });
    let x = format!("{ROOT}.properties[spec].properties[x]");
    assert_eq!(
        errs,
        [
            format!("{x}.anyOf[0].type: Forbidden: must be empty to be structural"),
            format!("{x}.anyOf[1].description: Forbidden: must be empty to be structural"),
        ]
    );
    let errs = on_create(|c| {
        schema(c)["properties"]["spec"]["allOf"] = json!([{"properties": {"metadata": {}}}]);
    });
    has(&errs, &format!("{ROOT}.properties[spec].allOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"));
}

#[test]
fn metadata_at_the_root_restricts_names_only() {
    let errs = on_create(|c| {
        schema(c)["properties"]["metadata"] =
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}});
    });
    assert_eq!(errs, Vec::<String>::new());
    let errs = on_create(|c| {
        schema(c)["properties"]["metadata"] =
            json!({"type": "object", "properties": {"labels": {"type": "object"}}});
    });
    assert_eq!(errs, [format!("{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")]);
    let errs = on_create(|c| schema(c)["properties"]["metadata"] = json!({"type": "string"}));
    has(
        &errs,
        &format!(r#"{ROOT}.properties[metadata].type: Invalid value: "string": must be object"#),
    );
    let errs = on_create(|c| {
        schema(c)["properties"]["metadata"] =
            json!({"type": "object", "properties": {"name": {"type": "string", "default": "x"}}});
    });
    has(&errs, &format!("{ROOT}.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"));
    let errs = on_create(|c| schema(c)["properties"]["kind"] = json!({"type": "integer"}));
    has(
        &errs,
        &format!(r#"{ROOT}.properties[kind].type: Invalid value: "integer": must be string"#),
    );
}

#[test]
fn additional_properties_are_not_for_the_root_nor_beside_properties() {
    let errs = on_create(|c| schema(c)["additionalProperties"] = json!({"type": "string"}));
    has(
        &errs,
        &format!("{ROOT}.additionalProperties: Forbidden: must not be used at the root"),
    );
    has(&errs, &format!("{ROOT}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"));
    let errs = on_create(|c| {
        schema(c)["properties"]["spec"]["properties"]["env"] =
            json!({"type": "object", "additionalProperties": {"type": "string"}});
    });
    assert_eq!(errs, Vec::<String>::new());
}

#[test]
fn status_subresource_limits_the_root() {
    let errs = on_create(|c| schema(c)["anyOf"] = json!([{"required": ["spec"]}]));
    has_detail(&errs, ROOT, ": only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled");
    let errs = on_create(|c| {
        schema(c)["anyOf"] = json!([{"required": ["spec"]}]);
        c["spec"]["versions"][0]["subresources"]["status"] = json!(null);
    });
    assert_eq!(errs, Vec::<String>::new());
}

#[test]
fn differing_versions_report_per_version_paths() {
    let errs = on_create(|c| {
        let mut beta = c["spec"]["versions"][0].clone();
        beta["name"] = json!("v1beta1");
        beta["storage"] = json!(false);
        beta["selectableFields"] = json!(null);
        beta["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["foo"] = json!({});
        c["spec"]["versions"].as_array_mut().unwrap().push(beta);
    });
    assert_eq!(errs, ["spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[foo].type: Required value: must not be empty for specified object fields"]);
}

#[test]
fn per_version_selectable_fields_need_a_per_version_schema() {
    // Upstream's conversion hoists identical schemas, leaving the
    // versions' differing selectable fields without one.
    let errs = on_create(|c| {
        let mut beta = c["spec"]["versions"][0].clone();
        beta["name"] = json!("v1beta1");
        beta["storage"] = json!(false);
        beta["selectableFields"] = json!(null);
        c["spec"]["versions"].as_array_mut().unwrap().push(beta);
    });
    assert_eq!(errs, ["spec.versions[0].selectableFields: Invalid value: \"\": may only be set when `version.schema.openAPIV3Schema` is not included"]);
}

#[test]
fn printer_columns() {
    let col = |c: &mut Value, v: Value| c["spec"]["versions"][0]["additionalPrinterColumns"][0] = v;
    let p = "spec.additionalPrinterColumns[0]";
    let errs = on_create(|c| col(c, json!({"type": "string", "jsonPath": ".spec.x"})));
    assert_eq!(errs, [format!("{p}.name: Required value")]);
    let errs = on_create(|c| col(c, json!({"name": "X", "jsonPath": ".spec.x"})));
    assert_eq!(
        errs,
        [format!(
            "{p}.type: Required value: must be one of boolean,date,integer,number,string"
        )]
    );
    let errs = on_create(|c| {
        col(
            c,
            json!({"name": "X", "type": "str", "format": "uuid", "jsonPath": ".spec.x"}),
        )
    });
    assert_eq!(
        errs,
        [
            format!(
                r#"{p}.type: Invalid value: "str": must be one of boolean,date,integer,number,string"#
            ),
            format!(
                r#"{p}.format: Invalid value: "uuid": must be one of byte,date,date-time,double,float,int32,int64,password"#
            ),
        ]
    );
    let errs = on_create(|c| col(c, json!({"name": "X", "type": "string"})));
    assert_eq!(errs, [format!("{p}.JSONPath: Required value")]);
    let errs = on_create(|c| {
        col(
            c,
            json!({"name": "X", "type": "string", "jsonPath": "spec.x"}),
        )
    });
    assert_eq!(
        errs,
        [format!(
            r#"{p}.JSONPath: Invalid value: "spec.x": must be a simple json path starting with ."#
        )]
    );
}

#[test]
fn scale_paths() {
    let scale = |c: &mut Value, key: &str, v: Value| {
        c["spec"]["versions"][0]["subresources"]["scale"][key] = v;
    };
    let p = "spec.subresources.scale";
    let errs = on_create(|c| scale(c, "specReplicasPath", json!(null)));
    assert_eq!(errs, [format!("{p}.specReplicasPath: Required value")]);
    let errs = on_create(|c| scale(c, "specReplicasPath", json!(".status.replicas")));
    assert_eq!(
        errs,
        [format!(
            r#"{p}.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#
        )]
    );
    let errs = on_create(|c| scale(c, "statusReplicasPath", json!("status.replicas")));
    assert_eq!(
        errs,
        [format!(
            r#"{p}.statusReplicasPath: Invalid value: "status.replicas": must be a simple json path starting with ."#
        )]
    );
    let errs = on_create(|c| scale(c, "statusReplicasPath", json!(".spec.replicas")));
    assert_eq!(
        errs,
        [format!(
            r#"{p}.statusReplicasPath: Invalid value: ".spec.replicas": should be a json path under .status"#
        )]
    );
    let errs = on_create(|c| scale(c, "labelSelectorPath", json!(".metadata.labels")));
    assert_eq!(
        errs,
        [format!(
            r#"{p}.labelSelectorPath: Invalid value: ".metadata.labels": should be a json path under either .spec or .status"#
        )]
    );
}

#[test]
fn conversion() {
    let errs = on_create(|c| c["spec"]["conversion"] = json!({"strategy": "Magic"}));
    assert_eq!(
        errs,
        [
            r#"spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#
        ]
    );
    let errs = on_create(|c| c["spec"]["conversion"] = json!({"strategy": "Webhook"}));
    assert_eq!(
        errs,
        [
            "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
            "spec.conversion.conversionReviewVersions: Required value",
        ]
    );
    let webhook = |client: Value, review: Value| json!({"strategy": "Webhook", "webhook": {"clientConfig": client, "conversionReviewVersions": review}});
    let service = json!({"service": {"namespace": "ns", "name": "conv", "path": "/convert"}});
    let errs = on_create(|c| c["spec"]["conversion"] = webhook(service.clone(), json!(["v1"])));
    assert_eq!(errs, Vec::<String>::new());
    let errs =
        on_create(|c| c["spec"]["conversion"] = webhook(service.clone(), json!(["v2", "v2"])));
    assert_eq!(
        errs,
        [
            r#"spec.conversion.conversionReviewVersions[1]: Invalid value: "v2": duplicate version"#,
            r#"spec.conversion.conversionReviewVersions: Invalid value: ["v2","v2"]: must include at least one of v1, v1beta1"#,
        ]
    );
    let errs = on_create(|c| {
        c["spec"]["conversion"] = webhook(
            json!({"url": "http://conv.example.com/x?a=b"}),
            json!(["v1"]),
        )
    });
    assert_eq!(
        errs,
        [
            r#"spec.conversion.webhookClientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#,
            r#"spec.conversion.webhookClientConfig.url: Invalid value: "a=b": query parameters are not permitted in the URL"#,
        ]
    );
    let both =
        json!({"url": "https://conv.example.com", "service": {"namespace": "ns", "name": "conv"}});
    let errs = on_create(|c| c["spec"]["conversion"] = webhook(both, json!(["v1"])));
    assert_eq!(errs, ["spec.conversion.webhookClientConfig: Required value: exactly one of url or service is required"]);
    let errs = on_create(|c| {
        c["spec"]["conversion"] = webhook(
            json!({"service": {"name": "conv", "port": 0}}),
            json!(["v1"]),
        )
    });
    assert_eq!(
        errs,
        [
            "spec.conversion.webhookClientConfig.service.namespace: Required value",
            "spec.conversion.webhookClientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive",
        ]
    );
    let errs = on_create(|c| {
        c["spec"]["conversion"] = webhook(service.clone(), json!(["v1"]));
        c["spec"]["conversion"]["strategy"] = json!("None");
    });
    assert_eq!(
        errs,
        [
            "spec.conversion.webhookClientConfig: Forbidden: should not be set when strategy is not set to Webhook",
            "spec.conversion.conversionReviewVersions: Forbidden: should not be set when strategy is not set to Webhook",
        ]
    );
}

#[test]
fn group_and_plural_never_change_kind_and_scope_once_established() {
    let old = prepared(crontab(), None);
    let errs = on_update(&old, |c| c["spec"]["group"] = json!("other.example.com"));
    assert_eq!(
        errs,
        [r#"spec.group: Invalid value: "other.example.com": field is immutable"#]
    );
    let errs = on_update(&old, |c| c["spec"]["names"]["plural"] = json!("crontabz"));
    assert_eq!(
        errs,
        [r#"spec.names.plural: Invalid value: "crontabz": field is immutable"#]
    );
    let change = |c: &mut Value| {
        c["spec"]["names"]["kind"] = json!("CronTask");
        c["spec"]["names"]["listKind"] = json!("CronTaskList");
        c["spec"]["scope"] = json!("Cluster");
    };
    assert_eq!(on_update(&old, change), Vec::<String>::new());
    let mut established = old.clone();
    established["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
    assert_eq!(
        on_update(&established, change),
        [
            r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
            r#"spec.names.kind: Invalid value: "CronTask": field is immutable"#,
        ]
    );
}

#[test]
fn stored_versions_stay_in_spec() {
    let mut old = crontab();
    let mut beta = old["spec"]["versions"][0].clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    old["spec"]["versions"]
        .as_array_mut()
        .unwrap()
        .insert(0, beta);
    let mut old = prepared(old, None);
    old["status"]["storedVersions"] = json!(["v1beta1", "v1"]);
    let errs = on_update(&old, |c| {
        c["spec"]["versions"].as_array_mut().unwrap().remove(0);
    });
    assert_eq!(
        errs,
        [
            r#"status.storedVersions[0]: Invalid value: "v1beta1": missing from spec.versions; v1beta1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1beta1 and removes v1beta1 from status.storedVersions"#
        ]
    );

    let mut crd = prepared(crontab(), None);
    crd["status"]["storedVersions"] = json!(["v1", "v0"]);
    crd["spec"]["versions"][0]["name"] = json!("v2");
    crd["metadata"]["name"] = json!("crontabs.stable.example.com");
    assert_eq!(
        rendered(validate(&crd, None)),
        [
            r#"status.storedVersions: Invalid value: ["v1","v0"]: must have the storage version v2"#,
            r#"status.storedVersions[0]: Invalid value: "v1": missing from spec.versions; v1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1 and removes v1 from status.storedVersions"#,
            r#"status.storedVersions[1]: Invalid value: "v0": missing from spec.versions; v0 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v0 and removes v0 from status.storedVersions"#,
        ]
    );
}

#[test]
fn status_writes_check_accepted_names() {
    let mut crd = prepared(crontab(), None);
    crd["status"]["acceptedNames"] =
        json!({"plural": "crontabs", "kind": "CronTab", "listKind": "CronTab"});
    assert_eq!(
        rendered(validate_status(&crd, None)),
        [
            r#"status.acceptedNames.listKind: Invalid value: "CronTab": kind and listKind may not be the same"#
        ]
    );
    crd["status"]["acceptedNames"] = json!({"plural": "Crontabs", "kind": "CronTab"});
    assert_eq!(
        rendered(validate_status(&crd, None)),
        [format!(
            r#"status.acceptedNames.plural: Invalid value: "Crontabs": {DNS1035}"#
        )]
    );
}

#[test]
fn selectable_fields() {
    let fields = |c: &mut Value, v: Value| c["spec"]["versions"][0]["selectableFields"] = v;
    let f = "spec.selectableFields[0].jsonPath";
    let errs = on_create(|c| fields(c, json!([{"jsonPath": ".spec.nope"}])));
    assert_eq!(
        errs,
        [format!(
            r#"{f}: Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field"#
        )]
    );
    let errs = on_create(|c| fields(c, json!([{"jsonPath": "spec.image"}])));
    assert_eq!(
        errs,
        [format!(
            r#"{f}: Invalid value: "spec.image": is an invalid path: expected [ or . but got: spec"#
        )]
    );
    let errs = on_create(|c| fields(c, json!([{"jsonPath": ".spec['image']"}])));
    assert_eq!(
        errs,
        [format!(
            r#"{f}: Invalid value: ".spec['image']": is an invalid path: array notation is not allowed"#
        )]
    );
    let errs = on_create(|c| fields(c, json!([{"jsonPath": ".spec"}])));
    assert_eq!(
        errs,
        [format!(
            r#"{f}: Invalid value: ".spec": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."#
        )]
    );
    let errs = on_create(|c| {
        fields(
            c,
            json!([{}, {"jsonPath": ".spec.image"}, {"jsonPath": ".spec.image"}]),
        )
    });
    assert_eq!(
        errs,
        [
            format!("{f}: Required value"),
            r#"spec.selectableFields[2].jsonPath: Duplicate value: ".spec.image""#.to_string(),
        ]
    );
    let nine = |c: &mut Value| {
        let props: Map<String, Value> = (0..9)
            .map(|i| (format!("f{i}"), json!({"type": "string"})))
            .collect();
        schema(c)["properties"]["spec"]["properties"] = Value::Object(props);
        c["spec"]["versions"][0]["additionalPrinterColumns"] = json!(null);
        c["spec"]["versions"][0]["subresources"]["scale"] = json!(null);
        fields(
            c,
            (0..9)
                .map(|i| json!({"jsonPath": format!(".spec.f{i}")}))
                .collect(),
        );
    };
    assert_eq!(
        on_create(nine),
        ["spec.selectableFields: Too many: 9: must have at most 8 items"]
    );
    // Already stored unchanged, so the update is allowed.
    let mut old = crontab();
    nine(&mut old);
    let old = prepared(old, None);
    assert_eq!(
        on_update(&old, |c| c["spec"]["names"]["shortNames"] = json!(["cr"])),
        Vec::<String>::new()
    );
}

#[test]
fn list_and_map_semantics() {
    let ports =
        |c: &mut Value, v: Value| schema(c)["properties"]["spec"]["properties"]["ports"] = v;
    let p = format!("{ROOT}.properties[spec].properties[ports]");
    let list = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
    let errs = on_create(|c| ports(c, list.clone()));
    assert_eq!(errs, [format!("{p}.items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property")]);
    let mut keyed = list.clone();
    keyed["items"]["required"] = json!(["name"]);
    assert_eq!(on_create(|c| ports(c, keyed)), Vec::<String>::new());
    let errs = on_create(|c| {
        ports(
            c,
            json!({"type": "object", "x-kubernetes-list-type": "set"}),
        )
    });
    assert_eq!(
        errs,
        [format!(
            r#"{p}.type: Invalid value: "object": must be array if x-kubernetes-list-type is specified"#
        )]
    );
    let errs = on_create(|c| {
        ports(
            c,
            json!({"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}),
        )
    });
    assert_eq!(
        errs,
        [format!(
            r#"{p}.x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#
        )]
    );
    let errs = on_create(|c| {
        ports(
            c,
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}),
        )
    });
    assert_eq!(errs, [format!("{p}.items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set")]);
}

#[test]
fn validation_rules_need_a_rule() {
    let errs = on_create(|c| {
        schema(c)["properties"]["spec"]["x-kubernetes-validations"] =
            json!([{"rule": " "}, {"rule": "self.a", "reason": "Nope"}])
    });
    let v = format!("{ROOT}.properties[spec].x-kubernetes-validations");
    assert_eq!(
        errs,
        [
            format!("{v}[0].rule: Required value: rule is not specified"),
            format!(
                r#"{v}[1].reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#
            ),
        ]
    );
    let errs = on_create(|c| {
        schema(c)["properties"]["spec"]["x-kubernetes-validations"] =
            json!([{"rule": "true", "fieldPath": ".image"}, {"rule": "true", "fieldPath": ".nope"}])
    });
    assert_eq!(
        errs,
        [format!(
            r#"{v}[1].fieldPath: Invalid value: ".nope": must be a valid path"#
        )]
    );
}

#[test]
fn preserve_unknown_fields_cannot_be_set() {
    let errs = on_create(|c| c["spec"]["preserveUnknownFields"] = json!(true));
    assert_eq!(errs, ["spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"]);
}

#[test]
fn protected_groups_need_api_approval() {
    let k8s = |c: &mut Value, approval: Option<&str>| {
        c["spec"]["group"] = json!("stable.k8s.io");
        c["metadata"]["name"] = json!("crontabs.stable.k8s.io");
        if let Some(a) = approval {
            c["metadata"]["annotations"] = json!({APPROVAL: a});
        }
    };
    assert_eq!(
        on_create(|c| k8s(c, None)),
        [
            r#"metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111"#
        ]
    );
    assert_eq!(
        on_create(|c| k8s(c, Some("https://github.com/kubernetes/kubernetes/pull/1"))),
        Vec::<String>::new()
    );
    assert_eq!(
        on_create(|c| k8s(c, Some("unapproved, testing only"))),
        Vec::<String>::new()
    );
    assert_eq!(
        on_create(|c| k8s(c, Some("yes"))),
        [
            r#"metadata.annotations[api-approved.kubernetes.io]: Invalid value: "yes": protected groups must have approval annotation "api-approved.kubernetes.io" with either a URL or a reason starting with "unapproved", see https://github.com/kubernetes/enhancements/pull/1111"#
        ]
    );
    // An unchanged state is never rejected on update.
    let mut old = crontab();
    k8s(&mut old, None);
    let old = prepared(old, None);
    assert_eq!(
        on_update(&old, |c| c["spec"]["names"]["shortNames"] = json!(["cr"])),
        Vec::<String>::new()
    );
}

#[test]
fn deprecation_warnings() {
    let errs = on_create(|c| c["spec"]["versions"][0]["deprecationWarning"] = json!("old"));
    assert_eq!(
        errs,
        [
            r#"spec.versions[0].deprecationWarning: Invalid value: "old": can only be set for deprecated versions"#
        ]
    );
    let errs = on_create(|c| {
        c["spec"]["versions"][0]["deprecated"] = json!(true);
        c["spec"]["versions"][0]["deprecationWarning"] = json!("a\tb");
    });
    assert_eq!(
        errs,
        [
            r#"spec.versions[0].deprecationWarning: Invalid value: "a\tb": must only contain printable UTF-8 characters; non-printable character found at index 1"#
        ]
    );
}

#[test]
fn relaxed_on_update_when_already_stored() {
    // A stored CRD without schemas stays writable (served versions still need one).
    let mut old = prepared(crontab(), None);
    old["spec"]["versions"][0]["schema"] = json!(null);
    old["spec"]["versions"][0]["selectableFields"] = json!(null);
    let errs = on_update(&old, |c| c["spec"]["versions"][0]["served"] = json!(false));
    assert_eq!(errs, Vec::<String>::new());
    let errs = on_update(&old, |_| {});
    assert_eq!(errs, ["spec.versions[0].schema.openAPIV3Schema: Required value: because otherwise all fields are pruned"]);
}

#[test]
fn never_panics() {
    let odd = [
        json!(null),
        json!("x"),
        json!([1, 2]),
        json!({"spec": "x", "status": 5, "metadata": []}),
        json!({"spec": {"versions": {"a": 1}, "names": [], "group": 5, "conversion": "x"}}),
        json!({"spec": {"versions": [1, "x", null, {"schema": 5}, {"schema": {"openAPIV3Schema": "x"}}]}}),
        json!({"spec": {"versions": [{"name": "v1", "storage": true, "selectableFields": [{"jsonPath": "'"}, {"jsonPath": ".['"}, {"jsonPath": "..."}, {"jsonPath": ".a['b'"}, {"jsonPath": "[']"}],
            "schema": {"openAPIV3Schema": {"properties": [1], "items": 5, "anyOf": "x", "allOf": [5, {"anyOf": 1}],
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [1, null], "additionalProperties": {"a": []},
                "x-kubernetes-validations": [{"rule": 1, "fieldPath": "['"}], "not": {"not": {"items": []}}}}}],
            "conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "@:/#?", "service": null}, "conversionReviewVersions": [1]}}}}),
        json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {"path": "//x/", "port": "a"}}}}}}),
        json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {"path": "é/ü//"}}}}}}),
    ];
    let mut cases: Vec<Value> = odd.to_vec();
    // Every node of a full CRD replaced by values of every JSON type.
    let base = prepared(crontab(), None);
    let mut pointers = Vec::new();
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| walk(x, format!("{at}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, format!("{at}/{i}"), out)),
            _ => {}
        }
        out.push(at);
    }
    walk(&base, String::new(), &mut pointers);
    for p in pointers.iter().filter(|p| !p.is_empty()) {
        for replacement in [
            json!(null),
            json!(-1),
            json!("é'["),
            json!([]),
            json!({}),
            json!(true),
            json!([{}]),
        ] {
            let mut crd = base.clone();
            if let Some(slot) = crd.pointer_mut(p) {
                *slot = replacement;
            }
            cases.push(crd);
        }
    }
    for crd in &cases {
        for old in [None, Some(&base), Some(crd)] {
            let mut c = crd.clone();
            apply_defaults(&mut c);
            prepare_status(&mut c, old);
            validate(&c, old);
            validate(crd, old);
            validate_status(crd, old);
            if let Some(old) = old {
                validate(old, Some(crd));
            }
        }
    }
}
