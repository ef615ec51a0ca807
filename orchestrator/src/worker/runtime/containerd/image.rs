//! What a sandbox needs of its image: the unpacked root filesystem's snapshot (its chain id) and the image
//! config's command, environment and working folder, read through containerd's image and content stores.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::api::ContainerdApi;

/// The parts of an image a container is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// The committed snapshot of the unpacked layers (the parent of each sandbox's snapshot).
    pub chain_id: String,
    /// The image's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The image's `Cmd`.
    pub cmd: Vec<String>,
    /// The image's `Env`, `NAME=value`.
    pub env: Vec<String>,
    /// The image's `WorkingDir`.
    pub working_dir: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    config: RunConfig,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Looks `image` up in containerd; the error says how to get it there.
pub async fn resolve(api: &dyn ContainerdApi, image: &str, namespace: &str) -> Result<ImageConfig, String> {
    let (digest, media_type) = api.image_target(image).await.map_err(|err| match err.not_found {
        true => format!(
            "image '{image}' is not in containerd's namespace '{namespace}': import it with `ctr -n {namespace} \
             images import FILE` (`dirigent image build` writes the trace-function image)"
        ),
        false => format!("looking up image '{image}': {err}"),
    })?;
    let manifest = manifest_of(api, image, &digest, &media_type).await?;
    let config: Config = json(&read(api, image, &manifest.config.digest).await?, image, "config")?;
    let run = config.config;
    Ok(ImageConfig {
        chain_id: chain_id(&config.rootfs.diff_ids).ok_or_else(|| format!("image '{image}' has no layers"))?,
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.unwrap_or_default(),
    })
}

/// The manifest `digest` names, through an index when it is one (this machine's platform, else the first).
async fn manifest_of(api: &dyn ContainerdApi, image: &str, digest: &str, media_type: &str) -> Result<Manifest, String> {
    let blob = read(api, image, digest).await?;
    if !(media_type.contains("index") || media_type.contains("manifest.list")) {
        return json(&blob, image, "manifest");
    }
    let index: Index = json(&blob, image, "index")?;
    let native = |d: &&Descriptor| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64");
    let chosen = index.manifests.iter().find(native).or(index.manifests.first());
    let chosen = chosen.ok_or_else(|| format!("image '{image}': its index lists no manifest"))?;
    json(&read(api, image, &chosen.digest).await?, image, "manifest")
}

async fn read(api: &dyn ContainerdApi, image: &str, digest: &str) -> Result<Vec<u8>, String> {
    api.read_content(digest).await.map_err(|err| format!("image '{image}': reading {digest}: {err}"))
}

fn json<T: serde::de::DeserializeOwned>(blob: &[u8], image: &str, what: &str) -> Result<T, String> {
    serde_json::from_slice(blob).map_err(|err| format!("image '{image}': its {what} is not valid: {err}"))
}

/// The OCI chain id of layers with these diff ids: the first's diff id, then `sha256(parent + " " + diff id)`.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let (first, rest) = diff_ids.split_first()?;
    Some(rest.iter().fold(first.clone(), |parent, diff| {
        format!("sha256:{:x}", Sha256::digest(format!("{parent} {diff}").as_bytes()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_id_of_one_layer_is_its_diff_id_and_chains_after() {
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(&["sha256:a".into()]).as_deref(), Some("sha256:a"));
        let two = chain_id(&["sha256:a".into(), "sha256:b".into()]).unwrap();
        assert_eq!(two, format!("sha256:{:x}", Sha256::digest(b"sha256:a sha256:b")));
    }
}
