//! The node agent (skiff's kubelet). `node` registers a node and keeps its
//! Lease and status current; `podstatus` writes the status a kubelet writes;
//! `simulate` is a runtime that runs nothing (KWOK-like) so tests and
//! benchmarks can have thousands of nodes on one machine.

pub mod node;
pub mod podstatus;
pub mod simulate;

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
