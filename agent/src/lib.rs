//! The node agent (skiff's kubelet). `node` registers a node and keeps its
//! Lease and status current; `podstatus` writes the status a kubelet writes;
//! `simulate` is a runtime that runs nothing (KWOK-like) so tests and
//! benchmarks can have thousands of nodes on one machine. `kubelet` is the
//! real agent: pod workers over `runtime` (sandboxes, runc through a shim,
//! CRI logs), `images` (the node's image store) and `network` (pods on the
//! pod network through CNI, routes between nodes); `stream` the
//! HTTPS server behind `kubectl logs/exec/attach/cp/port-forward`; `stats`
//! the node's and pods' cpu and memory it serves for `kubectl top`.

pub mod images;
pub mod join;
pub mod kubelet;
pub mod network;
pub mod node;
pub mod podstatus;
pub mod runtime;
pub mod simulate;
pub mod stats;
pub mod stream;

/// Time as the API writes it (RFC 3339, seconds).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Time with microseconds, as Leases carry it.
pub fn now_micro() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}
