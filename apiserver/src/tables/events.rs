//! Events, core/v1 and events.k8s.io: upstream `printEvent` (v1.33).
//!
//! kube-apiserver serves both groups from one storage and prints the internal
//! event, so events.k8s.io objects get the same columns; their fields are
//! read under their events.k8s.io names (`regarding`, `note`,
//! `deprecatedFirstTimestamp`, …).

use jiff::Timestamp;
use serde_json::Value;

use super::docs;
use super::fields::{at, int_at, name, opt_int, str_at};
use super::time::{since, ts_at};
use super::{col, wide, Column, META_NAME_DESC};

pub(super) static EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", docs::EVENT_LAST_TIMESTAMP),
    col("Type", "string", docs::EVENT_TYPE),
    col("Reason", "string", docs::EVENT_REASON),
    col("Object", "string", docs::EVENT_INVOLVED_OBJECT),
    wide("Subobject", "string", docs::OBJECT_REFERENCE_FIELD_PATH),
    wide("Source", "string", docs::EVENT_SOURCE),
    col("Message", "string", docs::EVENT_MESSAGE),
    wide("First Seen", "string", docs::EVENT_FIRST_TIMESTAMP),
    wide("Count", "string", docs::EVENT_COUNT),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: META_NAME_DESC,
        priority: 1,
    },
];

/// Field names of the internal event in one API group's JSON.
struct Names {
    involved: &'static str,
    message: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    source: &'static str,
}

const CORE: Names = Names {
    involved: "involvedObject",
    message: "message",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    source: "source",
};

const EVENTS_K8S_IO: Names = Names {
    involved: "regarding",
    message: "note",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    source: "deprecatedSource",
};

fn names_for(ev: &Value) -> &'static Names {
    let api_version = str_at(ev, &["apiVersion"]);
    let new_api = api_version.starts_with("events.k8s.io/")
        || (api_version.is_empty()
            && ev.get("involvedObject").is_none()
            && ev.get("regarding").is_some());
    if new_api {
        &EVENTS_K8S_IO
    } else {
        &CORE
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

pub(super) fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let n = names_for(ev);

    // Events from the new API have only eventTime; series carry the latest time.
    let first = match ts_at(ev, &[n.first]) {
        Some(t) => since(Some(t), now),
        None => since(ts_at(ev, &["eventTime"]), now),
    };
    let mut last = match ts_at(ev, &[n.last]) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(ev, &[n.count]);
    match at(ev, &["series"]).filter(|s| !s.is_null()) {
        Some(series) => {
            last = since(ts_at(series, &["lastObservedTime"]), now);
            count = opt_int(series, &["count"]).unwrap_or(0);
        }
        // Singleton events have no count in the new API.
        None if count == 0 => count = 1,
        None => {}
    }

    let involved = at(ev, &[n.involved]).unwrap_or(&Value::Null);
    let kind = str_at(involved, &["kind"]).to_lowercase();
    let object = match str_at(involved, &["name"]) {
        "" => kind,
        obj_name => format!("{kind}/{obj_name}"),
    };

    let component = first_non_empty(
        str_at(ev, &[n.source, "component"]),
        str_at(ev, &["reportingController"]),
    );
    let instance = first_non_empty(
        str_at(ev, &[n.source, "host"]),
        str_at(ev, &["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };

    row![
        last,
        str_at(ev, &["type"]),
        str_at(ev, &["reason"]),
        object,
        str_at(involved, &["fieldPath"]),
        source,
        str_at(ev, &[n.message]).trim(),
        first,
        count,
        name(ev),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn core_event() {
        let ev = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "message": "  Pulled image \n", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 4});
        assert_eq!(
            event_cells(&ev, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("Pulled image"),
                json!("60m"),
                json!(4),
                json!("web.17a")
            ]
        );
    }

    #[test]
    fn new_api_event_with_series() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"}, "regarding": {"kind": "Node"},
            "note": "Node is ready", "type": "Normal", "reason": "Ready",
            "reportingController": "kubelet", "reportingInstance": "n1",
            "eventTime": "2024-05-01T11:50:00.000000Z",
            "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:30.000000Z"}});
        let c = event_cells(&ev, now());
        assert_eq!(c[0], "30s");
        assert_eq!(c[3], "node");
        assert_eq!(c[5], "kubelet, n1");
        assert_eq!(c[6], "Node is ready");
        assert_eq!(c[7], "10m");
        assert_eq!(c[8], 7);
    }

    #[test]
    fn singleton_new_api_event_counts_one() {
        let ev = json!({"regarding": {"kind": "Pod", "name": "p"}, "note": "x",
            "eventTime": "2024-05-01T11:59:00.000000Z", "reportingController": "sched"});
        let c = event_cells(&ev, now());
        assert_eq!(c[0], "60s");
        assert_eq!(c[3], "pod/p");
        assert_eq!(c[5], "sched");
        assert_eq!(c[8], 1);
        let bare = event_cells(&json!({}), now());
        assert_eq!(bare[0], "<unknown>");
        assert_eq!(bare[7], "<unknown>");
    }
}
