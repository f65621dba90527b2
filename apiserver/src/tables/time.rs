//! Timestamps in objects (metav1.Time / MicroTime) and the ages printed from them.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::human_nanos;
use super::fields::at;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z), which `IsZero` treats as unset.
const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// Parses an RFC 3339 timestamp; null, absent, unparsable and Go's zero time
/// are all "unset" (`None`), as `metav1.Time.IsZero` sees them.
pub(super) fn parse(v: Option<&Value>) -> Option<Timestamp> {
    let ts: Timestamp = v?.as_str()?.parse().ok()?;
    (ts.as_second() != GO_ZERO_SECONDS || ts.subsec_nanosecond() != 0).then_some(ts)
}

/// The timestamp at `path` of `obj`.
pub(super) fn ts_at(obj: &Value, path: &[&str]) -> Option<Timestamp> {
    parse(at(obj, path))
}

/// Signed nanoseconds from `from` to `to`, saturating like Go's `time.Sub`.
pub(super) fn nanos_between(from: Timestamp, to: Timestamp) -> i64 {
    let n = to.duration_since(from).as_nanos();
    n.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Upstream `translateTimestampSince`: "<unknown>" when unset, else the
/// human duration from the timestamp to `now` ("<invalid>" if well in the future).
pub(super) fn since(ts: Option<Timestamp>, now: Timestamp) -> String {
    match ts {
        None => "<unknown>".into(),
        Some(t) => human_nanos(nanos_between(t, now)),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(super) fn age(obj: &Value, now: Timestamp) -> String {
    since(ts_at(obj, &["metadata", "creationTimestamp"]), now)
}

/// `metadata.creationTimestamp` as the generic table prints it: RFC 3339 in
/// UTC, and Go's zero time when unset.
pub(super) fn created_at(obj: &Value) -> String {
    match ts_at(obj, &["metadata", "creationTimestamp"]) {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn ages() {
        let obj = json!({"metadata": {"creationTimestamp": "2024-05-01T11:57:00Z"}});
        assert_eq!(age(&obj, now()), "3m");
        assert_eq!(age(&json!({"metadata": {}}), now()), "<unknown>");
        let future = json!({"metadata": {"creationTimestamp": "2024-05-01T12:00:05Z"}});
        assert_eq!(age(&future, now()), "<invalid>");
        let zero = json!({"metadata": {"creationTimestamp": "0001-01-01T00:00:00Z"}});
        assert_eq!(age(&zero, now()), "<unknown>");
    }

    #[test]
    fn micro_time_and_offsets_parse() {
        let v = json!("2024-05-01T11:59:58.123456Z");
        assert_eq!(since(parse(Some(&v)), now()), "1s");
        let v = json!("2024-05-01T13:00:00+02:00");
        assert_eq!(since(parse(Some(&v)), now()), "60m");
    }

    #[test]
    fn created_at_is_utc_rfc3339() {
        let obj = json!({"metadata": {"creationTimestamp": "2024-05-01T13:00:00.5+02:00"}});
        assert_eq!(created_at(&obj), "2024-05-01T11:00:00Z");
        assert_eq!(created_at(&json!({})), "0001-01-01T00:00:00Z");
    }
}
