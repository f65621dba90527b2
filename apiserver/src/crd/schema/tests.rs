use super::*;
use crate::error::CauseKind;
use serde_json::json;

/// The CronTab of upstream's CRD walkthrough, grown a little.
fn crontab() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["cronSpec", "image"],
                "properties": {
                    "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                    "image": {"type": "string", "maxLength": 20},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "policy": {"type": "string", "enum": ["Allow", "Forbid"]},
                    "note": {"type": "string", "nullable": true},
                    "startTime": {"type": "string", "format": "date-time"},
                    "size": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "ports": {
                        "type": "array", "maxItems": 3,
                        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer", "format": "int32", "default": 80}
                        }}
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
                    "volumes": {"type": "object", "additionalProperties": {
                        "type": "object", "properties": {"path": {"type": "string", "default": "/data"}}
                    }},
                    "schedule": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"timezone": {"type": "string", "default": "UTC"}}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "properties": {"spec": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
                }
            },
            "status": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "conditions": {
                        "type": "array",
                        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "required": ["type", "status"], "properties": {
                            "type": {"type": "string"},
                            "status": {"type": "string", "enum": ["True", "False", "Unknown"]}
                        }}
                    }
                }
            }
        }
    })
}

fn crontab_object(spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "c"}, "spec": spec})
}

/// `field: message` of each cause.
fn errors(schema: &Value, obj: &Value) -> Vec<String> {
    validate(schema, obj)
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn one(schema: Value, value: Value) -> Vec<Cause> {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": schema}}}});
    validate(&schema, &json!({"spec": {"x": value}}))
}

fn one_message(schema: Value, value: Value) -> Vec<String> {
    one(schema, value).into_iter().map(|c| c.message).collect()
}

#[test]
fn a_valid_crontab_passes() {
    let obj = crontab_object(json!({
        "cronSpec": "*/5 * * * *", "image": "my-image", "replicas": 3, "policy": "Allow",
        "note": null, "startTime": "2024-05-01T10:00:00Z", "size": "10Gi",
        "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
        "tags": ["a", "b"], "labels": {"app": "x"}
    }));
    assert_eq!(errors(&crontab(), &obj), Vec::<String>::new());
}

#[test]
fn prune_drops_unknown_fields_and_names_them() {
    let mut obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": "i", "bogus": 1,
        "ports": [{"name": "a", "extra": true}],
        "volumes": {"v": {"path": "/x", "junk": {"deep": 1}}}
    }));
    obj["metadata"]["unknownMeta"] = json!(1);
    obj["topLevel"] = json!("x");
    let pruned = prune(&crontab(), &mut obj);
    assert_eq!(
        pruned,
        [
            "spec.bogus",
            "spec.ports[0].extra",
            "spec.volumes.v.junk",
            "topLevel"
        ]
    );
    assert_eq!(obj["spec"]["ports"], json!([{"name": "a"}]));
    assert_eq!(obj["spec"]["volumes"], json!({"v": {"path": "/x"}}));
    // Type and object meta stay, untouched.
    assert_eq!(obj["apiVersion"], "stable.example.com/v1");
    assert_eq!(obj["metadata"], json!({"name": "c", "unknownMeta": 1}));
    assert!(obj.get("topLevel").is_none());
}

#[test]
fn prune_keeps_unknown_fields_where_preserved() {
    let mut obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": "i",
        "schedule": {"timezone": "CET", "anything": {"goes": true}}
    }));
    obj["status"] = json!({
        "phase": "Running", "nested": [{"a": 1}],
        "conditions": [{"type": "Ready", "status": "True", "bogus": 1}]
    });
    let pruned = prune(&crontab(), &mut obj);
    // Declared properties inside a preserving node are still pruned.
    assert_eq!(pruned, ["status.conditions[0].bogus"]);
    assert_eq!(obj["spec"]["schedule"]["anything"], json!({"goes": true}));
    assert_eq!(obj["status"]["phase"], "Running");
    assert_eq!(obj["status"]["nested"], json!([{"a": 1}]));
}

