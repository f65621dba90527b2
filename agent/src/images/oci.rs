//! The OCI (and Docker v2) image JSON the store reads and writes: manifests,
//! indexes, image configs, `docker save`'s manifest.json, and the choice of
//! this machine's manifest from an index. Hand-written serde structs of just
//! the fields used; unknown fields are ignored, so newer formats still load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// containerd's annotation with the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// OCI's annotation: a tag, though many tools put a full name there.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest or an index: told apart by `manifests` vs `config`,
/// since the mediaType field is optional in both.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

/// An image manifest as the store writes it for `docker save` archives.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The layout's index.json.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The image config blob: what to run, and the layers' diff IDs.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

/// Null and missing are the same for every field here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One image of `docker save`'s manifest.json.
#[derive(Debug, Clone, Deserialize)]
pub struct DockerSaveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// This machine's platform in OCI terms (Go's GOARCH names).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: variant.map(str::to_string),
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `want` from an index's entries, among those
/// `available` (an archive often carries one platform of a multi-platform
/// index). An exact variant beats a missing one; entries without a platform
/// count only when nothing else does. Attestations (unknown/unknown) never.
pub fn select_manifest<'a>(
    entries: &'a [Descriptor],
    want: &Platform,
    available: impl Fn(&Descriptor) -> bool,
) -> Option<&'a Descriptor> {
    let score = |d: &Descriptor| -> Option<u8> {
        if d.media_type == MEDIA_OCI_INDEX || d.media_type == MEDIA_DOCKER_LIST {
            return None;
        }
        match &d.platform {
            None => Some(1),
            Some(p) if p.os == want.os && p.architecture == want.architecture => {
                match (&p.variant, &want.variant) {
                    (Some(a), Some(b)) if a == b => Some(4),
                    (None, _) => Some(3),
                    // arm64 has one variant in practice; other arm variants differ.
                    (Some(_), _) if want.architecture == "arm64" => Some(2),
                    _ => None,
                }
            }
            Some(_) => None,
        }
    };
    entries
        .iter()
        .filter(|d| available(d))
        .filter_map(|d| score(d).map(|s| (s, d)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: MEDIA_OCI_MANIFEST.into(),
            digest: format!("sha256:{arch}{}", variant.unwrap_or("")),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn picks_this_platform() {
        let amd = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        let entries = vec![
            desc("arm", Some("v7")),
            desc("arm64", Some("v8")),
            desc("amd64", None),
        ];
        assert_eq!(
            select_manifest(&entries, &amd, |_| true).map(|d| d.digest.as_str()),
            Some("sha256:amd64")
        );
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select_manifest(&entries, &arm64, |_| true).map(|d| d.digest.as_str()),
            Some("sha256:arm64v8")
        );
        // Only what the archive carries.
        assert!(select_manifest(&entries, &amd, |d| d.digest != "sha256:amd64").is_none());
        let mut bare = desc("amd64", None);
        bare.platform = None;
        assert!(select_manifest(&[bare], &arm64, |_| true).is_some());
        assert!(!host_platform().architecture.is_empty());
    }
}
