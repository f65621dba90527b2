//! kube-openapi's SchemaValidator over a custom resource: its chain of
//! validators (type, combinators, string, format, number, array, enum,
//! object) and its errors turned into upstream's field causes.

use super::{child, formats, regex, Schema, MAX_DEPTH};
use crate::error::{Cause, CauseKind};
use serde_json::{Map, Value};
use skiff_machinery::gofmt;
use std::collections::HashSet;

/// One kube-openapi error, before upstream turns it into a field cause.
pub(super) struct Failure {
    /// kube-openapi's path: `spec.x`, `.spec` for required at the root, `` for the root.
    name: String,
    code: Code,
    value: Value,
    pub(super) message: String,
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
    pub(super) fn into_cause(self) -> Cause {
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
pub(super) struct Outcome {
    pub(super) failures: Vec<Failure>,
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
pub(super) fn check(s: Schema, x: &Value, path: &str, root: bool, depth: usize) -> Outcome {
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
pub(super) fn deep_key(v: &Value) -> String {
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