#[test]
fn prune_keeps_meta_of_embedded_resources() {
    let mut obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": "i",
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "x": 1},
            "spec": {"x": 1, "y": 2}, "other": 3}
    }));
    let pruned = prune(&crontab(), &mut obj);
    assert_eq!(pruned, ["spec.template.other", "spec.template.spec.y"]);
    assert_eq!(
        obj["spec"]["template"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "x": 1}, "spec": {"x": 1}})
    );
}

#[test]
fn prune_with_preserving_root_keeps_everything_undeclared() {
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    let mut obj = json!({"kind": "K", "extra": 1, "spec": {"a": "x", "b": 2}});
    assert_eq!(prune(&schema, &mut obj), ["spec.b"]);
    assert_eq!(obj, json!({"kind": "K", "extra": 1, "spec": {"a": "x"}}));
}

#[test]
fn prune_drops_nulls_the_schema_cannot_take() {
    let mut obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": null, "note": null, "replicas": null,
        "ports": [null], "labels": {"a": null}
    }));
    assert!(prune(&crontab(), &mut obj).is_empty());
    let spec = &obj["spec"];
    assert!(spec.get("image").is_none(), "not nullable, no default");
    assert_eq!(spec["note"], Value::Null, "nullable");
    assert_eq!(spec["replicas"], Value::Null, "defaulted later");
    assert_eq!(spec["ports"], json!([null]), "array items stay");
    assert!(
        spec["labels"].get("a").is_none(),
        "additionalProperties values go"
    );
    apply_defaults(&crontab(), &mut obj);
    assert_eq!(obj["spec"]["replicas"], 1);
}

#[test]
fn defaults_fill_absent_fields_items_and_map_values() {
    let mut obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": "i", "note": null,
        "ports": [{"name": "a"}, {"name": "b", "port": 8080}],
        "volumes": {"v": {}, "w": {"path": "/w"}},
        "schedule": {}
    }));
    apply_defaults(&crontab(), &mut obj);
    let spec = &obj["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["note"], Value::Null, "a nullable null stays");
    assert_eq!(
        spec["ports"],
        json!([{"name": "a", "port": 80}, {"name": "b", "port": 8080}])
    );
    assert_eq!(
        spec["volumes"],
        json!({"v": {"path": "/data"}, "w": {"path": "/w"}})
    );
    assert_eq!(spec["schedule"]["timezone"], "UTC");
    assert!(obj.get("status").is_none(), "no default, nothing added");
}

#[test]
fn defaults_apply_inside_defaults_and_are_pruned() {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "default": {"bogus": 1},
        "properties": {
            "a": {"type": "integer", "default": 5},
            "list": {"type": "array", "items": {"type": "string", "default": "d"}},
            "m": {"type": "object", "additionalProperties": {"type": "integer", "default": 7}}
        }
    }}});
    let mut obj = json!({"kind": "K"});
    apply_defaults(&schema, &mut obj);
    assert_eq!(obj["spec"], json!({"a": 5}));
    let mut obj = json!({"spec": {"list": [null, "x"], "m": {"k": null}}});
    apply_defaults(&schema, &mut obj);
    assert_eq!(
        obj["spec"],
        json!({"a": 5, "list": ["d", "x"], "m": {"k": 7}})
    );
}

#[test]
fn defaults_leave_root_metadata_alone() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "default": {"name": "x"}, "properties": {"name": {"type": "string", "default": "y"}}}
    }});
    let mut obj = json!({"kind": "K"});
    apply_defaults(&schema, &mut obj);
    assert_eq!(obj, json!({"kind": "K"}));
}

#[test]
fn type_errors_name_the_json_type_found() {
    let obj = crontab_object(json!({"cronSpec": "* * * * *", "image": 5, "replicas": "abc"}));
    let causes = validate(&crontab(), &obj);
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].kind, CauseKind::TypeInvalid);
    assert_eq!(causes[0].field, "spec.image");
    assert_eq!(
        causes[0].message,
        r#"Invalid value: "integer": spec.image in body must be of type string: "integer""#
    );
    assert_eq!(
        causes[1].message,
        r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#
    );
}

