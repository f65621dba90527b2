//! Applies a CRD version's `openAPIV3Schema` to a custom resource as
//! upstream's apiextensions-apiserver does: structural pruning, structural
//! defaulting, and kube-openapi's validation turned into field causes.
//!
//! Upstream quirks are kept on purpose, since kubectl shows them: a type
//! error names the JSON type it found (`Invalid value: "string"`), errors of
//! `anyOf`/`oneOf`/`allOf`/`not` sit on field `<nil>`, `maxLength` speaks of
//! bytes, and list-type errors index map values as `[key]`.

use crate::error::{Cause, CauseKind};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Nesting deeper than this is left alone; no real schema gets there.
const MAX_DEPTH: usize = 64;
/// Type and object meta of a resource: the schema never prunes them.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes fields the schema does not declare (upstream's pruning), returning their paths
/// as upstream's strict field validation names them (e.g. `spec.foo`, `spec.items[0].bar`, `spec.m.k.x`).
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let root = Schema::of(schema);
    let mut pruned = Vec::new();
    prune_value(
        obj,
        Some(root),
        false,
        true,
        &mut String::new(),
        &mut pruned,
        0,
    );
    drop_nulls(obj, Some(root), true, 0);
    pruned.sort();
    pruned
}

/// Fills in `default`s of the schema where fields are absent (upstream's structural defaulting), also in array items and additionalProperties values.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    default_value(obj, Schema::of(schema), true, 0);
}

/// Validates the object against the schema (OpenAPI v3 validation as kube-openapi does it for CRDs), returning upstream's field causes.
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let root = Schema::of(schema);
    // kube-openapi drops an error whose message it already has.
    let mut seen = HashSet::new();
    let mut causes: Vec<Cause> = check(root, obj, "", true, 0)
        .failures
        .into_iter()
        .filter(|f| seen.insert(f.message.clone()))
        .map(Failure::into_cause)
        .collect();
    if let Value::Object(map) = obj {
        list_types_in_map(root, map, "", true, 0, &mut causes);
    }
    // CEL rules (x-kubernetes-validations) are not evaluated.
    causes
}

/// One node of a schema; anything but an object reads as the empty schema.
#[derive(Clone, Copy)]
struct Schema<'a>(Option<&'a Map<String, Value>>);

impl<'a> Schema<'a> {
    fn of(v: &'a Value) -> Self {
        Schema(v.as_object())
    }

    fn get(self, key: &str) -> Option<&'a Value> {
        self.0?.get(key)
    }

    fn flag(self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool) == Some(true)
    }

    fn int(self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    fn num(self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    fn text(self, key: &str) -> &'a str {
        self.get(key).and_then(Value::as_str).unwrap_or("")
    }

    fn strings(self, key: &str) -> impl Iterator<Item = &'a str> {
        let list = self.get(key).and_then(Value::as_array);
        list.into_iter().flatten().filter_map(Value::as_str)
    }

    fn properties(self) -> impl Iterator<Item = (&'a String, Schema<'a>)> {
        let props = self.get("properties").and_then(Value::as_object);
        props.into_iter().flatten().map(|(k, v)| (k, Schema::of(v)))
    }

    fn property(self, name: &str) -> Option<Schema<'a>> {
        self.get("properties")?
            .as_object()?
            .get(name)
            .map(Schema::of)
    }

    fn items(self) -> Option<Schema<'a>> {
        self.get("items").filter(|v| v.is_object()).map(Schema::of)
    }

    /// `additionalProperties`: None when absent, Some(None) when a bool.
    fn additional(self) -> Option<Option<Schema<'a>>> {
        match self.get("additionalProperties")? {
            v @ Value::Object(_) => Some(Some(Schema::of(v))),
            Value::Bool(_) => Some(None),
            _ => None,
        }
    }

    /// The schema of one map value: its property, else additionalProperties.
    fn field(self, name: &str) -> Option<Schema<'a>> {
        self.property(name).or_else(|| self.additional().flatten())
    }

    fn branches(self, key: &str) -> Vec<Schema<'a>> {
        let list = self.get(key).and_then(Value::as_array);
        list.into_iter().flatten().map(Schema::of).collect()
    }

    fn default(self) -> Option<&'a Value> {
        self.get("default").filter(|v| !v.is_null())
    }

    fn nullable(self) -> bool {
        self.flag("nullable")
    }

    fn preserves_unknown(self) -> bool {
        self.flag("x-kubernetes-preserve-unknown-fields")
    }

    fn embedded(self) -> bool {
        self.flag("x-kubernetes-embedded-resource")
    }

    fn types(self) -> Vec<&'a str> {
        if self.flag("x-kubernetes-int-or-string") {
            return vec!["integer", "string"];
        }
        match self.text("type") {
            "" => vec![],
            t => vec![t],
        }
    }

    /// The format as upstream validates it: CRDs drop formats Kubernetes does not support for the type.
    fn format(self, types: &[&str]) -> &'a str {
        let f = self.text("format");
        let kept = match types {
            [] | ["string"] | [_, _, ..] => formats::known(f),
            ["integer"] => f == "int32" || f == "int64",
            ["number"] => f == "float" || f == "double",
            _ => false,
        };
        if kept {
            f
        } else {
            ""
        }
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

// ---- pruning

