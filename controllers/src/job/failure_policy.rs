//! Matching a failed pod against the Job's podFailurePolicy, rule by rule
//! as upstream's `matchPodFailurePolicy`: the first rule whose exit codes
//! (of a non-zero terminated container) or pod conditions match decides.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use kube::ResourceExt;
use skiff_machinery::client::cachedpod::{CachedPod, ContainerStatus, PodCondition};

/// What a failed pod means for its Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// FailJob: the Job fails with this message.
    pub fail_job: Option<String>,
    /// Whether the failure counts towards backoffLimit(PerIndex).
    pub count: bool,
    /// The matching rule's action, if a rule matched.
    pub action: Option<String>,
}

pub fn evaluate(policy: &PodFailurePolicy, pod: &CachedPod) -> Verdict {
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            exit_code_match(pod, req).map(|c| {
                let code = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map_or(0, |t| t.exit_code);
                format!(
                    "Container {} for pod {}/{} failed with exit code {code} matching {} rule at index {index}",
                    c.name,
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            condition_match(pod, patterns).map(|c| {
                format!(
                    "Pod {}/{} has condition {} matching {} rule at index {index}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    c.type_,
                    rule.action
                )
            })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        let action = Some(rule.action.clone());
        return match rule.action.as_str() {
            "Ignore" => Verdict {
                fail_job: None,
                count: false,
                action,
            },
            "FailJob" => Verdict {
                fail_job: Some(message),
                count: true,
                action,
            },
            // Count, and FailIndex (which the per-index accounting reads).
            _ => Verdict {
                fail_job: None,
                count: true,
                action,
            },
        };
    }
    Verdict {
        fail_job: None,
        count: true,
        action: None,
    }
}

/// The first container (init containers first) that terminated with a
/// non-zero code the requirement selects.
fn exit_code_match<'a>(
    pod: &'a CachedPod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| {
            let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                return false;
            };
            if t.exit_code == 0 {
                return false;
            }
            if req.container_name.as_ref().is_some_and(|n| *n != c.name) {
                return false;
            }
            let listed = req.values.contains(&t.exit_code);
            match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            }
        })
}

fn condition_match<'a>(
    pod: &'a CachedPod,
    patterns: &[k8s_openapi::api::batch::v1::PodFailurePolicyOnPodConditionsPattern],
) -> Option<&'a PodCondition> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    patterns.iter().find_map(|p| {
        conditions
            .iter()
            .find(|c| c.type_ == p.type_ && c.status == p.status)
    })
}