#[test]
fn null_for_a_non_nullable_field() {
    let causes = one(json!({"type": "string"}), Value::Null);
    assert_eq!(causes[0].kind, CauseKind::TypeInvalid);
    assert_eq!(causes[0].field, "spec.x");
    assert_eq!(
        causes[0].message,
        r#"Invalid value: "null": spec.x in body must be of type string: "null""#
    );
    assert!(one(json!({"type": "string", "nullable": true}), Value::Null).is_empty());
    // A null never matches an enum.
    assert_eq!(
        one_message(
            json!({"type": "string", "nullable": true, "enum": ["a"]}),
            Value::Null
        ),
        [r#"Unsupported value: "null": supported values: "a""#]
    );
}

#[test]
fn numbers_and_integers() {
    assert!(
        one(json!({"type": "integer"}), json!(2.0)).is_empty(),
        "an integral float is an integer"
    );
    assert_eq!(
        one_message(json!({"type": "integer"}), json!(2.5)),
        [r#"Invalid value: "number": spec.x in body must be of type integer: "number""#]
    );
    assert!(one(json!({"type": "number"}), json!(3)).is_empty());
    assert_eq!(
        one_message(json!({"type": "integer", "format": "int64"}), json!(1.5)),
        [r#"Invalid value: "float64": spec.x in body must be of type int64: "float64""#]
    );
    assert!(one(json!({"type": "integer", "format": "int32"}), json!(7)).is_empty());
    assert_eq!(
        one_message(json!({"type": "boolean"}), json!("true")),
        [r#"Invalid value: "string": spec.x in body must be of type boolean: "string""#]
    );
}

#[test]
fn required_enum_length_bounds_and_pattern() {
    let obj = crontab_object(json!({
        "cronSpec": "every minute", "replicas": 0, "policy": "Never",
        "labels": {"a": ""}
    }));
    assert_eq!(
        errors(&crontab(), &obj),
        [
            r#"spec.cronSpec: Invalid value: "every minute": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            r#"spec.policy: Unsupported value: "Never": supported values: "Allow", "Forbid""#,
            r#"spec.labels.a: Invalid value: "": spec.labels.a in body should be at least 1 chars long"#,
            "spec.image: Required value",
        ]
    );
    let kinds: Vec<CauseKind> = validate(&crontab(), &obj)
        .into_iter()
        .map(|c| c.kind)
        .collect();
    use CauseKind::*;
    assert_eq!(kinds, [Invalid, Invalid, NotSupported, Invalid, Required]);
}

#[test]
fn too_long_and_too_many() {
    let obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": "a-very-long-image-name-indeed", "replicas": 11,
        "ports": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]
    }));
    let causes = validate(&crontab(), &obj);
    let shown: Vec<(CauseKind, &str, &str)> = causes
        .iter()
        .map(|c| (c.kind, c.field.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                CauseKind::TooLong,
                "spec.image",
                "Too long: may not be more than 20 bytes"
            ),
            (
                CauseKind::Invalid,
                "spec.replicas",
                "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
            ),
            (
                CauseKind::TooMany,
                "spec.ports",
                "Too many: 4: must have at most 3 items"
            ),
        ]
    );
}

#[test]
fn lengths_count_characters() {
    assert!(one(json!({"type": "string", "maxLength": 2}), json!("éé")).is_empty());
    assert_eq!(
        one_message(json!({"type": "string", "minLength": 3}), json!("éé")),
        [r#"Invalid value: "éé": spec.x in body should be at least 3 chars long"#]
    );
}

#[test]
fn exclusive_bounds_multiples_and_floats() {
    let s = json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1.5});
    assert_eq!(
        one_message(s.clone(), json!(0)),
        ["Invalid value: 0: spec.x in body should be greater than 0"]
    );
    assert_eq!(
        one_message(s, json!(2.25)),
        ["Invalid value: 2.25: spec.x in body should be less than or equal to 1.5"]
    );
    assert_eq!(
        one_message(json!({"type": "integer", "multipleOf": 5}), json!(12)),
        ["Invalid value: 12: spec.x in body should be a multiple of 5"]
    );
    assert!(one(json!({"type": "number", "multipleOf": 0.5}), json!(2.5)).is_empty());
    assert_eq!(
        one_message(json!({"type": "number", "multipleOf": 0.5}), json!(2.3)),
        ["Invalid value: 2.3: spec.x in body should be a multiple of 0.5"]
    );
    assert_eq!(
        one_message(json!({"type": "number", "maximum": 1000000}), json!(2e6)),
        ["Invalid value: 2e+06: spec.x in body should be less than or equal to 1e+06"]
    );
}