/// Upstream's prune (`skip` false) and skipPrune (`skip` true, below
/// x-kubernetes-preserve-unknown-fields, where unknown fields stay).
fn prune_value(
    x: &mut Value,
    s: Option<Schema>,
    skip: bool,
    root: bool,
    path: &mut String,
    pruned: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let skip = skip || s.is_some_and(Schema::preserves_unknown);
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                if !skip {
                    pruned.extend(map.keys().map(|k| child(path, k)));
                    map.clear();
                }
                return;
            };
            // The root is an embedded resource too: its type and object meta are handled elsewhere.
            let meta = |k: &str| (root || s.embedded()) && META_FIELDS.contains(&k);
            for (k, v) in map.iter_mut() {
                if meta(k) {
                    continue;
                }
                if let Some(sub) = s.property(k).map(Some).or_else(|| s.additional()) {
                    let len = path.len();
                    *path = child(path, k);
                    prune_value(v, sub, false, false, path, pruned, depth + 1);
                    path.truncate(len);
                }
            }
            if !skip {
                map.retain(|k, _| {
                    let known = meta(k) || s.property(k).is_some() || s.additional().is_some();
                    if !known {
                        pruned.push(child(path, k));
                    }
                    known
                });
            }
        }
        Value::Array(items) => {
            let sub = s.and_then(Schema::items);
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                prune_value(v, sub, skip, false, path, pruned, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Upstream's PruneNonNullableNullsWithoutDefaults: a null the schema
/// neither allows nor can default goes (a defaultable one is defaulted later).
fn drop_nulls(x: &mut Value, s: Option<Schema>, root: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => map.retain(|k, v| {
            if root && k == "metadata" {
                return true;
            }
            let sub = s.and_then(|s| s.field(k));
            if v.is_null() && sub.is_some_and(|s| !s.nullable() && s.default().is_none()) {
                return false;
            }
            drop_nulls(v, sub, false, depth + 1);
            true
        }),
        Value::Array(items) => {
            let sub = s.and_then(Schema::items);
            for v in items {
                drop_nulls(v, sub, false, depth + 1);
            }
        }
        _ => {}
    }
}

// ---- defaulting

fn default_value(x: &mut Value, s: Schema, root: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            for (k, prop) in s.properties() {
                let Some(default) = prop.default().filter(|_| !(root && k == "metadata")) else {
                    continue;
                };
                let missing = map.get(k).is_none_or(|v| v.is_null() && !prop.nullable());
                if missing {
                    map.insert(k.clone(), pruned_default(default, prop));
                }
            }
            for (k, v) in map.iter_mut() {
                if root && k == "metadata" {
                    continue;
                }
                if let Some(prop) = s.property(k) {
                    default_value(v, prop, false, depth + 1);
                } else if let Some(Some(sub)) = s.additional() {
                    fill_null(v, sub);
                    default_value(v, sub, false, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.items() {
                for v in items {
                    fill_null(v, sub);
                    default_value(v, sub, false, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn fill_null(v: &mut Value, s: Schema) {
    if let Some(default) = s.default().filter(|_| v.is_null() && !s.nullable()) {
        *v = pruned_default(default, s);
    }
}

/// Upstream prunes each default once, when it reads the CRD.
fn pruned_default(default: &Value, s: Schema) -> Value {
    let mut v = default.clone();
    prune_value(
        &mut v,
        Some(s),
        false,
        false,
        &mut String::new(),
        &mut Vec::new(),
        0,
    );
    v
}

// ---- validation (kube-openapi's SchemaValidator)

/// One kube-openapi error, before upstream turns it into a field cause.
struct Failure {
    /// kube-openapi's path: `spec.x`, `.spec` for required at the root, `` for the root.
    name: String,
    code: Code,
    value: Value,
    message: String,
}

enum Code {
    Required,
    Enum(Vec<Value>),
    TooLong(i64),
    /// Actual count and maximum, of items or properties.
    TooMany(i64, i64),
    Type,
    Other,
    /// Not a field error (anyOf and friends): upstream puts it on field `<nil>`.
    Composite,
}

impl Failure {
    fn new(name: &str, code: Code, value: Value, message: String) -> Self {
        Failure {
            name: name.to_string(),
            code,
            value,
            message,
        }
    }

    /// Upstream's kubeOpenAPIResultToFieldErrors.
    fn into_cause(self) -> Cause {
        let field = match (&self.code, self.name.as_str()) {
            (Code::Composite, _) | (_, "" | ".") => "<nil>".to_string(),
            (_, name) => name.strip_prefix('.').unwrap_or(name).to_string(),
        };
        // A missing value shows as "".
        let shown = || match &self.value {
            Value::Null => gofmt::quote(""),
            v => gofmt::bad_value(v),
        };
        let (kind, message) = match &self.code {
            Code::Required => (CauseKind::Required, "Required value".to_string()),
            Code::Enum(values) => {
                let supported: Vec<String> = values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => gofmt::quote(s),
                        v => gofmt::quote(&gofmt::json(v)),
                    })
                    .collect();
                let value = gofmt::bad_value(&self.value);
                let message = format!(
                    "Unsupported value: {value}: supported values: {}",
                    supported.join(", ")
                );
                (CauseKind::NotSupported, message)
            }
            Code::TooLong(max) if *max >= 0 => (
                CauseKind::TooLong,
                format!("Too long: may not be more than {max} bytes"),
            ),
            Code::TooLong(_) => (CauseKind::TooLong, "Too long: value is too long".into()),
            Code::TooMany(actual, max) if *max >= 0 => (
                CauseKind::TooMany,
                format!("Too many: {actual}: must have at most {max} items"),
            ),
            Code::TooMany(actual, _) => (
                CauseKind::TooMany,
                format!("Too many: {actual}: has too many items"),
            ),
            Code::Type => (
                CauseKind::TypeInvalid,
                format!("Invalid value: {}: {}", shown(), self.message),
            ),
            Code::Other | Code::Composite => (
                CauseKind::Invalid,
                format!("Invalid value: {}: {}", shown(), self.message),
            ),
        };
        Cause {
            kind,
            field,
            message,
        }
    }
}

/// A validator's errors and its match count (kube-openapi picks the
/// anyOf/oneOf branch with the most matches to explain a failure).
#[derive(Default)]
struct Outcome {
    failures: Vec<Failure>,
    matched: usize,
}

impl Outcome {
    fn failed(f: Failure) -> Self {
        Outcome {
            failures: vec![f],
            matched: 0,
        }
    }

    fn passed() -> Self {
        Outcome {
            failures: vec![],
            matched: 1,
        }
    }

    fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    fn merge(&mut self, other: Outcome) {
        self.failures.extend(other.failures);
        self.matched += other.matched;
    }

    /// One validator of the chain ran: its result, and one more match.
    fn ran(&mut self, other: Outcome) {
        self.merge(other);
        self.matched += 1;
    }

    fn push(&mut self, f: Failure) {
        self.failures.push(f);
    }
}

/// kube-openapi's chain, in its order: type, combinators, string, format,
/// number, array, enum, object. A null meets only type and enum.
fn check(s: Schema, x: &Value, path: &str, root: bool, depth: usize) -> Outcome {
    let mut out = Outcome::default();
    if depth > MAX_DEPTH {
        return out;
    }
    let types = s.types();
    let format = s.format(&types);
    if x.is_null() {
        out.merge(check_type(&types, s.nullable(), format, x, path));
        out.merge(check_enum(s, x, path));
        return out;
    }
    if !types.is_empty() || !format.is_empty() {
        out.ran(check_type(&types, s.nullable(), format, x, path));
    }
    out.ran(check_combinators(s, x, path, root, depth));
    if let Value::String(text) = x {
        out.ran(check_string(s, text, path));
        if formats::known(format) {
            out.ran(check_format(format, text, path));
        }
    }
    if x.is_number() {
        out.ran(check_number(s, x, path));
    }
    if let Value::Array(items) = x {
        out.ran(check_array(s, items, path, depth));
    }
    out.ran(check_enum(s, x, path));
    if let Value::Object(map) = x {
        out.ran(check_object(s, map, path, root, depth));
    }
    out.matched += 1;
    out
}

/// The JSON type of a decoded value and the Go format it decodes to.
fn json_type(x: &Value) -> (&'static str, &'static str) {
    match x {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::Number(n) if n.is_i64() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::String(_) => ("string", ""),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

/// kube-openapi's type validator, quirks included: with a string format set a
/// string or array passes any non-numeric type, and integral floats pass as integers.
fn check_type(types: &[&str], nullable: bool, format: &str, x: &Value, path: &str) -> Outcome {
    let has = |t: &str| types.contains(&t);
    let fail = |expected: &str, found: &str| {
        let message = format!(
            "{path} in body must be of type {expected}: {}",
            gofmt::quote(found)
        );
        Outcome::failed(Failure::new(path, Code::Type, Value::from(found), message))
    };
    if x.is_null() {
        if !types.is_empty() && !has("null") && !nullable {
            return fail(&types.join(","), "null");
        }
        return Outcome::passed();
    }
    let (found, found_format) = json_type(x);
    let float_int = found == "number" && x.as_f64().is_some_and(is_json_integer) && has("integer");
    let int_float = found == "integer" && has("number");
    let textual = matches!(x, Value::String(_) | Value::Array(_));
    let matches = has(found) || float_int || int_float;
    if !(textual || format.is_empty() || matches || found_format == format) {
        return fail(format, found_format);
    }
    if textual && !format.is_empty() && !(has("number") || has("integer")) {
        return Outcome::passed();
    }
    if !matches {
        return fail(&types.join(","), found);
    }
    Outcome::passed()
}

/// go-openapi's IsFloat64AJSONInteger: integral (or within 1e-9 relative of
/// it) and within ±(2^53-1).
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || f.abs() > MAX {
        return false;
    }
    let g = f.trunc();
    f == g || (f > 0.0 && g > 0.0 && (f - g) / (f + g) < 1e-9)
}

/// allOf, anyOf, oneOf and not: a failing anyOf/oneOf also reports the
/// errors of its best-matching branch.
fn check_combinators(s: Schema, x: &Value, path: &str, root: bool, depth: usize) -> Outcome {
    let mut out = Outcome::default();
    let quoted = gofmt::quote(path);
    let composite = |message: String| Failure::new(path, Code::Composite, Value::Null, message);
    let run = |branch: Schema| check(branch, x, path, root, depth + 1);
    let better =
        |best: &Option<Outcome>, r: &Outcome| best.as_ref().is_none_or(|b| r.matched > b.matched);

    let any_of = s.branches("anyOf");
    if !any_of.is_empty() {
        let (mut best, mut passed) = (None, None);
        for branch in any_of {
            let result = run(branch);
            if result.ok() {
                passed = Some(result);
                break;
            }
            if better(&best, &result) {
                best = Some(result);
            }
        }
        if let Some(first) = passed {
            out.merge(first);
        } else {
            out.push(composite(format!(
                "{quoted} must validate at least one schema (anyOf)"
            )));
            if let Some(b) = best {
                out.merge(b);
            }
        }
    }

    let one_of = s.branches("oneOf");
    if !one_of.is_empty() {
        let (mut valid, mut best, mut first) = (0, None, None);
        for branch in one_of {
            let result = run(branch);
            if result.ok() {
                valid += 1;
                best = None;
                first.get_or_insert(result);
            } else if valid == 0 && better(&best, &result) {
                best = Some(result);
            }
        }
        if valid == 1 {
            if let Some(f) = first {
                out.merge(f);
            }
        } else {
            let detail = match valid {
                0 => "Found none valid".to_string(),
                n => format!("Found {n} valid alternatives"),
            };
            out.push(composite(format!(
                "{quoted} must validate one and only one schema (oneOf). {detail}"
            )));
            if let Some(b) = best {
                out.merge(b);
            }
        }
    }

    let all_of = s.branches("allOf");
    if !all_of.is_empty() {
        let mut valid = 0;
        for &branch in &all_of {
            let result = run(branch);
            valid += usize::from(result.ok());
            out.merge(result);
        }
        if valid != all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            out.push(composite(format!(
                "{quoted} must validate all the schemas (allOf){none}"
            )));
        }
    }

    if let Some(not) = s.get("not").filter(|v| v.is_object()) {
        if run(Schema::of(not)).ok() {
            out.push(composite(format!(
                "{quoted} must not validate the schema (not)"
            )));
        }
    }
    out.matched += 1;
    out
}

/// maxLength, minLength and pattern, stopping at the first failure.
/// Lengths count characters; a pattern the matcher cannot read passes.
fn check_string(s: Schema, text: &str, path: &str) -> Outcome {
    let len = text.chars().count() as i64;
    let fail =
        |code, message| Outcome::failed(Failure::new(path, code, Value::from(text), message));
    if let Some(max) = s.int("maxLength").filter(|&m| len > m) {
        return fail(
            Code::TooLong(max),
            format!("{path} in body should be at most {max} chars long"),
        );
    }
    if let Some(min) = s.int("minLength").filter(|&m| len < m) {
        return fail(
            Code::Other,
            format!("{path} in body should be at least {min} chars long"),
        );
    }
    let pattern = s.text("pattern");
    if !pattern.is_empty() && regex::is_match(pattern, text) == Some(false) {
        return fail(
            Code::Other,
            format!("{path} in body should match '{pattern}'"),
        );
    }
    Outcome::default()
}

fn check_format(format: &str, text: &str, path: &str) -> Outcome {
    if formats::valid(format, text) {
        return Outcome::default();
    }
    let message = format!(
        "{path} in body must be of type {format}: {}",
        gofmt::quote(text)
    );
    Outcome::failed(Failure::new(path, Code::Type, Value::from(text), message))
}

/// multipleOf, minimum and maximum. Integers compare against bounds cut to
/// integers, as kube-openapi does.
fn check_number(s: Schema, x: &Value, path: &str) -> Outcome {
    let mut out = Outcome::passed();
    let int = x.as_i64();
    let float = x.as_f64().unwrap_or(0.0);
    let fail = |message: String| Failure::new(path, Code::Other, x.clone(), message);
    if let Some(factor) = s.num("multipleOf") {
        let (positive, multiple, shown) = match int {
            Some(i) => {
                let f = factor as i64;
                (f > 0, f > 0 && i % f == 0, f.to_string())
            }
            None => {
                let m = if factor < 1.0 {
                    1.0 / factor * float
                } else {
                    float / factor
                };
                (factor > 0.0, is_json_integer(m), gofmt::float(factor))
            }
        };
        if !positive {
            let value = int.map_or(Value::from(factor), |_| Value::from(factor as i64));
            out.push(Failure::new(
                path,
                Code::Other,
                value,
                format!("factor MultipleOf declared for {path} must be positive: {shown}"),
            ));
        } else if !multiple {
            out.push(fail(format!(
                "{path} in body should be a multiple of {shown}"
            )));
        }
    }
    let bound = |key: &str, below: bool| -> Option<Failure> {
        let limit = s.num(key)?;
        let exclusive = s.flag(if below {
            "exclusiveMinimum"
        } else {
            "exclusiveMaximum"
        });
        let (order, shown) = match int {
            Some(i) => (i.cmp(&(limit as i64)), (limit as i64).to_string()),
            None => (float.partial_cmp(&limit)?, gofmt::float(limit)),
        };
        let beyond = if below { order.is_lt() } else { order.is_gt() };
        if !(beyond || (exclusive && order.is_eq())) {
            return None;
        }
        let relation = if below { "greater than" } else { "less than" };
        let or_equal = if exclusive { "" } else { " or equal to" };
        Some(fail(format!(
            "{path} in body should be {relation}{or_equal} {shown}"
        )))
    };
    out.failures.extend(bound("minimum", true));
    out.failures.extend(bound("maximum", false));
    out
}

fn check_array(s: Schema, items: &[Value], path: &str, depth: usize) -> Outcome {
    let mut out = Outcome::default();
    if let Some(sub) = s.items() {
        for (i, v) in items.iter().enumerate() {
            out.merge(check(sub, v, &format!("{path}[{i}]"), false, depth + 1));
        }
    }
    let len = items.len() as i64;
    if let Some(min) = s.int("minItems").filter(|&m| len < m) {
        let message = format!("{path} in body should have at least {min} items");
        out.push(Failure::new(path, Code::Other, Value::from(len), message));
    }
    if let Some(max) = s.int("maxItems").filter(|&m| len > m) {
        let message = format!("{path} in body should have at most {max} items");
        out.push(Failure::new(
            path,
            Code::TooMany(len, max),
            Value::from(len),
            message,
        ));
    }
    if s.flag("uniqueItems") {
        let mut seen = HashSet::new();
        if !items.iter().all(|v| seen.insert(deep_key(v))) {
            let message = format!("{path} in body shouldn't contain duplicates");
            out.push(Failure::new(path, Code::Other, Value::Null, message));
        }
    }
    out.matched += 1;
    out
}

fn check_enum(s: Schema, x: &Value, path: &str) -> Outcome {
    let Some(values) = s
        .get("enum")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
    else {
        return Outcome::default();
    };
    if values.iter().any(|e| enum_matches(x, e)) {
        return Outcome::default();
    }
    let message = format!(
        "{path} in body should be one of {}",
        gofmt::json(&Value::Array(values.clone()))
    );
    Outcome::failed(Failure::new(
        path,
        Code::Enum(values.clone()),
        x.clone(),
        message,
    ))
}

/// Go's comparison after converting the value to the enum value's type:
/// numbers convert between int and float (truncating), an integer converts
/// to the string of its rune, and a null never matches.
fn enum_matches(x: &Value, e: &Value) -> bool {
    match (x, e) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(n), Value::String(s)) => n.as_i64().is_some_and(|i| {
            let rune = i32::try_from(i).ok().and_then(|r| char::from_u32(r as u32));
            rune.unwrap_or('\u{FFFD}').to_string() == *s
        }),
        (Value::Number(n), Value::Number(m)) => match m.as_i64() {
            Some(m) => {
                n.as_i64()
                    .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64)
                    == m
            }
            None => n.as_f64() == m.as_f64(),
        },
        _ => x == e,
    }
}

fn check_object(
    s: Schema,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    depth: usize,
) -> Outcome {
    let mut out = Outcome::default();
    // Root metadata is validated elsewhere.
    let skipped = |k: &str| root && k == "metadata";
    let count = map.len() as i64;
    if let Some(min) = s.int("minProperties").filter(|&m| count < m) {
        let message = format!("{path} in body should have at least {min} properties");
        out.push(Failure::new(path, Code::Other, Value::from(count), message));
    }
    if let Some(max) = s.int("maxProperties").filter(|&m| count > m) {
        let message = format!("{path} in body should have at most {max} properties");
        out.push(Failure::new(
            path,
            Code::TooMany(count, max),
            Value::from(count),
            message,
        ));
    }
    let extra = map
        .iter()
        .filter(|(k, _)| s.property(k).is_none() && !skipped(k));
    match s.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            for (k, _) in extra {
                let message = format!("{path}.{k} in body is a forbidden property");
                out.push(Failure::new(
                    path,
                    Code::Other,
                    Value::from(k.as_str()),
                    message,
                ));
            }
        }
        Some(sub @ Value::Object(_)) => {
            for (k, v) in extra {
                out.merge(check(
                    Schema::of(sub),
                    v,
                    &format!("{path}.{k}"),
                    false,
                    depth + 1,
                ));
            }
        }
        _ => {}
    }
    for (name, sub) in s.properties() {
        if let Some(v) = map.get(name).filter(|_| !skipped(name)) {
            out.merge(check(sub, v, &child(path, name), false, depth + 1));
        }
    }
    for k in s.strings("required").filter(|k| !map.contains_key(*k)) {
        let name = format!("{path}.{k}");
        let message = format!("{name} in body is required");
        out.push(Failure::new(&name, Code::Required, Value::Null, message));
    }
    out
}

/// A key equal for values Go's reflect.DeepEqual finds equal.
fn deep_key(v: &Value) -> String {
    match v {
        Value::Null => "n".into(),
        Value::Bool(b) => format!("b{b}"),
        Value::Number(n) => match n.as_i64() {
            Some(i) => format!("i{i}"),
            None => format!("f{}", n.as_f64().unwrap_or(0.0).to_bits()),
        },
        Value::String(s) => format!("s{}:{s}", s.len()),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(deep_key).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(map) => {
            let mut entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{k}={}", k.len(), deep_key(v)))
                .collect();
            entries.sort();
            format!("{{{}}}", entries.join(","))
        }
    }
}

// ---- list types (upstream's ValidateListSetsAndMaps, run after the schema)

fn list_types_in_map(
    s: Schema,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    depth: usize,
    out: &mut Vec<Cause>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = || map.iter().filter(|(k, _)| !(root && *k == "metadata"));
    if let Some(Some(sub)) = s.additional() {
        for (k, v) in entries() {
            list_types(sub, v, &format!("{path}[{k}]"), depth + 1, out);
        }
    }
    for (k, v) in entries() {
        if let Some(sub) = s.property(k) {
            list_types(sub, v, &child(path, k), depth + 1, out);
        }
    }
}

fn list_types(s: Schema, x: &Value, path: &str, depth: usize, out: &mut Vec<Cause>) {
    match x {
        Value::Array(items) => list_types_in_array(s, items, path, depth, out),
        Value::Object(map) => list_types_in_map(s, map, path, false, depth, out),
        _ => {}
    }
}

fn list_types_in_array(s: Schema, items: &[Value], path: &str, depth: usize, out: &mut Vec<Cause>) {
    if depth > MAX_DEPTH {
        return;
    }
    match s.text("x-kubernetes-list-type") {
        "set" => {
            for i in repeats(items.iter().map(set_key)) {
                out.push(duplicate(&format!("{path}[{i}]"), &items[i]));
            }
        }
        "map" => list_map(s, items, path, out),
        _ => {}
    }
    if let Some(sub) = s.items() {
        for (i, v) in items.iter().enumerate() {
            list_types(sub, v, &format!("{path}[{i}]"), depth + 1, out);
        }
    }
}

/// Items of a list-type map must be objects (or null) with distinct keys.
fn list_map(s: Schema, items: &[Value], path: &str, out: &mut Vec<Cause>) {
    if let Some(i) = items.iter().position(|x| !x.is_null() && !x.is_object()) {
        out.push(Cause {
            kind: CauseKind::Invalid,
            field: format!("{path}[{i}]"),
            message: format!(
                "Invalid value: {}: must be an object for an array of list-type map",
                gofmt::bad_value(&items[i])
            ),
        });
        return;
    }
    let keys: Vec<&str> = s.strings("x-kubernetes-list-map-keys").collect();
    let key_of = |x: &Value| -> Value {
        let fields = keys
            .iter()
            .filter_map(|k| Some((k.to_string(), x.get(k)?.clone())));
        Value::Object(fields.collect())
    };
    let ids: Vec<String> = match keys[..] {
        // One key compares its value alone; a missing one is a value of its own.
        [key] => items
            .iter()
            .map(|x| x.get(key).map_or("u".into(), set_key))
            .collect(),
        _ => items.iter().map(|x| set_key(&key_of(x))).collect(),
    };
    for i in repeats(ids.into_iter()) {
        out.push(duplicate(&format!("{path}[{i}]"), &key_of(&items[i])));
    }
}

/// How upstream tells set items apart: scalars by Go equality, compound
/// values by their JSON.
fn set_key(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => format!("c{}", gofmt::json(v)),
        v => deep_key(v),
    }
}

