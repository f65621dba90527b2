//! The node-level checks that need no precomputation: NodeUnschedulable
//! (cordoned nodes), NodeName (a pod asking for one node) and NodePorts
//! (host ports already taken).

use crate::framework::{relevant, Cycle, Plugin, Rejection, Relevance};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::tolerates;

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filters(&self) -> bool {
        true
    }
    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        // A cordoned node takes pods that tolerate its unschedulable taint.
        if node.unschedulable
            && !cx
                .pod
                .tolerations()
                .iter()
                .any(|t| tolerates(t, "node.kubernetes.io/unschedulable", "", "NoSchedule"))
        {
            return Err(Rejection::unresolvable("node(s) were unschedulable"));
        }
        Ok(())
    }
}

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn filters(&self) -> bool {
        true
    }
    fn pre_filter(&self, cx: &mut Cycle) -> Result<Relevance, Rejection> {
        Ok(relevant(cx.pod.node_name().is_some()))
    }
    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        match cx.pod.node_name() {
            Some(wanted) if wanted != node.name => Err(Rejection::unresolvable(
                "node(s) didn't match the requested node name",
            )),
            _ => Ok(()),
        }
    }
}

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn filters(&self) -> bool {
        true
    }
    fn pre_filter(&self, cx: &mut Cycle) -> Result<Relevance, Rejection> {
        Ok(relevant(!cx.pod.host_ports.is_empty()))
    }
    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        let clash = cx
            .pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if clash {
            return Err(Rejection::unschedulable(
                "node(s) didn't have free ports for the requested pod ports",
            ));
        }
        Ok(())
    }
}
