//! The events a StatefulSet gets for what is done to its pods and claims,
//! worded as upstream's recordPodEvent and recordClaimEvent: `create Pod
//! web-0 in StatefulSet web successful` (reason SuccessfulCreate), or a
//! Warning `... failed error: …` (FailedCreate).

use super::Ctx;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use std::fmt::Display;

fn record(
    ctx: &Ctx,
    set: &StatefulSet,
    verb: &str,
    done: String,
    failed: String,
    err: Option<&dyn Display>,
) {
    let action = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
    let (type_, reason, note) = match err {
        None => ("Normal", format!("Successful{action}"), done),
        Some(e) => (
            "Warning",
            format!("Failed{action}"),
            format!("{failed} failed error: {e}"),
        ),
    };
    ctx.recorder.record(set, type_, &reason, &action, note);
}

/// `verb` (create, delete, update) of pod `pod`, failed when `err`.
pub fn pod(ctx: &Ctx, set: &StatefulSet, verb: &str, pod: &str, err: Option<&dyn Display>) {
    let what = format!("{verb} Pod {pod} in StatefulSet {}", set.name_any());
    record(ctx, set, verb, format!("{what} successful"), what, err);
}

/// `verb` of claim `claim` for pod `pod`, failed when `err`.
pub fn claim(
    ctx: &Ctx,
    set: &StatefulSet,
    verb: &str,
    claim: &str,
    pod: &str,
    err: Option<&dyn Display>,
) {
    let set_name = set.name_any();
    record(
        ctx,
        set,
        verb,
        format!("{verb} Claim {claim} Pod {pod} in StatefulSet {set_name} success"),
        format!("{verb} Claim {claim} for Pod {pod} in StatefulSet {set_name}"),
        err,
    );
}