/// Indices where a key shows up for the second time.
fn repeats(keys: impl Iterator<Item = String>) -> Vec<usize> {
    let mut counts = HashMap::new();
    keys.enumerate()
        .filter_map(|(i, k)| {
            let n = counts.entry(k).or_insert(0);
            *n += 1;
            (*n == 2).then_some(i)
        })
        .collect()
}

fn duplicate(field: &str, value: &Value) -> Cause {
    Cause {
        kind: CauseKind::Duplicate,
        field: field.to_string(),
        message: format!("Duplicate value: {}", gofmt::bad_value(value)),
    }
}

/// The string formats of kube-openapi's registry, checked as it does.
mod formats {
    use std::net::Ipv6Addr;

    /// Formats a CRD may use on strings (upstream names without dashes).
    const KNOWN: [&str; 24] = [
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
    ];

    pub fn known(format: &str) -> bool {
        !format.is_empty() && KNOWN.contains(&format.replace('-', "").as_str())
    }

    /// Whether `s` is valid in `format`. isbn and creditcard are not checked,
    /// email and uri only roughly.
    pub fn valid(format: &str, s: &str) -> bool {
        let re = |pattern: &str| super::regex::is_match(pattern, s) != Some(false);
        const BYTE: &str = r"(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])";
        match format.replace('-', "").as_str() {
            "datetime" => date_time(s),
            "date" => date(s),
            "byte" => base64(s),
            "uuid" => re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
            "uuid3" => {
                re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
            }
            "uuid4" => {
                re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
            }
            "uuid5" => {
                re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
            }
            "hexcolor" => re(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"),
            "rgbcolor" => re(&format!(r"^rgb\(\s*{BYTE}\s*,\s*{BYTE}\s*,\s*{BYTE}\s*\)$")),
            "ssn" => re(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$"),
            "ipv4" => ip(s) && s.contains('.'),
            "ipv6" => s.contains(':') && s.parse::<Ipv6Addr>().is_ok(),
            "cidr" => cidr(s),
            "hostname" => hostname(s),
            "mac" => mac(s),
            "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            "duration" => duration(s),
            "email" => email(s),
            "uri" => uri(s),
            _ => true,
        }
    }

    fn number(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
        s.get(range)
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    }

    /// Go's time.Parse with layout 2006-01-02, days checked against the month.
    fn date(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return false;
        }
        let (Some(y), Some(m), Some(d)) = (number(s, 0..4), number(s, 5..7), number(s, 8..10))
        else {
            return false;
        };
        let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&d)
    }