#[test]
fn items_properties_and_uniqueness() {
    let s =
        json!({"type": "array", "minItems": 2, "uniqueItems": true, "items": {"type": "string"}});
    assert_eq!(
        one_message(s.clone(), json!([1])),
        [
            r#"Invalid value: "integer": spec.x[0] in body must be of type string: "integer""#,
            "Invalid value: 1: spec.x in body should have at least 2 items",
        ]
    );
    assert_eq!(one(s.clone(), json!(["a", 1]))[0].field, "spec.x[1]");
    assert_eq!(
        one_message(s, json!(["a", "a"])),
        [r#"Invalid value: "": spec.x in body shouldn't contain duplicates"#]
    );
    let s = json!({"type": "object", "minProperties": 1, "maxProperties": 1});
    assert_eq!(
        one_message(s.clone(), json!({})),
        ["Invalid value: 0: spec.x in body should have at least 1 properties"]
    );
    let causes = one(s, json!({"a": 1, "b": 2}));
    assert_eq!(causes[0].kind, CauseKind::TooMany);
    assert_eq!(causes[0].message, "Too many: 2: must have at most 1 items");
}

#[test]
fn list_type_map_and_set_duplicates() {
    let obj = crontab_object(json!({
        "cronSpec": "* * * * *", "image": "i",
        "ports": [{"name": "a"}, {"name": "b"}, {"name": "a", "port": 1}],
        "tags": ["x", "y", "x", "x"]
    }));
    let causes = validate(&crontab(), &obj);
    let shown: Vec<(CauseKind, &str, &str)> = causes
        .iter()
        .map(|c| (c.kind, c.field.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                CauseKind::Duplicate,
                "spec.ports[2]",
                r#"Duplicate value: map[string]interface {}{"name":"a"}"#
            ),
            (
                CauseKind::Duplicate,
                "spec.tags[2]",
                r#"Duplicate value: "x""#
            ),
        ]
    );
}

#[test]
fn list_type_errors_in_status_come_after_schema_errors() {
    let mut obj = crontab_object(json!({"cronSpec": "* * * * *", "image": "i"}));
    obj["status"] = json!({"conditions": [
        {"type": "Ready", "status": "True"},
        {"type": "Ready", "status": "Maybe"},
        {"status": "False"}
    ]});
    assert_eq!(
        errors(&crontab(), &obj),
        [
            r#"status.conditions[1].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown""#,
            "status.conditions[2].type: Required value",
            r#"status.conditions[1]: Duplicate value: map[string]interface {}{"type":"Ready"}"#,
        ]
    );
}

#[test]
fn list_maps_with_several_keys_missing_keys_and_non_objects() {
    let schema = json!({"type": "object", "properties": {
        "m": {"type": "object", "additionalProperties": {
            "type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {"type": "object"}
        }},
        "one": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]},
        "bad": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]}
    }});
    let obj = json!({
        "m": {"a": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}, {"protocol": "TCP", "port": 80}]},
        "one": [{}, {"x": 1}],
        "bad": [{"k": 1}, "str"]
    });
    let found: Vec<String> = validate(&schema, &obj)
        .into_iter()
        .filter(|c| !matches!(c.kind, CauseKind::TypeInvalid))
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    assert_eq!(
        found,
        [
            r#"m[a][2]: Duplicate value: map[string]interface {}{"port":80, "protocol":"TCP"}"#,
            "one[1]: Duplicate value: map[string]interface {}{}",
            r#"bad[1]: Invalid value: "str": must be an object for an array of list-type map"#,
        ]
    );
}

