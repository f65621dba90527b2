//! `--config`: a KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1)
//! as upstream reads it: profiles by schedulerName, plugins enabled and
//! disabled per extension point (`"*"` disables all defaults), score
//! weights, pluginConfig args, percentageOfNodesToScore.

use crate::framework::Profile;
use crate::plugins::{self, DEFAULT_FILTERS, DEFAULT_SCORES};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
    pub leader_election: Option<LeaderElection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElection {
    pub leader_elect: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileConfig {
    pub scheduler_name: Option<String>,
    pub percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    #[serde(default)]
    pub multi_point: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
}

#[derive(Debug, Default, Deserialize)]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

#[derive(Debug, Deserialize)]
pub struct PluginRef {
    pub name: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

impl Configuration {
    pub fn parse(text: &str) -> Result<Configuration, String> {
        let cfg: Configuration = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if !cfg.kind.is_empty() && cfg.kind != "KubeSchedulerConfiguration" {
            return Err(format!(
                "kind {:?}: expected KubeSchedulerConfiguration",
                cfg.kind
            ));
        }
        if !cfg.api_version.is_empty()
            && !cfg.api_version.starts_with("kubescheduler.config.k8s.io/")
        {
            return Err(format!(
                "apiVersion {:?}: expected kubescheduler.config.k8s.io/v1",
                cfg.api_version
            ));
        }
        if let Some(p) = cfg.percentage_of_nodes_to_score.filter(|p| *p > 100) {
            return Err(format!(
                "percentageOfNodesToScore: Invalid value: {p}: not in valid range [0-100]"
            ));
        }
        Ok(cfg)
    }

    /// The profiles this configuration asks for (upstream's default profile when none).
    pub fn profiles(&self) -> Result<Vec<Profile>, String> {
        let defaults = [ProfileConfig::default()];
        let configs: &[ProfileConfig] = if self.profiles.is_empty() {
            &defaults
        } else {
            &self.profiles
        };
        configs
            .iter()
            .map(|p| p.build(self.percentage_of_nodes_to_score))
            .collect()
    }
}

/// Applies enabled/disabled lists to a default list of (name, weight).
fn resolve(defaults: &[(&str, i64)], sets: [&PluginSet; 2]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = defaults.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    for set in sets {
        if set.disabled.iter().any(|d| d.name == "*") {
            out.clear();
        }
        out.retain(|(n, _)| !set.disabled.iter().any(|d| &d.name == n));
        for e in &set.enabled {
            match out.iter_mut().find(|(n, _)| *n == e.name) {
                Some(existing) => existing.1 = e.weight.unwrap_or(existing.1),
                None => out.push((e.name.clone(), e.weight.unwrap_or(1))),
            }
        }
    }
    out
}

impl ProfileConfig {
    fn build(&self, global_percentage: Option<u32>) -> Result<Profile, String> {
        let args: HashMap<&str, &Value> = self
            .plugin_config
            .iter()
            .map(|c| (c.name.as_str(), &c.args))
            .collect();
        let filter_defaults: Vec<(&str, i64)> = DEFAULT_FILTERS.iter().map(|n| (*n, 0)).collect();
        let filters = resolve(
            &filter_defaults,
            [&self.plugins.multi_point, &self.plugins.filter],
        )
        .into_iter()
        .map(|(name, _)| plugins::build(&name, args.get(name.as_str()).copied()))
        .filter(|p| p.as_ref().map_or(true, |p| p.filters()))
        .collect::<Result<Vec<_>, _>>()?;
        let scorers = resolve(
            DEFAULT_SCORES,
            [&self.plugins.multi_point, &self.plugins.score],
        )
        .into_iter()
        .map(|(name, w)| Ok((plugins::build(&name, args.get(name.as_str()).copied())?, w)))
        .filter(|p: &Result<_, String>| p.as_ref().map_or(true, |(p, _)| p.scores()))
        .collect::<Result<Vec<_>, String>>()?;
        Ok(Profile {
            scheduler_name: self
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            filters,
            scorers,
            percentage_of_nodes_to_score: self
                .percentage_of_nodes_to_score
                .or(global_percentage)
                .filter(|p| *p > 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_disable_enable_and_weigh_plugins() {
        let cfg = Configuration::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    filter:
      disabled: [{name: NodePorts}]
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
"#,
        )
        .unwrap();
        let profiles = cfg.profiles().unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].scorers.len(), DEFAULT_SCORES.len());
        let packer = &profiles[1];
        assert_eq!(packer.scheduler_name, "packer");
        assert_eq!(packer.percentage_of_nodes_to_score, Some(30));
        assert!(!packer.filters.iter().any(|p| p.name() == "NodePorts"));
        assert_eq!(packer.filters.len(), DEFAULT_FILTERS.len() - 1);
        let names: Vec<_> = packer.scorers.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(names, [("NodeResourcesFit", 5)]);
    }

    #[test]
    fn unknown_plugins_are_errors() {
        let cfg = Configuration::parse("profiles: [{plugins: {score: {enabled: [{name: Nope}]}}}]")
            .unwrap();
        let err = cfg.profiles().err().expect("an unknown plugin is refused");
        assert!(err.contains("Nope"), "{err}");
    }
}