    /// strfmt's IsDateTime: a date, `t`, then hh:mm:ss, an optional fraction
    /// (any character then digits) and `z` or ±hh:mm, case-insensitively.
    fn date_time(s: &str) -> bool {
        let lower = s.to_lowercase();
        let mut parts = lower.split('t');
        let (Some(day), Some(time)) = (parts.next(), parts.next()) else {
            return false;
        };
        if s.len() < 4 || !date(day) || time.len() < 8 {
            return false;
        }
        let b = time.as_bytes();
        let (Some(h), Some(m), Some(sec)) =
            (number(time, 0..2), number(time, 3..5), number(time, 6..8))
        else {
            return false;
        };
        if b[2] != b':' || b[5] != b':' || h > 23 || m > 59 || sec > 59 {
            return false;
        }
        let rest = &time[8..];
        zone(rest) || {
            let mut chars = rest.chars();
            let after = match chars.next() {
                Some(c) if c != '\n' => chars.as_str(),
                _ => return false,
            };
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && zone(&after[digits..])
        }
    }

    fn zone(z: &str) -> bool {
        let b = z.as_bytes();
        z == "z"
            || (b.len() == 6
                && matches!(b[0], b'+' | b'-')
                && b[3] == b':'
                && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit()))
    }

    /// Standard padded base64, as govalidator's IsBase64 (which rejects "").
    fn base64(s: &str) -> bool {
        let b = s.as_bytes();
        let alpha = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
        if b.is_empty() || !b.len().is_multiple_of(4) {
            return false;
        }
        let (body, last) = b.split_at(b.len() - 4);
        body.iter().all(alpha)
            && match last {
                [x, y, b'=', b'='] => alpha(x) && alpha(y),
                [x, y, z, b'='] => alpha(x) && alpha(y) && alpha(z),
                l => l.iter().all(alpha),
            }
    }

    /// Go's ParseIP as Kubernetes calls it: IPv4 octets may have leading zeros.
    fn ip(s: &str) -> bool {
        if s.contains(':') {
            return s.parse::<Ipv6Addr>().is_ok();
        }
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 4
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u32>().is_ok_and(|n| n <= 255)
            })
    }

    fn cidr(s: &str) -> bool {
        let Some((addr, bits)) = s.split_once('/') else {
            return false;
        };
        let max = if addr.contains(':') { 128 } else { 32 };
        ip(addr)
            && !bits.is_empty()
            && bits.bytes().all(|b| b.is_ascii_digit())
            && bits.parse::<u32>().is_ok_and(|n| n <= max)
    }

    /// strfmt's hostname pattern: one label of letters, digits or symbols with
    /// at most one dash after its first character, or dot-separated labels
    /// ending in an alphabetic top-level label; at most 255 bytes, labels 63.
    fn hostname(s: &str) -> bool {
        let host_char = |c: char| {
            c.is_ascii_alphanumeric()
                || "$+<=>^`|~".contains(c)
                || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
        };
        let mut chars = s.chars();
        let single = chars.next().is_some_and(host_char) && {
            let rest = chars.as_str();
            let rest = rest.strip_prefix('-').unwrap_or(rest);
            rest.chars().count() <= 62 && rest.chars().all(host_char)
        };
        let dotted = s.rsplit_once('.').is_some_and(|(labels, top)| {
            let top_len = top.chars().count();
            (2..=63).contains(&top_len)
                && top
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic()))
                && labels.split('.').all(|label| {
                    let chars: Vec<char> = label.chars().collect();
                    (1..=63).contains(&chars.len())
                        && host_char(chars[0])
                        && host_char(chars[chars.len() - 1])
                        && chars.iter().all(|&c| c == '-' || host_char(c))
                })
        });
        (single || dotted) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
    }

    /// Go's net.ParseMAC: 6, 8 or 20 bytes as hex pairs split by `:` or `-`,
    /// or hex quads split by `.`.
    fn mac(s: &str) -> bool {
        let b = s.as_bytes();
        let hex = |part: &[u8]| part.iter().all(u8::is_ascii_hexdigit);
        let sizes = |n: usize| matches!(n, 6 | 8 | 20);
        if b.len() < 14 {
            return false;
        }
        if b[2] == b':' || b[2] == b'-' {
            let sep = b[2];
            (b.len() + 1).is_multiple_of(3)
                && sizes((b.len() + 1) / 3)
                && b.chunks(3)
                    .all(|c| hex(&c[..2]) && (c.len() == 2 || c[2] == sep))
        } else if b[4] == b'.' {
            (b.len() + 1).is_multiple_of(5)
                && sizes(2 * (b.len() + 1) / 5)
                && b.chunks(5)
                    .all(|c| hex(&c[..4]) && (c.len() == 4 || c[4] == b'.'))
        } else {
            false
        }
    }

    /// strfmt's ParseDuration: Go's durations, or any number followed by a
    /// known unit word somewhere in the text ("3 days", "10 seconds").
    fn duration(s: &str) -> bool {
        if matches!(s, "0" | "+0" | "-0") {
            return true;
        }
        const UNITS: [&[&str]; 8] = [
            &["ns", "nano"],
            &["us", "µs", "micro"],
            &["ms", "milli"],
            &["s", "sec"],
            &["m", "min"],
            &["h", "hr", "hour"],
            &["d", "day"],
            &["w", "wk", "week"],
        ];
        let known = |unit: &str| {
            unit == "μs" // Go's time.ParseDuration also takes the Greek mu
                || UNITS.iter().any(|names| {
                    names.contains(&unit) || names.last().is_some_and(|n| unit.starts_with(n))
                })
        };
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            while chars
                .get(i)
                .is_some_and(|c| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' '))
            {
                i += 1;
            }
            let start = i;
            while chars
                .get(i)
                .is_some_and(|&c| c.is_ascii_alphabetic() || c == 'µ' || c == 'μ')
            {
                i += 1;
            }
            let unit: String = chars[start..i].iter().collect::<String>().to_lowercase();
            if !unit.is_empty() && known(&unit) {
                return true;
            }
        }
        false
    }

    /// Roughly net/mail's ParseAddress: `local@domain`, maybe in `Name <...>`.
    fn email(s: &str) -> bool {
        let s = s.trim();
        let addr = match (s.rfind('<'), s.strip_suffix('>')) {
            (Some(i), Some(inner)) if i < inner.len() => &inner[i + 1..],
            _ => s,
        };
        addr.rsplit_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !addr.contains(char::is_whitespace)
        })
    }

    /// Roughly Go's url.ParseRequestURI: an absolute path or a scheme, no control bytes.
    fn uri(s: &str) -> bool {
        if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return false;
        }
        s == "*"
            || s.starts_with('/')
            || s.split_once(':').is_some_and(|(scheme, _)| {
                scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            })
    }
}

