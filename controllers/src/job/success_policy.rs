//! `spec.successPolicy` (Indexed Jobs): the Job has succeeded once any rule
//! is met, after upstream's `matchSuccessPolicy`. A rule with
//! `succeededIndexes` is met when all those indexes succeeded, or (with
//! `succeededCount`) when that many of them did; a rule with only
//! `succeededCount` when that many indexes succeeded at all.

use super::indexes::Indexes;
use k8s_openapi::api::batch::v1::SuccessPolicy;

/// The message of the first rule met ("Matched rules at index N").
pub fn matched(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Indexes,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    policy.rules.iter().enumerate().find_map(|(n, rule)| {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(wanted), count) => {
                let wanted = Indexes::parse(wanted, completions);
                // A rule whose indexes cannot be read never matches.
                if wanted.is_empty() {
                    return None;
                }
                let done = wanted.overlap(succeeded);
                done == wanted.total() || count.is_some_and(|c| done >= c)
            }
            (None, Some(count)) => succeeded.total() >= count,
            (None, None) => false,
        };
        met.then(|| format!("Matched rules at index {n}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: serde_json::Value) -> SuccessPolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn rules_in_order() {
        let p = policy(json!([
            {"succeededIndexes": "0,2-4"},
            {"succeededIndexes": "5-9", "succeededCount": 2},
            {"succeededCount": 3}
        ]));
        let m = |s: &str| matched(Some(&p), 10, &Indexes::parse(s, 10));
        assert_eq!(m(""), None);
        assert_eq!(m("0,2"), None);
        assert_eq!(m("0-4").as_deref(), Some("Matched rules at index 0"));
        assert_eq!(m("6,9").as_deref(), Some("Matched rules at index 1"));
        assert_eq!(m("1,6,7").as_deref(), Some("Matched rules at index 1"));
        assert_eq!(m("1,2,6").as_deref(), Some("Matched rules at index 2"));
        assert_eq!(matched(None, 10, &Indexes::parse("0-9", 10)), None);
    }
}
