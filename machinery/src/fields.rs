//! Field selectors (`?fieldSelector=status.phase=Running,spec.nodeName!=`): the
//! fields upstream supports per resource, and matching against an object.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Parse(String, String),
    #[error("field label not supported: {0}")]
    Unsupported(String),
}

impl Selector {
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in input.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(SelectorError::Parse(input.into(), term.into()));
            };
            requirements.push(Requirement {
                field: field.trim().to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(Selector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field is one the resource supports (upstream answers 400 otherwise).
    pub fn validate_for(&self, group: &str, plural: &str) -> Result<(), SelectorError> {
        self.validate_with(|f| supported(group, plural, f))
    }

    /// Like `validate_for`, for any resource: a custom resource's fields
    /// are metadata's and its CRD's selectable fields.
    pub fn validate_for_resource(
        &self,
        res: &crate::catalog::Resource,
    ) -> Result<(), SelectorError> {
        match res.custom {
            Some(custom) => {
                self.validate_with(|f| COMMON.contains(&f) || custom.selectable.contains(&f))
            }
            None => self.validate_for(res.group, res.plural),
        }
    }

    fn validate_with(&self, supported: impl Fn(&str) -> bool) -> Result<(), SelectorError> {
        match self.requirements.iter().find(|r| !supported(&r.field)) {
            Some(r) => Err(SelectorError::Unsupported(r.field.clone())),
            None => Ok(()),
        }
    }

    /// The value of `metadata.name=x` if the selector pins a single name.
    pub fn exact_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negate)
            .map(|r| r.value.as_str())
    }

    /// Matches against precomputed field values (`None` renders as "").
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|r| (get(&r.field).unwrap_or("") == r.value) != r.negate)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_value(obj, &r.field) == r.value) != r.negate)
    }
}

/// Fields every resource supports.
const COMMON: &[&str] = &["metadata.name", "metadata.namespace"];

fn supported(group: &str, plural: &str, field: &str) -> bool {
    COMMON.contains(&field) || extra_fields(group, plural).contains(&field)
}

/// Every field selectors of this resource may name.
pub fn supported_fields(group: &str, plural: &str) -> Vec<&'static str> {
    COMMON
        .iter()
        .chain(extra_fields(group, plural))
        .copied()
        .collect()
}

fn extra_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        _ => &[],
    }
}

/// The string value of a field as upstream's field sets render it: missing is "",
/// booleans and numbers in their usual text; `source` of events is its component.
pub fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        "source" => "source.component",
        "status.podIPs" => "status.podIP",
        other => other,
    };
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => {
                // Upstream renders unset booleans as "false".
                return if matches!(field, "spec.unschedulable" | "spec.hostNetwork") {
                    "false".into()
                } else {
                    String::new()
                };
            }
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching() {
        let pod =
            json!({"metadata":{"name":"p1","namespace":"default"},"status":{"phase":"Running"}});
        let s = Selector::parse("status.phase=Running,metadata.name!=p2").unwrap();
        assert!(s.validate_for("", "pods").is_ok());
        assert!(s.matches(&pod));
        assert!(Selector::parse("spec.nodeName=").unwrap().matches(&pod));
        assert!(!Selector::parse("spec.nodeName!=").unwrap().matches(&pod));
        assert_eq!(
            Selector::parse("spec.bogus=1")
                .unwrap()
                .validate_for("", "pods"),
            Err(SelectorError::Unsupported("spec.bogus".into()))
        );
        assert!(Selector::parse("spec.unschedulable=false")
            .unwrap()
            .matches(&json!({})));
        assert_eq!(
            Selector::parse("metadata.name=x").unwrap().exact_name(),
            Some("x")
        );
        assert!(Selector::parse("nonsense").is_err());
    }
}