/// A small matcher for the RE2 syntax of Go's regexp, which kube-openapi
/// uses for `pattern`: literals, `.`, classes (`[a-z]`, `[^…]`, `\d\w\s`,
/// `[[:alpha:]]`), anchors `^ $ \A \z \b \B`, groups with `|`, quantifiers
/// `* + ? {n,m}`, and a leading `(?i)`. It runs as a Pike VM, so matching is
/// linear in the text. `None` means the pattern uses syntax it lacks.
mod regex {
    const MAX_PROGRAM: usize = 20_000;
    const MAX_WORK: usize = 50_000_000;

    pub fn is_match(pattern: &str, text: &str) -> Option<bool> {
        let (icase, body) = match pattern.strip_prefix("(?i)") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let mut parser = Parser {
            chars: body.chars().collect(),
            pos: 0,
        };
        let ast = parser.alternation(0)?;
        if parser.pos != parser.chars.len() {
            return None;
        }
        let mut prog = Vec::new();
        compile(&ast, &mut prog)?;
        prog.push(Inst::Match);
        let text: Vec<char> = text.chars().collect();
        if (text.len() + 1).saturating_mul(prog.len()) > MAX_WORK {
            return None;
        }
        let mut vm = Vm {
            prog: &prog,
            text: &text,
            icase,
            marks: vec![usize::MAX; prog.len()],
        };
        Some(vm.run())
    }

