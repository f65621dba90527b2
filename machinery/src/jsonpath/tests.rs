use serde_json::{json, Value};

use super::{cell, validate_column_path, JsonPath};

/// A custom resource as a CRD's columns see it.
fn crontab() -> Value {
    json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {
            "name": "ct",
            "labels": {"app.kubernetes.io/name": "web", "tier": "db"},
            "creationTimestamp": "2024-01-01T00:00:00Z"
        },
        "spec": {
            "replicas": 3,
            "ratio": 0.5,
            "image": "nginx",
            "suspend": false,
            "ports": [80, 443, 8080],
            "nested": {"a": {"b": "deep"}},
            "nothing": null,
            "big": 1000000.0,
            "empty": []
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ok", "observedGeneration": 2},
                {"type": "Synced", "status": "False", "observedGeneration": 1},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

fn find(path: &str, doc: &Value) -> Vec<Value> {
    let parsed = JsonPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parsed.find(doc).into_iter().cloned().collect()
}

fn eval_error(path: &str, doc: &Value) -> String {
    let parsed = JsonPath::parse(path).unwrap();
    let error = parsed.try_find(doc).expect_err(path);
    assert!(
        parsed.find(doc).is_empty(),
        "{path}: a failed path selects nothing"
    );
    error
}

fn parse_error(path: &str) -> String {
    JsonPath::parse(path).expect_err(path)
}

fn column(path: &str, ty: &str, doc: &Value) -> Value {
    let parsed = JsonPath::parse(path).unwrap();
    cell(&parsed.find(doc), ty)
}

#[test]
fn fields() {
    let doc = crontab();
    assert_eq!(find(".spec.image", &doc), [json!("nginx")]);
    assert_eq!(find(".spec.nested.a.b", &doc), [json!("deep")]);
    assert_eq!(find(".spec.nested", &doc), [json!({"a": {"b": "deep"}})]);
    assert_eq!(find("$.metadata.name", &doc), [json!("ct")]);
    assert_eq!(find(".spec.nothing", &doc), [Value::Null]);
    // Missing keys, and keys of non-maps, select nothing without an error.
    assert!(find(".spec.missing", &doc).is_empty());
    assert!(find(".spec.missing.deeper[0]", &doc).is_empty());
    assert!(find(".spec.image.length", &doc).is_empty());
    assert!(find(".spec.nothing.x", &doc).is_empty());
    // `.` alone is a field named "".
    assert!(find(".", &doc).is_empty());
    assert_eq!(find(".", &json!({"": 1})), [json!(1)]);
    assert_eq!(find("", &json!(1)), [json!(1)]);
}

#[test]
fn escaped_and_bracketed_keys() {
    let doc = crontab();
    let web = [json!("web")];
    assert_eq!(
        find(r".metadata.labels.app\.kubernetes\.io/name", &doc),
        web
    );
    assert_eq!(
        find(r".metadata.labels['app\.kubernetes\.io/name']", &doc),
        web
    );
    assert_eq!(find(".metadata['labels']['tier']", &doc), [json!("db")]);
    // Upstream reparses `['a.b']` as the path `.a.b`.
    assert_eq!(find("['spec.image']", &doc), [json!("nginx")]);
    assert!(find(".metadata.labels['app.kubernetes.io/name']", &doc).is_empty());
    assert_eq!(
        find(".metadata.labels['*']", &doc),
        [json!("web"), json!("db")]
    );
    // Only single quotes make a key.
    assert_eq!(
        parse_error(r#".spec["image"]"#),
        r#"invalid array index "image""#
    );
}

#[test]
fn indexes() {
    let doc = crontab();
    assert_eq!(find(".spec.ports[0]", &doc), [json!(80)]);
    assert_eq!(find(".spec.ports[2]", &doc), [json!(8080)]);
    assert_eq!(find(".spec.ports[-1]", &doc), [json!(8080)]);
    assert_eq!(find(".spec.ports[-3]", &doc), [json!(80)]);
    assert_eq!(find(".status.conditions[1].type", &doc), [json!("Synced")]);
    assert_eq!(
        find(".status.conditions[-1].type", &doc),
        [json!("Progressing")]
    );
    assert_eq!(
        eval_error(".spec.ports[3]", &doc),
        "array index out of bounds: index 3, length 3"
    );
    assert_eq!(
        eval_error(".spec.ports[-4]", &doc),
        "array index out of bounds: index -1, length 3"
    );
    assert_eq!(
        eval_error(".spec.empty[0]", &doc),
        "array index out of bounds: index 0, length 0"
    );
    assert_eq!(
        eval_error(".spec.nested[0]", &doc),
        "map[string]interface {} is not array or slice"
    );
    assert_eq!(
        eval_error(".spec.image[0]", &doc),
        "string is not array or slice"
    );
    // Null is skipped, like a missing field.
    assert!(find(".spec.nothing[0]", &doc).is_empty());
    // `[]` is upstream's `[0]`.
    assert_eq!(find(".spec.ports[]", &doc), [json!(80)]);
}

#[test]
fn slices() {
    let doc = crontab();
    let ports = |path: &str| find(&format!(".spec.ports{path}"), &doc);
    assert_eq!(ports("[0:2]"), [json!(80), json!(443)]);
    assert_eq!(ports("[1:]"), [json!(443), json!(8080)]);
    assert_eq!(ports("[:2]"), [json!(80), json!(443)]);
    assert_eq!(ports("[:-1]"), [json!(80), json!(443)]);
    assert_eq!(ports("[-2:]"), [json!(443), json!(8080)]);
    assert_eq!(ports("[::2]"), [json!(80), json!(8080)]);
    assert_eq!(ports("[1::2]"), [json!(443)]);
    assert_eq!(ports("[:]"), [json!(80), json!(443), json!(8080)]);
    assert!(ports("[2:2]").is_empty());
    assert!(ports("[5:5]").is_empty());
    assert!(ports("[-5:-5]").is_empty());
    assert!(find(".spec.empty[*]", &doc).is_empty());
    assert_eq!(
        eval_error(".spec.ports[2:1]", &doc),
        "starting index 2 is greater than ending index 1"
    );
    assert_eq!(
        eval_error(".spec.ports[-1:0]", &doc),
        "starting index 2 is greater than ending index 0"
    );
    assert_eq!(eval_error(".spec.ports[0:3:0]", &doc), "step must be > 0");
    assert_eq!(
        eval_error(".spec.ports[0:4]", &doc),
        "array index out of bounds: index 3, length 3"
    );
}

#[test]
fn wildcards() {
    let doc = crontab();
    assert_eq!(
        find(".spec.ports[*]", &doc),
        [json!(80), json!(443), json!(8080)]
    );
    assert_eq!(
        find(".status.conditions[*].type", &doc),
        [json!("Ready"), json!("Synced"), json!("Progressing")]
    );
    assert_eq!(
        find(".metadata.labels.*", &doc),
        [json!("web"), json!("db")]
    );
    assert_eq!(find(".spec.nested.*.b", &doc), [json!("deep")]);
    assert_eq!(find(".spec.ports.*", &doc).len(), 3);
    assert!(find(".spec.replicas.*", &doc).is_empty());
    // Fields of some items only: the others select nothing.
    assert_eq!(find(".status.conditions[*].reason", &doc), [json!("Ok")]);
}

#[test]
fn recursive_descent() {
    let doc = crontab();
    assert_eq!(
        find("..type", &doc),
        [json!("Ready"), json!("Synced"), json!("Progressing")]
    );
    assert_eq!(find("..b", &doc), [json!("deep")]);
    assert_eq!(find("...b", &doc), [json!("deep")]);
    assert_eq!(find(".spec..b", &doc), [json!("deep")]);
    assert_eq!(find("..ports[1]", &doc), [json!(443)]);
    let tree = json!({"name": "a", "x": {"name": "b", "y": [{"name": "c"}]}, "z": {"name": "d"}});
    assert_eq!(
        find("..name", &tree),
        [json!("a"), json!("b"), json!("c"), json!("d")]
    );
    // Containers (and non-empty strings) come before their contents; leaves are left out.
    assert_eq!(find("..", &json!([1, 2, 3])), [json!([1, 2, 3])]);
    assert_eq!(
        find("..", &json!({"a": "s", "b": 1, "c": []})),
        [json!({"a": "s", "b": 1, "c": []}), json!("s")]
    );
    assert_eq!(parse_error("....b"), "invalid multiple recursive descent");
    assert_eq!(
        parse_error("..*"),
        "unrecognized character in action: U+002A '*'"
    );
    // A filter after `..` meets maps, and fails.
    assert!(JsonPath::parse("..[?(@.a)]")
        .unwrap()
        .try_find(&doc)
        .is_err());
}

#[test]
fn condition_filters() {
    let doc = crontab();
    let conditions =
        |filter: &str, then: &str| find(&format!(".status.conditions[?({filter})]{then}"), &doc);
    assert_eq!(conditions(r#"@.type=="Ready""#, ".status"), [json!("True")]);
    assert_eq!(
        conditions(r#"@.type == "Ready""#, ".status"),
        [json!("True")]
    );
    assert_eq!(conditions("@.type=='Synced'", ".status"), [json!("False")]);
    assert_eq!(
        conditions(r#"@.status!="True""#, ".type"),
        [json!("Synced")]
    );
    assert_eq!(
        conditions(r#"@.status=="True""#, ".type"),
        [json!("Ready"), json!("Progressing")]
    );
    assert!(conditions(r#"@.type=="Missing""#, ".status").is_empty());
    assert_eq!(conditions(r#"@.type=="Ready""#, "").len(), 1);
    // Strings order bytewise.
    assert_eq!(
        conditions(r#"@.type<"S""#, ".type"),
        [json!("Ready"), json!("Progressing")]
    );
    // The right side may be a path too.
    let pairs = json!([{"a": 1, "b": 1}, {"a": 1, "b": 2}]);
    assert_eq!(find("[?(@.a==@.b)].b", &pairs), [json!(1)]);
    // Quoted literals unescape like Go strings.
    let strings = json!([{"v": "a\"b"}, {"v": "é"}, {"v": "x)y"}, {"v": "t\tb"}]);
    assert_eq!(find(r#"[?(@.v=="a\"b")].v"#, &strings), [json!("a\"b")]);
    assert_eq!(find(r#"[?(@.v=="\u00e9")].v"#, &strings), [json!("é")]);
    assert_eq!(find(r#"[?(@.v=="\303\251")].v"#, &strings), [json!("é")]);
    assert_eq!(find(r#"[?(@.v=='x)y')].v"#, &strings), [json!("x)y")]);
    assert_eq!(find(r#"[?(@.v=="t\tb")].v"#, &strings), [json!("t\tb")]);
}

#[test]
fn number_filters() {
    let doc = crontab();
    let types = |filter: &str| find(&format!(".status.conditions[?({filter})].type"), &doc);
    // Items without the field are skipped.
    assert_eq!(types("@.observedGeneration>1"), [json!("Ready")]);
    assert_eq!(
        types("@.observedGeneration>=1"),
        [json!("Ready"), json!("Synced")]
    );
    assert_eq!(types("@.observedGeneration<2"), [json!("Synced")]);
    assert_eq!(
        types("@.observedGeneration<=2"),
        [json!("Ready"), json!("Synced")]
    );
    assert_eq!(types("@.observedGeneration==1"), [json!("Synced")]);
    assert_eq!(types("@.observedGeneration!=1"), [json!("Ready")]);
    assert_eq!(types("@.observedGeneration>-1").len(), 2);
    assert_eq!(types("@.observedGeneration>+1"), [json!("Ready")]);
    assert_eq!(find("[?(@<5)]", &json!([2, 6, 3, 7])), [json!(2), json!(3)]);
    let floats = json!([{"x": 1.5}, {"x": 2.5}]);
    assert_eq!(find("[?(@.x>2.0)].x", &floats), [json!(2.5)]);
    assert_eq!(find("[?(@.x<2.)].x", &floats), [json!(1.5)]);
    // Upstream never compares an integer with a float, nor a string with a number:
    // the whole path fails.
    let path = ".status.conditions[?(@.observedGeneration==2.0)]";
    assert_eq!(eval_error(path, &doc), "incompatible types for comparison");
    assert_eq!(
        eval_error("[?(@.x>2)]", &floats),
        "incompatible types for comparison"
    );
    let path = ".status.conditions[?(@.status==true)]";
    assert_eq!(eval_error(path, &doc), "incompatible types for comparison");
    let bools = json!([{"b": true}, {"b": false}]);
    assert_eq!(find("[?(@.b==true)]", &bools), [json!({"b": true})]);
    assert_eq!(
        eval_error("[?(@.b<true)]", &bools),
        "invalid type for comparison"
    );
    let nulls = json!([{"x": null}]);
    assert_eq!(
        eval_error("[?(@.x==1)]", &nulls),
        "invalid type for comparison"
    );
    // Operators are checked when compared, not when parsed.
    assert_eq!(
        eval_error(".status.conditions[?(@.type<>1)]", &doc),
        "unrecognized filter operator <>"
    );
    assert!(find(".spec.empty[?(@.type<>1)]", &doc).is_empty());
    let many = json!([{"a": [1, 2]}]);
    assert_eq!(
        eval_error("[?(@.a[*]==1)]", &many),
        "can only compare one element at a time"
    );
}

#[test]
fn existence_filters() {
    let doc = crontab();
    assert_eq!(
        find(".status.conditions[?(@.reason)].type", &doc),
        [json!("Ready")]
    );
    assert!(find(".status.conditions[?(@.missing)]", &doc).is_empty());
    let points = json!([{"id": "i1", "x": 4}, {"id": "i2", "z": 1}, {"id": "i3", "z": null}]);
    // A null value exists.
    assert_eq!(find("[?(@.z)].id", &points), [json!("i2"), json!("i3")]);
    // Upstream counts what a failing test returned: a short list "exists".
    let lists = json!([{"l": [1]}, {"other": 1}]);
    assert_eq!(find("[?(@.l[5])]", &lists), [json!({"l": [1]})]);
    assert_eq!(
        eval_error(".spec.nested[?(@.a)]", &doc),
        "map[string]interface {} is not array or slice and cannot be filtered"
    );
    assert_eq!(
        eval_error(".spec.nothing[?(@.a)]", &doc),
        "<nil> is not array or slice and cannot be filtered"
    );
}

#[test]
fn missing_annotations_in_filters() {
    // https://issues.k8s.io/45546: items without the field are no error.
    let list = json!({"items": [
        {"metadata": {"name": "pod1", "annotations": {"color": "blue"}}},
        {"metadata": {"name": "pod2"}},
        {"metadata": {"name": "pod3", "annotations": {"color": "green"}}},
        {"metadata": {"name": "pod4", "annotations": {"color": "blue"}}}
    ]});
    let path = r#".items[?(@.metadata.annotations.color=="blue")].metadata.name"#;
    assert_eq!(find(path, &list), [json!("pod1"), json!("pod4")]);
}

#[test]
fn unions() {
    let doc = crontab();
    assert_eq!(find(".spec.ports[0,2]", &doc), [json!(80), json!(8080)]);
    assert_eq!(find(".spec.ports[2, 0]", &doc), [json!(8080), json!(80)]);
    assert_eq!(
        find(".spec.ports[-1,0:2]", &doc),
        [json!(8080), json!(80), json!(443)]
    );
    assert_eq!(
        find("['spec.image', 'metadata.name']", &doc),
        [json!("nginx"), json!("ct")]
    );
    assert_eq!(find(".spec['image','missing']", &doc), [json!("nginx")]);
    assert_eq!(
        eval_error(".spec.ports[0,5]", &doc),
        "array index out of bounds: index 5, length 3"
    );
}

#[test]
fn literals_and_extra_actions() {
    let doc = crontab();
    let text = JsonPath::parse(r#""text""#).unwrap();
    assert_eq!(text.find(&doc), [&json!("text")]);
    assert_eq!(cell(&text.find(&doc), "string"), json!("text"));
    assert_eq!(find(".spec.ports 7", &doc), [json!(7)]);
    assert_eq!(find("true", &doc), [json!(true)]);
    // A `}` closes upstream's action: the column is the first, but all must hold.
    assert_eq!(find(".spec.image}{.metadata.name", &doc), [json!("nginx")]);
    assert_eq!(
        find(".spec.image} and {.spec.missing", &doc),
        [json!("nginx")]
    );
    assert!(find(".spec.missing}{.spec.image", &doc).is_empty());
    assert_eq!(
        eval_error(".spec.image}{.spec.nested[0]", &doc),
        "map[string]interface {} is not array or slice"
    );
    // Template keywords mean nothing in a column.
    assert_eq!(
        eval_error("range .spec.ports[*]", &doc),
        "unrecognized identifier range"
    );
}

#[test]
fn parse_errors() {
    for (path, error) in [
        (".spec.ports[1", "unterminated array"),
        (".spec.ports[1\n]", "unterminated array"),
        (".a[?(@.b", "unterminated filter"),
        (".a[?(@.b)x", "unclosed array expect ]"),
        ("*", "unrecognized character in action: U+002A '*'"),
        (".a\t", "unrecognized character in action: U+0009"),
        (".a{", "unrecognized character in action: U+007B '{'"),
        (".a\n", "unclosed action"),
        (".a\\", "unclosed action"),
        ("+12.3.0", "cannot parse number +12.3.0"),
        ("-", "cannot parse number -"),
        (r#""abc"#, "unterminated quoted string"),
        (r#""\q""#, r#"unquote string "\q" error invalid syntax"#),
        (r#"'\"'"#, r#"unquote string '\"' error invalid syntax"#),
        (
            r#""\ud800""#,
            r#"unquote string "\ud800" error invalid syntax"#,
        ),
        (".a[x]", "invalid array index x"),
        (".a[1:b]", "invalid array index 1:b"),
        (".a[1:2:3:4]", "invalid array index 1:2:3:4"),
        (".a[-]", "array index - is not a number"),
        (
            ".a[99999999999999999999]",
            "array index 99999999999999999999 is not a number",
        ),
        (".a[0,x]", "invalid array index x"),
        (
            ".a[?(@.b==)]",
            "unrecognized character in action: U+003D '='",
        ),
        (".a[?(==1)]", "unrecognized character in action: U+003D '='"),
        ("....", "invalid multiple recursive descent"),
    ] {
        assert_eq!(parse_error(path), error, "{path:?}");
    }
    // Big integers become floats, as with Go's Atoi then ParseFloat.
    assert_eq!(find("99999999999999999999", &json!(null)), [json!(1e20)]);
}

#[test]
fn cells_take_the_first_value() {
    let doc = crontab();
    assert_eq!(
        column(".status.conditions[*].type", "string", &doc),
        json!("Ready")
    );
    assert_eq!(column(".spec.ports[*]", "integer", &doc), json!(80));
    assert_eq!(cell(&[], "string"), Value::Null);
    for ty in ["integer", "number", "boolean", "string", "date"] {
        assert_eq!(column(".spec.missing", ty, &doc), Value::Null, "{ty}");
        assert_eq!(column(".spec.ports[7]", ty, &doc), Value::Null, "{ty}");
    }
}

#[test]
fn integer_and_number_cells() {
    let doc = crontab();
    assert_eq!(column(".spec.replicas", "integer", &doc), json!(3));
    // Floats truncate toward zero.
    assert_eq!(column(".spec.ratio", "integer", &doc), json!(0));
    assert_eq!(cell(&[&json!(2.9)], "integer"), json!(2));
    assert_eq!(cell(&[&json!(-2.9)], "integer"), json!(-2));
    assert_eq!(column(".spec.image", "integer", &doc), Value::Null);
    assert_eq!(column(".spec.nothing", "integer", &doc), Value::Null);
    assert_eq!(column(".spec.suspend", "integer", &doc), Value::Null);
    assert_eq!(column(".spec.ratio", "number", &doc), json!(0.5));
    assert_eq!(column(".spec.replicas", "number", &doc), json!(3));
    assert_eq!(column(".spec.big", "number", &doc).to_string(), "1000000");
    assert_eq!(column(".spec.image", "number", &doc), Value::Null);
    assert_eq!(column(".spec.ports", "number", &doc), Value::Null);
}

#[test]
fn boolean_and_date_cells() {
    let doc = crontab();
    assert_eq!(column(".spec.suspend", "boolean", &doc), json!(false));
    assert_eq!(cell(&[&json!("true")], "boolean"), Value::Null);
    assert_eq!(cell(&[&json!(1)], "boolean"), Value::Null);
    // The server humanizes dates from the raw string.
    let created = column(".metadata.creationTimestamp", "date", &doc);
    assert_eq!(created, json!("2024-01-01T00:00:00Z"));
    assert_eq!(cell(&[&json!("not a date")], "date"), json!("not a date"));
    assert_eq!(cell(&[&json!(1700000000)], "date"), Value::Null);
    assert_eq!(cell(&[&json!("x")], "uuid"), Value::Null);
}

#[test]
fn string_cells_print_any_value() {
    let doc = crontab();
    assert_eq!(column(".spec.image", "string", &doc), json!("nginx"));
    assert_eq!(column(".spec.replicas", "string", &doc), json!("3"));
    assert_eq!(column(".spec.suspend", "string", &doc), json!("false"));
    assert_eq!(column(".spec.nothing", "string", &doc), json!("<no value>"));
    assert_eq!(
        column(".spec.ports", "string", &doc),
        json!("[80,443,8080]")
    );
    assert_eq!(
        column(".spec.nested", "string", &doc),
        json!(r#"{"a":{"b":"deep"}}"#)
    );
    // Go's `%v` of a float64.
    for (number, text) in [
        (json!(0.5), "0.5"),
        (json!(1000000.0), "1e+06"),
        (json!(123456.0), "123456"),
        (json!(1234567.5), "1.2345675e+06"),
        (json!(0.0001), "0.0001"),
        (json!(0.00001), "1e-05"),
        (json!(-2.5e-300), "-2.5e-300"),
        (json!(1.0), "1"),
        (json!(0.0), "0"),
        (json!(u64::MAX), "1.8446744073709552e+19"),
        (json!(i64::MIN), "-9223372036854775808"),
    ] {
        assert_eq!(cell(&[&number], "string"), json!(text), "{number}");
    }
    // Go's json.Marshal: sorted keys, HTML-safe strings, Go's floats.
    let messy = json!({
        "z": "<b>&\u{2028}\u{1}\n",
        "a": [1, 2.5, 1e21, 1e-7, 100.0, 1e20, null, true],
        "m": {}
    });
    let printed = concat!(
        r#"{"a":[1,2.5,1e+21,1e-7,100,100000000000000000000,null,true],"m":{},"#,
        r#""z":"\u003cb\u003e\u0026\u2028\u0001\n"}"#
    );
    assert_eq!(cell(&[&messy], "string"), json!(printed));
}

#[test]
fn column_paths() {
    assert_eq!(validate_column_path(""), Err("must not be empty".into()));
    assert_eq!(
        validate_column_path("spec.replicas"),
        Err("must be a simple json path starting with .".into())
    );
    assert_eq!(
        validate_column_path("$.spec"),
        Err("must be a simple json path starting with .".into())
    );
    assert_eq!(validate_column_path("."), Ok(()));
    assert_eq!(validate_column_path(".spec.replicas"), Ok(()));
    assert_eq!(
        validate_column_path(".status.conditions[?(@.type==\"Ready\")].status"),
        Ok(())
    );
    // Upstream does not parse here.
    assert_eq!(validate_column_path(".spec[1"), Ok(()));
}

#[test]
fn deep_documents() {
    let mut deep = json!("leaf");
    for _ in 0..1500 {
        deep = json!([deep]);
    }
    let everything = JsonPath::parse("..").unwrap();
    let all = everything.find(&deep);
    assert_eq!(all.len(), 1501);
    // Past any stored object's depth, the printer gives up instead of the stack.
    assert_eq!(cell(&[&deep], "string"), Value::Null);
    assert_eq!(
        cell(&[all[600]], "string").as_str().map(str::len),
        Some(900 * 2 + 6)
    );
}

#[test]
fn multiplying_paths_fail() {
    // Each `..['*']..` walks every subtree again: the values multiply.
    let mut wide = json!({});
    for i in 0..40 {
        wide = json!({"a": wide, "b": [i, [i], {"c": i}], "d": "s"});
    }
    let path = "..['*']".repeat(6);
    let parsed = JsonPath::parse(&path).unwrap();
    assert_eq!(
        parsed.try_find(&wide).unwrap_err(),
        "jsonpath selects too many values"
    );
}

#[test]
fn long_and_hostile_paths() {
    let doc = crontab();
    for path in [
        "[".repeat(10_000),
        "[?(".repeat(5_000),
        "['".repeat(5_000),
        "..a".repeat(5_000),
        ".a".repeat(10_000),
        "[0,".repeat(3_000),
        "\\".repeat(10_001),
        "[?(@.a==\"".repeat(2_000),
    ] {
        if let Ok(parsed) = JsonPath::parse(&path) {
            let _ = parsed.try_find(&doc);
        }
    }
}

#[test]
fn never_panics() {
    let docs = [
        crontab(),
        json!([1, "s", null, [[]], {"a": [{"a": 1.5}]}]),
        json!(null),
    ];
    let alphabet = [
        ".", "[", "]", "?(", ")", "@", "'", "\"", "\\", "-", "1", ":", ",", "*", "=", "<", "a",
        "{", "}", " ", "é", "$", "\n",
    ];
    let tokens = [
        ".spec",
        ".a",
        "[0]",
        "[-1]",
        "[*]",
        "..",
        "[?(@.a==\"x\")]",
        "[?(@.a)]",
        "['a.b']",
        "[0,1]",
        "[1:]",
        "}",
        "{",
        "\"",
        "\\",
        "[?(@.a>1)]",
        ".*",
    ];
    let mut paths = vec![String::new()];
    for pieces in [&alphabet[..], &tokens[..]] {
        let mut layer = vec![String::new()];
        for _ in 0..4 {
            layer = layer
                .iter()
                .flat_map(|p| pieces.iter().map(move |piece| format!("{p}{piece}")))
                .collect();
            paths.extend(layer.iter().cloned());
        }
    }
    for path in &paths {
        let _ = validate_column_path(path);
        let Ok(parsed) = JsonPath::parse(path) else {
            continue;
        };
        for doc in &docs {
            let values = parsed.find(doc);
            for ty in ["integer", "number", "boolean", "string", "date"] {
                cell(&values, ty);
            }
        }
    }
}
