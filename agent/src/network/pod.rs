//! What the network needs to know of a pod: its identity (for `CNI_ARGS`,
//! the cache key and the plugins' per-container state) and its host ports
//! (the `portMappings` capability).

use serde::{Deserialize, Serialize};

/// One `hostPort` of one of the pod's containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (any case; the plugins get it lower-cased).
    pub protocol: String,
    /// The host address to bind, empty for all.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// The pod a network attachment belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkRef {
    /// The sandbox's id: the key of the attachment for every plugin.
    pub container_id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub port_mappings: Vec<PortMapping>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodRefError {
    #[error("container id {0:?} is not a plain name ([A-Za-z0-9_.-], not starting with '.')")]
    ContainerId(String),
    #[error("{field} {value:?} cannot be passed in CNI_ARGS (contains ';' or '=')")]
    Arg { field: &'static str, value: String },
}

impl PodNetworkRef {
    /// Rejects what would escape the cache directory or corrupt `CNI_ARGS`.
    pub fn validate(&self) -> Result<(), PodRefError> {
        let id = &self.container_id;
        let plain = !id.is_empty()
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !plain {
            return Err(PodRefError::ContainerId(id.clone()));
        }
        for (field, value) in [
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("uid", &self.uid),
        ] {
            if value.contains([';', '=']) {
                return Err(PodRefError::Arg {
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }

    /// `CNI_ARGS` as the kubelet passes them; `IgnoreUnknown` keeps plugins
    /// that know none of these keys from refusing them.
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.container_id, self.uid
        )
    }
}

/// The port mappings as the `portMappings` capability carries them.
pub(crate) fn port_mappings_json(ports: &[PortMapping]) -> serde_json::Value {
    let ports: Vec<PortMapping> = ports
        .iter()
        .map(|p| PortMapping {
            protocol: p.protocol.to_ascii_lowercase(),
            ..p.clone()
        })
        .collect();
    serde_json::to_value(ports).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodNetworkRef {
        PodNetworkRef {
            container_id: "0b6f-uid".into(),
            namespace: "default".into(),
            name: "web-1".into(),
            uid: "0b6f-uid".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "TCP".into(),
                host_ip: String::new(),
            }],
        }
    }

    #[test]
    fn cni_args_as_the_kubelet_writes_them() {
        assert_eq!(
            pod().cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;\
             K8S_POD_INFRA_CONTAINER_ID=0b6f-uid;K8S_POD_UID=0b6f-uid"
        );
    }

    #[test]
    fn validation() {
        assert!(pod().validate().is_ok());
        for id in ["", "../x", "a/b", ".hidden", "a b"] {
            let p = PodNetworkRef {
                container_id: id.into(),
                ..pod()
            };
            assert!(p.validate().is_err(), "{id}");
        }
        let p = PodNetworkRef {
            name: "a;K8S_POD_UID=x".into(),
            ..pod()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn port_mappings_are_lower_cased_and_named_as_portmap_wants() {
        let v = port_mappings_json(&pod().port_mappings);
        assert_eq!(
            v,
            serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
        );
    }
}