    enum Ast {
        Char(char),
        Any,
        Class(Class),
        Assert(Look),
        Cat(Vec<Ast>),
        Alt(Vec<Ast>),
        Repeat(Box<Ast>, u32, Option<u32>),
    }

    #[derive(Clone, Copy)]
    enum Look {
        Start,
        End,
        WordBoundary,
        NotWordBoundary,
    }

    #[derive(Clone)]
    struct Class {
        negated: bool,
        ranges: Vec<(char, char)>,
        /// Negated sets inside the class, such as `\D` in `[\D_]`.
        outside: Vec<Vec<(char, char)>>,
    }

    impl Class {
        fn plain(ranges: Vec<(char, char)>, negated: bool) -> Self {
            Class {
                negated,
                ranges,
                outside: vec![],
            }
        }

        fn holds(&self, c: char) -> bool {
            let within = |set: &[(char, char)]| set.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            within(&self.ranges) || self.outside.iter().any(|set| !within(set))
        }

        /// Case folding applies before negation, as in Go.
        fn matches(&self, c: char, icase: bool) -> bool {
            let hit = self.holds(c) || (icase && (self.holds(lower(c)) || self.holds(upper(c))));
            hit != self.negated
        }
    }

    fn lower(c: char) -> char {
        c.to_lowercase().next().unwrap_or(c)
    }

    fn upper(c: char) -> char {
        c.to_uppercase().next().unwrap_or(c)
    }

    /// `\d`, `\w`, `\s` as RE2 defines them (ASCII only).
    fn perl(c: char) -> Vec<(char, char)> {
        match c {
            'd' => vec![('0', '9')],
            'w' => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
            _ => vec![('\t', '\n'), ('\x0c', '\r'), (' ', ' ')],
        }
    }

    struct Parser {
        chars: Vec<char>,
        pos: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.chars.get(self.pos).copied()
        }

        fn next(&mut self) -> Option<char> {
            let c = self.peek()?;
            self.pos += 1;
            Some(c)
        }

        fn eat(&mut self, c: char) -> bool {
            let found = self.peek() == Some(c);
            self.pos += usize::from(found);
            found
        }

        fn alternation(&mut self, depth: usize) -> Option<Ast> {
            if depth > 50 {
                return None;
            }
            let mut alts = vec![self.concat(depth)?];
            while self.eat('|') {
                alts.push(self.concat(depth)?);
            }
            Some(if alts.len() == 1 {
                alts.remove(0)
            } else {
                Ast::Alt(alts)
            })
        }

