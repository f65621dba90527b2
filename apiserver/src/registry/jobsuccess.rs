//! Validation of a Job's `spec.successPolicy`, worded as upstream's: only
//! for Indexed Jobs, 1 to 20 rules, each with `succeededIndexes` (ordered,
//! non-overlapping intervals below `completions`) and/or `succeededCount`
//! (at most `completions`, and at most the number of those indexes);
//! immutable once set.

use crate::error::{Cause, CauseKind};
use serde_json::{json, Value};

const MAX_RULES: usize = 20;
const MAX_INDEXES_LEN: usize = 64 * 1024;

pub fn validate(spec: &Value, old: Option<&Value>, c: &mut Vec<Cause>) {
    let policy = spec.get("successPolicy").filter(|p| !p.is_null());
    if let Some(old) = old {
        let before = old.pointer("/spec/successPolicy").filter(|p| !p.is_null());
        if before != policy {
            c.push(Cause::invalid(
                "spec.successPolicy",
                policy.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
    let Some(policy) = policy else { return };
    if spec.get("completionMode").and_then(Value::as_str) != Some("Indexed") {
        c.push(Cause::invalid(
            "spec.successPolicy",
            policy,
            "requires indexed completion mode",
        ));
        return;
    }
    let completions = spec.get("completions").and_then(Value::as_i64).unwrap_or(0);
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if rules.is_empty() {
        c.push(Cause {
            message: "Required value: at least one rules must be specified when the successPolicy is specified".into(),
            ..Cause::required("spec.successPolicy.rules")
        });
    }
    if rules.len() > MAX_RULES {
        c.push(Cause {
            kind: CauseKind::TooMany,
            field: "spec.successPolicy.rules".into(),
            message: format!(
                "Too many: {}: must have at most {MAX_RULES} items",
                rules.len()
            ),
        });
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.successPolicy.rules[{i}]");
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count = rule.get("succeededCount").and_then(Value::as_i64);
        if indexes.is_none() && count.is_none() {
            c.push(Cause {
                message: "Required value: at least one of succeededCount or succeededIndexes must be specified".into(),
                ..Cause::required(path.clone())
            });
        }
        let mut how_many = None;
        if let Some(text) = indexes {
            let field = format!("{path}.succeededIndexes");
            if text.len() > MAX_INDEXES_LEN {
                c.push(Cause {
                    kind: CauseKind::TooLong,
                    field: field.clone(),
                    message: format!("Too long: must have at most {MAX_INDEXES_LEN} bytes"),
                });
            }
            match count_indexes(text, completions) {
                Ok(n) => how_many = Some(n),
                Err(e) => c.push(Cause::invalid(
                    field,
                    &json!(text),
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(n) = count {
            let field = format!("{path}.succeededCount");
            if n < 0 {
                c.push(Cause::invalid(
                    field,
                    &json!(n),
                    "must be greater than or equal to 0",
                ));
            } else if n > completions {
                c.push(Cause::invalid(
                    field,
                    &json!(n),
                    format!(
                        "must be less than or equal to {completions} (the number of specified completions)"
                    ),
                ));
            } else if let Some(k) = how_many.filter(|k| n > *k) {
                c.push(Cause::invalid(
                    field,
                    &json!(n),
                    format!(
                        "must be less than or equal to {k} (the number of indexes in the specified succeededIndexes field)"
                    ),
                ));
            }
        }
    }
}

/// How many indexes `0,2-4`-style text names, each below `completions`, in
/// increasing order without overlaps.
fn count_indexes(text: &str, completions: i64) -> Result<i64, String> {
    let mut total = 0;
    let mut last: Option<i64> = None;
    for part in text.split(',') {
        let (first, end) = match part.split_once('-') {
            Some((a, b)) => (parse_index(a)?, parse_index(b)?),
            None => {
                let n = parse_index(part)?;
                (n, n)
            }
        };
        if end < first {
            return Err(format!(
                "non-increasing order, previous: {first}, current: {end}"
            ));
        }
        if end >= completions {
            return Err(format!(
                "too large: {end}, must be less than completions: {completions}"
            ));
        }
        if let Some(prev) = last.filter(|p| first <= *p) {
            return Err(format!(
                "overlapping intervals, previous: {prev}, current: {first}"
            ));
        }
        last = Some(end);
        total += end - first + 1;
    }
    Ok(total)
}

fn parse_index(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("cannot parse integer index: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(spec: Value) -> Vec<String> {
        let mut c = Vec::new();
        validate(&spec, None, &mut c);
        c.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn upstream_rules() {
        let indexed = |rules: Value| json!({"completionMode": "Indexed", "completions": 5, "successPolicy": {"rules": rules}});
        assert!(causes(indexed(
            json!([{"succeededIndexes": "0,2-4", "succeededCount": 3}])
        ))
        .is_empty());
        assert!(causes(
            json!({"completions": 5, "successPolicy": {"rules": [{"succeededCount": 1}]}})
        )[0]
        .contains("requires indexed completion mode"));
        assert!(causes(indexed(json!([])))[0].contains("at least one rules"));
        assert!(causes(indexed(json!([{}])))[0].contains("at least one of succeededCount"));
        assert!(causes(indexed(json!([{"succeededIndexes": "3-1"}])))[0].contains("non-increasing"));
        assert!(causes(indexed(json!([{"succeededIndexes": "0-2,2"}])))[0].contains("overlapping"));
        assert!(causes(indexed(json!([{"succeededIndexes": "5"}])))[0].contains("too large"));
        assert!(causes(indexed(json!([{"succeededCount": 6}])))[0]
            .contains("number of specified completions"));
        assert!(causes(indexed(
            json!([{"succeededIndexes": "0", "succeededCount": 2}])
        ))[0]
            .contains("number of indexes"));
        let many: Vec<Value> = (0..21).map(|_| json!({"succeededCount": 1})).collect();
        assert!(causes(indexed(json!(many)))[0].contains("Too many"));
        let mut c = Vec::new();
        let old = json!({"spec": indexed(json!([{"succeededCount": 1}]))});
        validate(&indexed(json!([{"succeededCount": 2}])), Some(&old), &mut c);
        assert!(c[0].message.contains("field is immutable"));
    }
}
