//! networking.k8s.io and discovery.k8s.io kinds: upstream `printIngress`,
//! `printIngressClass`, `printNetworkPolicy`, `printEndpointSlice` (v1.33).

use jiff::Timestamp;
use serde_json::Value;

use super::core::load_balancer_ingress;
use super::docs;
use super::fields::{arr_at, at, name, opt_int, opt_str, str_at};
use super::labels::format_label_selector;
use super::time::age;
use super::{col, Column, AGE, NAME};

pub(super) static INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

/// Up to three rule hosts, "*" when none has a host (`formatHosts`).
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", rules.len() - MAX)
    } else {
        ret
    }
}

pub(super) fn ingress_cells(ing: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if arr_at(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    row![
        name(ing),
        opt_str(ing, &["spec", "ingressClassName"]).unwrap_or("<none>"),
        format_hosts(arr_at(ing, &["spec", "rules"])),
        load_balancer_ingress(at(ing, &["status", "loadBalancer"])),
        ports,
        age(ing, now),
    ]
}

pub(super) static INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

pub(super) fn ingress_class_cells(ic: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match at(ic, &["spec", "parameters"]).filter(|p| !p.is_null()) {
        None => "<none>".to_string(),
        Some(p) => {
            let kind = match opt_str(p, &["apiGroup"]) {
                Some(group) => format!("{}.{group}", str_at(p, &["kind"])),
                None => str_at(p, &["kind"]).to_string(),
            };
            format!("{kind}/{}", str_at(p, &["name"]))
        }
    };
    row![
        name(ic),
        str_at(ic, &["spec", "controller"]),
        parameters,
        age(ic, now)
    ]
}

pub(super) static NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col("Pod-Selector", "string", docs::NETPOL_POD_SELECTOR),
    AGE,
];

pub(super) fn network_policy_cells(np: &Value, now: Timestamp) -> Vec<Value> {
    // The pod selector is a value, never nil: absent means "select all".
    let selector = at(np, &["spec", "podSelector"])
        .filter(|s| !s.is_null())
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    row![
        name(np),
        format_label_selector(Some(&selector)),
        age(np, now)
    ]
}

pub(super) static ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", "string", docs::ENDPOINT_SLICE_ADDRESS_TYPE),
    col("Ports", "string", docs::ENDPOINT_SLICE_PORTS),
    col("Endpoints", "string", docs::ENDPOINT_SLICE_ENDPOINTS),
    AGE,
];

/// First three items, then " + N more..."; "<unset>" when empty.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        return format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX);
    }
    if items.is_empty() {
        "<unset>".into()
    } else {
        items.join(",")
    }
}

pub(super) fn endpoint_slice_cells(es: &Value, now: Timestamp) -> Vec<Value> {
    let ports = arr_at(es, &["ports"])
        .iter()
        .map(|p| match opt_int(p, &["port"]) {
            Some(n) => n.to_string(),
            None => opt_str(p, &["name"]).unwrap_or("*").to_string(),
        })
        .collect();
    let endpoints = arr_at(es, &["endpoints"])
        .iter()
        .flat_map(|e| arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    row![
        name(es),
        str_at(es, &["addressType"]),
        list_with_more(ports),
        list_with_more(endpoints),
        age(es, now),
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
    fn ingress() {
        let ing = json!({"metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example"]}],
                     "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
        assert_eq!(
            ingress_cells(&ing, now())[1..5],
            [
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("192.0.2.1"),
                json!("80, 443")
            ]
        );
        let bare = ingress_cells(&json!({"spec": {"rules": [{}]}}), now());
        assert_eq!(
            bare[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn ingress_class_and_policy() {
        let ic = json!({"spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}});
        assert_eq!(
            ingress_class_cells(&ic, now())[2],
            "Params.k8s.example.com/p"
        );
        assert_eq!(
            network_policy_cells(&json!({"spec": {}}), now())[1],
            "<none>"
        );
        let np = json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(network_policy_cells(&np, now())[1], "role=db");
    }

    #[test]
    fn endpoint_slice() {
        let es = json!({"addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3", "10.0.0.4"]}]});
        let c = endpoint_slice_cells(&es, now());
        assert_eq!(
            c[1..4],
            [
                json!("IPv4"),
                json!("80,dns,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        let empty = endpoint_slice_cells(&json!({}), now());
        assert_eq!(empty[2..4], [json!("<unset>"), json!("<unset>")]);
    }
}