        fn concat(&mut self, depth: usize) -> Option<Ast> {
            let mut items = Vec::new();
            while let Some(c) = self.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                let atom = self.atom(depth)?;
                items.push(self.quantified(atom)?);
            }
            Some(Ast::Cat(items))
        }

        fn atom(&mut self, depth: usize) -> Option<Ast> {
            Some(match self.next()? {
                '(' => {
                    if self.eat('?') {
                        // Non-capturing and named groups only; inline flags are not supported.
                        let named = (self.eat('P') && self.eat('<')) || self.eat('<');
                        if named {
                            while self.next()? != '>' {}
                        } else if !self.eat(':') {
                            return None;
                        }
                    }
                    let inner = self.alternation(depth + 1)?;
                    if !self.eat(')') {
                        return None;
                    }
                    inner
                }
                '[' => Ast::Class(self.class()?),
                '.' => Ast::Any,
                '^' => Ast::Assert(Look::Start),
                '$' => Ast::Assert(Look::End),
                '\\' => self.escape()?,
                '*' | '+' | '?' => return None,
                c => Ast::Char(c),
            })
        }

        fn quantified(&mut self, atom: Ast) -> Option<Ast> {
            let Some((min, max)) = self.quantifier() else {
                return Some(atom);
            };
            self.eat('?'); // lazy or greedy, the same texts match
            let save = self.pos;
            // Go rejects a repeated repetition and counts above 1000.
            if self.quantifier().is_some() || min > 1000 || max.is_some_and(|m| m > 1000 || m < min)
            {
                return None;
            }
            self.pos = save;
            Some(Ast::Repeat(Box::new(atom), min, max))
        }

        fn quantifier(&mut self) -> Option<(u32, Option<u32>)> {
            let bounds = match self.peek()? {
                '*' => (0, None),
                '+' => (1, None),
                '?' => (0, Some(1)),
                '{' => {
                    let save = self.pos;
                    self.pos += 1;
                    let bounds = self.bounds();
                    if bounds.is_none() {
                        // Not a repetition: a literal brace, as in Go.
                        self.pos = save;
                    }
                    return bounds;
                }
                _ => return None,
            };
            self.pos += 1;
            Some(bounds)
        }

        /// `n}`, `n,}` or `n,m}` after a `{`.
        fn bounds(&mut self) -> Option<(u32, Option<u32>)> {
            let min = self.number()?;
            let max = if !self.eat(',') {
                Some(min)
            } else if self.peek() == Some('}') {
                None
            } else {
                Some(self.number()?)
            };
            self.eat('}').then_some((min, max))
        }

        fn number(&mut self) -> Option<u32> {
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            self.chars[start..self.pos]
                .iter()
                .collect::<String>()
                .parse()
                .ok()
        }

        fn escape(&mut self) -> Option<Ast> {
            Some(match self.next()? {
                c @ ('d' | 'w' | 's') => Ast::Class(Class::plain(perl(c), false)),
                c @ ('D' | 'W' | 'S') => {
                    Ast::Class(Class::plain(perl(c.to_ascii_lowercase()), true))
                }
                'b' => Ast::Assert(Look::WordBoundary),
                'B' => Ast::Assert(Look::NotWordBoundary),
                'A' => Ast::Assert(Look::Start),
                'z' => Ast::Assert(Look::End),
                c => Ast::Char(self.escaped(c)?),
            })
        }

        /// The character an escape stands for: `\n`-style, `\x..`, or punctuation.
        fn escaped(&mut self, c: char) -> Option<char> {
            Some(match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'f' => '\x0c',
                'v' => '\x0b',
                'a' => '\x07',
                'x' => {
                    let digits: String = if self.eat('{') {
                        let mut digits = String::new();
                        loop {
                            match self.next()? {
                                '}' => break digits,
                                d => digits.push(d),
                            }
                        }
                    } else {
                        [self.next()?, self.next()?].iter().collect()
                    };
                    char::from_u32(u32::from_str_radix(&digits, 16).ok()?)?
                }
                c if c.is_ascii_punctuation() => c,
                _ => return None,
            })
        }

        /// A bracketed class, after its `[`.
        fn class(&mut self) -> Option<Class> {
            let mut class = Class::plain(vec![], self.eat('^'));
            let mut first = true;
            loop {
                let c = self.next()?;
                if c == ']' && !first {
                    return Some(class);
                }
                first = false;
                let lo = match c {
                    '[' if self.peek() == Some(':') => {
                        let (ranges, negated) = self.posix()?;
                        if negated {
                            class.outside.push(ranges);
                        } else {
                            class.ranges.extend(ranges);
                        }
                        continue;
                    }
                    '\\' => match self.next()? {
                        e @ ('d' | 'w' | 's') => {
                            class.ranges.extend(perl(e));
                            continue;
                        }
                        e @ ('D' | 'W' | 'S') => {
                            class.outside.push(perl(e.to_ascii_lowercase()));
                            continue;
                        }
                        e => self.escaped(e)?,
                    },
                    c => c,
                };
                let range = self.peek() == Some('-')
                    && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']');
                let hi = if range {
                    self.pos += 1;
                    match self.next()? {
                        '\\' => {
                            let e = self.next()?;
                            self.escaped(e)?
                        }
                        c => c,
                    }
                } else {
                    lo
                };
                if hi < lo {
                    return None;
                }
                class.ranges.push((lo, hi));
            }
        }

        /// `[:name:]` inside a class, after its `[`.
        fn posix(&mut self) -> Option<(Vec<(char, char)>, bool)> {
            self.pos += 1;
            let negated = self.eat('^');
            let start = self.pos;
            while self.next()? != ':' {}
            let name: String = self.chars[start..self.pos - 1].iter().collect();
            if !self.eat(']') {
                return None;
            }
            let ranges = match name.as_str() {
                "alnum" => vec![('0', '9'), ('A', 'Z'), ('a', 'z')],
                "alpha" => vec![('A', 'Z'), ('a', 'z')],
                "ascii" => vec![('\0', '\x7f')],
                "blank" => vec![('\t', '\t'), (' ', ' ')],
                "cntrl" => vec![('\0', '\x1f'), ('\x7f', '\x7f')],
                "digit" => vec![('0', '9')],
                "graph" => vec![('!', '~')],
                "lower" => vec![('a', 'z')],
                "print" => vec![(' ', '~')],
                "punct" => vec![('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
                "space" => vec![('\t', '\r'), (' ', ' ')],
                "upper" => vec![('A', 'Z')],
                "word" => perl('w'),
                "xdigit" => vec![('0', '9'), ('A', 'F'), ('a', 'f')],
                _ => return None,
            };
            Some((ranges, negated))
        }
    }

    enum Inst {
        Char(char),
        Any,
        Class(Class),
        Assert(Look),
        Split(usize, usize),
        Jmp(usize),
        Match,
    }

    fn compile(ast: &Ast, prog: &mut Vec<Inst>) -> Option<()> {
        if prog.len() > MAX_PROGRAM {
            return None;
        }
        match ast {
            Ast::Char(c) => prog.push(Inst::Char(*c)),
            Ast::Any => prog.push(Inst::Any),
            Ast::Class(c) => prog.push(Inst::Class(c.clone())),
            Ast::Assert(look) => prog.push(Inst::Assert(*look)),
            Ast::Cat(items) => {
                for item in items {
                    compile(item, prog)?;
                }
            }
            Ast::Alt(alts) => {
                let mut exits = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    if i + 1 == alts.len() {
                        compile(alt, prog)?;
                        break;
                    }
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(alt, prog)?;
                    exits.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    prog[split] = Inst::Split(split + 1, prog.len());
                }
                let end = prog.len();
                for exit in exits {
                    prog[exit] = Inst::Jmp(end);
                }
            }
            Ast::Repeat(inner, min, max) => {
                for _ in 0..*min {
                    compile(inner, prog)?;
                }
                let mut splits = Vec::new();
                match max {
                    None => {
                        let split = prog.len();
                        splits.push(split);
                        prog.push(Inst::Split(split + 1, 0));
                        compile(inner, prog)?;
                        prog.push(Inst::Jmp(split));
                    }
                    Some(max) => {
                        for _ in *min..*max {
                            splits.push(prog.len());
                            prog.push(Inst::Split(prog.len() + 1, 0));
                            compile(inner, prog)?;
                        }
                    }
                }
                let end = prog.len();
                for split in splits {
                    prog[split] = Inst::Split(split + 1, end);
                }
            }
        }
        Some(())
    }

    struct Vm<'a> {
        prog: &'a [Inst],
        text: &'a [char],
        icase: bool,
        /// The position whose thread list last took each instruction.
        marks: Vec<usize>,
    }

    impl Vm<'_> {
        fn run(&mut self) -> bool {
            let (mut current, mut next) = (Vec::new(), Vec::new());
            for pos in 0..=self.text.len() {
                // Unanchored search: a thread starts at every position.
                if self.add(&mut current, 0, pos) {
                    return true;
                }
                let Some(&c) = self.text.get(pos) else { break };
                next.clear();
                for &pc in &current {
                    let step = match &self.prog[pc] {
                        Inst::Char(x) => c == *x || (self.icase && lower(c) == lower(*x)),
                        Inst::Any => c != '\n',
                        Inst::Class(class) => class.matches(c, self.icase),
                        _ => false,
                    };
                    if step && self.add(&mut next, pc + 1, pos + 1) {
                        return true;
                    }
                }
                std::mem::swap(&mut current, &mut next);
            }
            false
        }

        /// Adds the thread at `pc` and all it reaches without reading; true at a match.
        fn add(&mut self, list: &mut Vec<usize>, pc: usize, pos: usize) -> bool {
            let mut stack = vec![pc];
            while let Some(pc) = stack.pop() {
                if self.marks[pc] == pos {
                    continue;
                }
                self.marks[pc] = pos;
                match &self.prog[pc] {
                    Inst::Match => return true,
                    Inst::Jmp(to) => stack.push(*to),
                    Inst::Split(a, b) => stack.extend([*b, *a]),
                    Inst::Assert(look) => {
                        if self.holds(*look, pos) {
                            stack.push(pc + 1);
                        }
                    }
                    _ => list.push(pc),
                }
            }
            false
        }

        fn holds(&self, look: Look, pos: usize) -> bool {
            let word = |i: usize| {
                self.text
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            };
            let boundary = (pos > 0 && word(pos - 1)) != word(pos);
            match look {
                Look::Start => pos == 0,
                Look::End => pos == self.text.len(),
                Look::WordBoundary => boundary,
                Look::NotWordBoundary => !boundary,
            }
        }
    }
}