#[test]
fn set_compares_compound_items_by_json() {
    let schema = json!({"type": "object", "properties": {
        "s": {"type": "array", "x-kubernetes-list-type": "set"}
    }});
    let obj = json!({"s": [{"a": 1, "b": 2}, {"b": 2, "a": 1}, [1], 1, 1.0]});
    assert_eq!(
        errors(&schema, &obj),
        [r#"s[1]: Duplicate value: map[string]interface {}{"a":1, "b":2}"#]
    );
}

#[test]
fn int_or_string_and_any_of() {
    let schema = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
    assert!(one(schema.clone(), json!(5)).is_empty());
    assert!(one(schema.clone(), json!("5%")).is_empty());
    let causes = one(schema, json!(true));
    let shown: Vec<(CauseKind, &str, &str)> = causes
        .iter()
        .map(|c| (c.kind, c.field.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                CauseKind::TypeInvalid,
                "spec.x",
                r#"Invalid value: "boolean": spec.x in body must be of type integer,string: "boolean""#
            ),
            (
                CauseKind::Invalid,
                "<nil>",
                r#"Invalid value: "": "spec.x" must validate at least one schema (anyOf)"#
            ),
            (
                CauseKind::TypeInvalid,
                "spec.x",
                r#"Invalid value: "boolean": spec.x in body must be of type integer: "boolean""#
            ),
        ]
    );
}

#[test]
fn one_of_all_of_and_not() {
    let one_of = json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
    assert!(one(one_of.clone(), json!({"a": 1})).is_empty());
    assert_eq!(
        one_message(one_of.clone(), json!({"a": 1, "b": 2})),
        [
            r#"Invalid value: "": "spec.x" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        ]
    );
    assert_eq!(
        one_message(one_of, json!({})),
        [
            r#"Invalid value: "": "spec.x" must validate one and only one schema (oneOf). Found none valid"#,
            "Required value",
        ]
    );
    let all_of = json!({"type": "string", "allOf": [{"minLength": 2}, {"maxLength": 3}]});
    assert_eq!(
        one_message(all_of, json!("a")),
        [
            r#"Invalid value: "a": spec.x in body should be at least 2 chars long"#,
            r#"Invalid value: "": "spec.x" must validate all the schemas (allOf)"#,
        ]
    );
    let not = json!({"type": "string", "not": {"enum": ["forbidden"]}});
    assert!(one(not.clone(), json!("fine")).is_empty());
    assert_eq!(
        one_message(not, json!("forbidden")),
        [r#"Invalid value: "": "spec.x" must not validate the schema (not)"#]
    );
}

#[test]
fn duplicate_messages_are_reported_once() {
    let s = json!({"type": "object", "allOf": [{"required": ["a"]}, {"required": ["a"]}], "required": ["a"]});
    let causes = one(s, json!({}));
    let required = causes
        .iter()
        .filter(|c| c.kind == CauseKind::Required)
        .count();
    assert_eq!(required, 1);
}

#[test]
fn enums_compare_like_go() {
    let s = json!({"enum": [1, 2.5, "a", {"k": [1]}]});
    for ok in [
        json!(1),
        json!(1.0),
        json!(1.9),
        json!(2.5),
        json!("a"),
        json!({"k": [1]}),
    ] {
        assert!(one(s.clone(), ok.clone()).is_empty(), "{ok}");
    }
    // An integer converts to the string of its rune, as Go's reflect does.
    assert!(one(json!({"enum": ["A"]}), json!(65)).is_empty());
    assert_eq!(
        one_message(s, json!({"k": [1.5]})),
        [
            r#"Unsupported value: map[string]interface {}{"k":[]interface {}{1.5}}: supported values: "1", "2.5", "a", "{\"k\":[1]}""#
        ]
    );
}

#[test]
fn formats() {
    let f = |format: &str, value: Value| one(json!({"type": "string", "format": format}), value);
    assert!(f("date-time", json!("2024-02-29T23:59:59.123+01:00")).is_empty());
    assert!(f("date-time", json!("2024-02-29t10:00:00z")).is_empty());
    let causes = f("date-time", json!("2024-02-30T10:00:00Z"));
    assert_eq!(causes[0].kind, CauseKind::TypeInvalid);
    assert_eq!(
        causes[0].message,
        r#"Invalid value: "2024-02-30T10:00:00Z": spec.x in body must be of type date-time: "2024-02-30T10:00:00Z""#
    );
    assert!(f("date", json!("2023-12-31")).is_empty());
    assert!(!f("date", json!("2023-13-01")).is_empty());
    assert!(f("byte", json!("aGVsbG8=")).is_empty());
    assert!(!f("byte", json!("aGVsbG8")).is_empty());
    assert!(f("uuid", json!("123E4567-e89b-12d3-a456-426614174000")).is_empty());
    assert!(!f("uuid", json!("123e4567-e89b-12d3-a456")).is_empty());
    assert!(f("ipv4", json!("10.0.0.1")).is_empty());
    assert!(!f("ipv4", json!("10.0.0.256")).is_empty());
    assert!(f("ipv6", json!("fe80::1")).is_empty());
    assert!(f("cidr", json!("10.0.0.0/8")).is_empty());
    assert!(!f("cidr", json!("10.0.0.0/33")).is_empty());
    assert!(f("hostname", json!("example.com")).is_empty());
    assert!(f("hostname", json!("my-host.example.com")).is_empty());
    // Upstream's pattern takes one dash at most in a name without dots.
    assert!(f("hostname", json!("m-yhost")).is_empty());
    assert!(!f("hostname", json!("my-host")).is_empty());
    assert!(!f("hostname", json!("-bad")).is_empty());
    assert!(f("mac", json!("00:00:5e:00:53:01")).is_empty());
    assert!(f("duration", json!("1h30m")).is_empty());
    assert!(f("duration", json!("3 days")).is_empty());
    assert!(!f("duration", json!("soon")).is_empty());
    assert!(f("hexcolor", json!("#fff")).is_empty());
    assert!(f("password", json!("")).is_empty());
    // Formats Kubernetes does not support are dropped, unknown ones too.
    assert!(f("no-such-format", json!("anything")).is_empty());
    assert!(one(json!({"type": "integer", "format": "date"}), json!(5)).is_empty());
    // A string format lets an array through, as upstream's type check does.
    assert!(f("date", json!(["x"])).is_empty());
}

#[test]
fn root_metadata_is_not_validated_but_the_rest_of_the_root_is() {
    let schema = json!({"type": "object", "required": ["spec"], "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}},
        "kind": {"type": "string", "enum": ["K"]}
    }});
    let obj = json!({"kind": "Other", "metadata": {"name": "much-too-long"}});
    assert_eq!(
        errors(&schema, &obj),
        [
            r#"kind: Unsupported value: "Other": supported values: "K""#,
            "spec: Required value",
        ]
    );
    assert_eq!(
        errors(&json!({"type": "object"}), &json!([1])),
        [r#"<nil>: Invalid value: "array":  in body must be of type object: "array""#]
    );
}

#[test]
fn map_values_are_named_by_key() {
    let schema = json!({"type": "object", "properties": {"m": {"type": "object",
        "additionalProperties": {"type": "object", "properties": {"x": {"type": "integer"}}}}}});
    assert_eq!(
        errors(&schema, &json!({"m": {"k": {"x": "no"}}})),
        [r#"m.k.x: Invalid value: "string": m.k.x in body must be of type integer: "string""#]
    );
    let closed = json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false});
    assert_eq!(
        one_message(closed, json!({"a": 1, "b": 2})),
        [r#"Invalid value: "b": spec.x.b in body is a forbidden property"#]
    );
}

#[test]
fn bad_schemas_and_odd_objects_never_panic() {
    let schemas = [
        json!(null),
        json!(5),
        json!({"type": 5, "properties": [1], "items": "x", "required": [1, null], "enum": {}}),
        json!({"properties": {"a": 5, "b": {"pattern": "(((", "minLength": "x"}}}),
        json!({"properties": {"a": {"pattern": "[z-a]"}, "b": {"pattern": "a**"}, "c": {"multipleOf": 0}}}),
        json!({"additionalProperties": true, "x-kubernetes-list-type": "map", "anyOf": [5, null], "not": 1}),
        json!({"properties": {"l": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": 3}}}),
    ];
    let objects = [
        json!(null),
        json!([1, {"a": null}]),
        json!({"a": {"b": [null]}, "b": "((", "c": 3, "l": [1, 1], "metadata": 5}),
        json!({"l": [{}, {}], "a": 1e300, "c": -9223372036854775808i64}),
    ];
    for schema in &schemas {
        for obj in &objects {
            let mut o = obj.clone();
            prune(schema, &mut o);
            apply_defaults(schema, &mut o);
            validate(schema, &o);
        }
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let mut schema = json!({"type": "string"});
    let mut obj = json!("leaf");
    for _ in 0..100 {
        schema = json!({"type": "object", "properties": {"a": schema}});
        obj = json!({"a": obj, "junk": 1});
    }
    let mut pruned_obj = obj.clone();
    let pruned = prune(&schema, &mut pruned_obj);
    assert!(!pruned.is_empty() && pruned.len() <= MAX_DEPTH + 2);
    apply_defaults(&schema, &mut pruned_obj);
    assert!(validate(&schema, &obj).is_empty());
}

#[test]
fn regex_subset() {
    let m = |p: &str, t: &str| regex::is_match(p, t);
    assert_eq!(
        m("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "my-name-1"),
        Some(true)
    );
    assert_eq!(m("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "-bad"), Some(false));
    assert_eq!(m("b+", "abbc"), Some(true), "unanchored search");
    assert_eq!(m("^a{2,3}$", "aaaa"), Some(false));
    assert_eq!(m("^a{2,}$", "aaaa"), Some(true));
    assert_eq!(m("^(ab|cd)+$", "abcdab"), Some(true));
    assert_eq!(m(r"^\d+\.\d+$", "1.25"), Some(true));
    assert_eq!(m(r"^\w+\s\S$", "ab_1 x"), Some(true));
    assert_eq!(m("^[^0-9]+$", "abc1"), Some(false));
    assert_eq!(m("^.$", "\n"), Some(false));
    assert_eq!(m("a$", "a\n"), Some(false), "$ is the end of the text");
    assert_eq!(m("(?i)^abc$", "aBC"), Some(true));
    assert_eq!(m("(?i)^[^a]$", "A"), Some(false));
    assert_eq!(m(r"\bcat\b", "a cat!"), Some(true));
    assert_eq!(m("^(?:x|y)*?z$", "xyxz"), Some(true));
    assert_eq!(m("^(?P<n>a)b$", "ab"), Some(true));
    assert_eq!(m("^[[:upper:]][[:digit:]]$", "A1"), Some(true));
    assert_eq!(
        m("^a{,2}$", "a{,2}"),
        Some(true),
        "not a repetition: literal"
    );
    assert_eq!(m(r"^[\d_-]+$", "1_-2"), Some(true));
    assert_eq!(m("^é+$", "ééé"), Some(true));
    // Pathological for backtracking engines, linear here.
    let text = "a".repeat(5000);
    assert_eq!(m("^(a|a)*(a*)*b$", &text), Some(false));
    // Syntax this matcher lacks.
    assert_eq!(m(r"^\p{L}+$", "é"), None);
    assert_eq!(m("(?=a)", "a"), None);
    assert_eq!(m("((a)", "a"), None);
}

#[test]
fn values_in_messages_are_rendered_as_go_does() {
    // %v of a float64, in the message and as the bad value.
    assert_eq!(
        one_message(
            json!({"type": "number", "multipleOf": 1234567.5}),
            json!(0.00001)
        ),
        ["Invalid value: 1e-05: spec.x in body should be a multiple of 1.2345675e+06"]
    );
    // %q of a string.
    assert_eq!(
        one_message(
            json!({"type": "string", "pattern": "^b"}),
            json!("a\"b\\\n\u{1}é")
        ),
        [r#"Invalid value: "a\"b\\\n\x01é": spec.x in body should match '^b'"#]
    );
    // encoding/json of an enum value, quoted; %#v of the bad value.
    let enumerated = json!({"type": "object", "enum": [{"b": 1e21, "a": [0.0000001, 1.5, "<"]}]});
    assert_eq!(
        one_message(enumerated, json!({"a": null, "b": [true, 2]})),
        [
            r#"Unsupported value: map[string]interface {}{"a":interface {}(nil), "b":[]interface {}{true, 2}}: supported values: "{\"a\":[1e-7,1.5,\"\\u003c\"],\"b\":1e+21}""#
        ]
    );
    // A null bad value shows as the string "null".
    assert_eq!(
        one_message(
            json!({"type": "string", "nullable": true, "enum": ["a"]}),
            Value::Null
        ),
        [r#"Unsupported value: "null": supported values: "a""#]
    );
}