/// Go's renderings of decoded JSON values, which upstream's messages carry.
mod gofmt {
    use serde_json::{Number, Value};

    /// strconv.Quote (`%q`).
    pub fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if c < ' ' || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                    if (c as u32) < 0x10000 {
                        out.push_str(&format!("\\u{:04x}", c as u32));
                    } else {
                        out.push_str(&format!("\\U{:08x}", c as u32));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// Mantissa and decimal exponent of the shortest form.
    fn scientific(f: f64) -> (String, i32) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        (mantissa.to_string(), exp.parse().unwrap_or(0))
    }

    /// `%v` of a float64: shortest digits, exponent form from 1e+06 or below 1e-04.
    pub fn float(f: f64) -> String {
        if !f.is_finite() {
            return if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "+Inf"
            } else {
                "-Inf"
            }
            .into();
        }
        let (mantissa, exp) = scientific(f);
        if f != 0.0 && !(-4..6).contains(&exp) {
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exp.abs())
        } else {
            format!("{f}")
        }
    }

    /// encoding/json's float: exponent form from 1e21 or below 1e-6.
    fn json_float(f: f64) -> String {
        let a = f.abs();
        if a != 0.0 && !(1e-6..1e21).contains(&a) {
            let (mantissa, exp) = scientific(f);
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{}", exp.abs())
        } else {
            format!("{f}")
        }
    }

    fn number(n: &Number, json: bool) -> String {
        match n.as_i64() {
            Some(i) => i.to_string(),
            None if json => json_float(n.as_f64().unwrap_or(0.0)),
            None => float(n.as_f64().unwrap_or(0.0)),
        }
    }

    fn json_string(s: &str) -> String {
        let out = serde_json::to_string(s).unwrap_or_default();
        // Go escapes HTML-sensitive characters too.
        out.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }

    fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }

    /// encoding/json of a decoded value: keys sorted, Go's number forms.
    pub fn json(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => number(n, true),
            Value::String(s) => json_string(s),
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(json).collect();
                format!("[{}]", inner.join(","))
            }
            Value::Object(map) => {
                let inner: Vec<String> = sorted(map)
                    .into_iter()
                    .map(|(k, v)| format!("{}:{}", json_string(k), json(v)))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
        }
    }

    /// `%#v` of a decoded value held in an interface{}.
    pub fn sharp(v: &Value) -> String {
        match v {
            Value::Null => "interface {}(nil)".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => number(n, false),
            Value::String(s) => quote(s),
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(sharp).collect();
                format!("[]interface {{}}{{{}}}", inner.join(", "))
            }
            Value::Object(map) => {
                let inner: Vec<String> = sorted(map)
                    .into_iter()
                    .map(|(k, v)| format!("{}:{}", quote(k), sharp(v)))
                    .collect();
                format!("map[string]interface {{}}{{{}}}", inner.join(", "))
            }
        }
    }

    /// How field.Error shows a bad value: strings quoted, numbers and bools
    /// plain, null as "null", objects and arrays in Go syntax.
    pub fn bad_value(v: &Value) -> String {
        match v {
            Value::Null => quote("null"),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => number(n, false),
            Value::String(s) => quote(s),
            Value::Array(_) | Value::Object(_) => sharp(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let s = json!({"type": "array", "minItems": 2, "uniqueItems": true, "items": {"type": "string"}});
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
        let f =
            |format: &str, value: Value| one(json!({"type": "string", "format": format}), value);
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
        let closed =
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false});
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
    fn go_renderings() {
        assert_eq!(gofmt::float(1.0), "1");
        assert_eq!(gofmt::float(0.5), "0.5");
        assert_eq!(gofmt::float(123456.0), "123456");
        assert_eq!(gofmt::float(1234567.0), "1.234567e+06");
        assert_eq!(gofmt::float(0.00001), "1e-05");
        assert_eq!(
            gofmt::json(&json!({"b": 1e21, "a": [0.0000001, 1.5, "<"]})),
            r#"{"a":[1e-7,1.5,"\u003c"],"b":1e+21}"#
        );
        assert_eq!(gofmt::quote("a\"b\\\n\u{1}é"), r#""a\"b\\\n\x01é""#);
        assert_eq!(
            gofmt::bad_value(&json!({"a": null, "b": [true, 2]})),
            r#"map[string]interface {}{"a":interface {}(nil), "b":[]interface {}{true, 2}}"#
        );
        assert_eq!(gofmt::bad_value(&Value::Null), r#""null""#);
    }
}
