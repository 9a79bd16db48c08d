//! `--base`: a delta against the release a device already runs. The base
//! artifact (what this generator wrote for that release, full or itself a
//! delta) is taken apart with `mender-artifact dump`; its images'
//! configurations give every layer stack a device at that release holds.
//! The new artifact's payloads then leave out the bottom layers those
//! stacks already have (see [`crate::archive::Archive::leave_out`]), and it
//! depends on the base's version, so the client refuses it elsewhere.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use artifact_gen::mender_artifact::Tool;

use crate::archive::{Archive, BaseLayers};
use crate::PAYLOAD_TYPE;

/// What a delta needs from its base.
#[derive(Debug)]
pub struct Base {
    /// `data-partition.<stack>.version` (the new artifact's provide key).
    pub key: String,
    /// The base's value of that provide, which the delta depends on.
    pub version: String,
    pub layers: BaseLayers,
}

impl Base {
    /// The `--depends` argument for mender-artifact.
    pub fn depends(&self) -> String {
        format!("{}:{}", self.key, self.version)
    }
}

/// Reads `artifact` as the base of a release of `stack` whose provide is
/// `key`, dumping it into `scratch` (removed afterwards).
pub fn read(tool: &Tool, artifact: &Path, scratch: &Path, stack: &str, key: &str) -> Result<Base> {
    let shown = artifact.display();
    let dumped = tool
        .dump(artifact, scratch)
        .map_err(|e| anyhow!("--base {shown}: {e:#}"))?;
    let result = from_dump(&dumped, &shown.to_string(), stack, key);
    let _ = fs::remove_dir_all(scratch);
    result
}

fn from_dump(
    dumped: &artifact_gen::mender_artifact::Dumped,
    shown: &str,
    stack: &str,
    key: &str,
) -> Result<Base> {
    if dumped.payload_type != PAYLOAD_TYPE {
        bail!(
            "--base {shown} is an artifact for the {} Update Module, not for {PAYLOAD_TYPE}; name the \
             artifact of the stack's release the devices run",
            dumped.payload_type
        );
    }
    let text = fs::read(&dumped.meta_data)
        .with_context(|| format!("--base {shown}: its payload has no meta-data"))?;
    let meta: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow!("--base {shown}: its meta-data is not JSON: {e}"))?;
    let release = docker_spec::parse(&meta).map_err(|e| anyhow!("--base {shown}: {e}"))?;
    if release.stack != stack {
        bail!(
            "--base {shown} is a release of stack {}, not {stack}; name an artifact of stack {stack}",
            release.stack
        );
    }
    let Some(version) = dumped.provide(key) else {
        let have: Vec<String> = dumped
            .provides
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        bail!(
            "--base {shown} does not provide {key} (it provides {}), so a delta cannot depend on its \
             version; build the delta with the same --software-name/--software-filesystem as the base",
            if have.is_empty() { "nothing".to_owned() } else { have.join(", ") }
        );
    };
    let mut layers = BaseLayers::default();
    for payload in &release.inline {
        let path = dumped.files.join(&payload.payload);
        let archive = Archive::read_payload(&path)
            .map_err(|e| anyhow!("--base {shown}: payload {}: {e:#}", payload.payload))?;
        for i in 0..archive.images.len() {
            layers.add(archive.diff_ids(i)?);
        }
    }
    if layers.is_empty() {
        bail!(
            "--base {shown} carries no inline images (its images come from a registry), so a delta \
             against it would carry every layer; build a full artifact without --base"
        );
    }
    Ok(Base {
        key: key.to_owned(),
        version: version.to_owned(),
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::{docker_save, TempDir, A};
    use artifact_gen::mender_artifact::Dumped;
    use serde_json::json;

    const KEY: &str = "data-partition.web.version";

    fn dumped(dir: &TempDir, payload_type: &str, meta: serde_json::Value) -> Dumped {
        // One directory per dump: a case list holds several at once.
        let n = fs::read_dir(&dir.0).unwrap().count();
        let at = dir.0.join(n.to_string());
        let files = at.join("files");
        fs::create_dir_all(&files).unwrap();
        let meta_data = at.join("0000.meta-data");
        fs::write(&meta_data, meta.to_string()).unwrap();
        Dumped {
            payload_type: payload_type.to_owned(),
            provides: vec![(KEY.into(), "1".into())],
            meta_data,
            files,
        }
    }

    fn stack(name: &str, inline: serde_json::Value) -> serde_json::Value {
        json!({"docker-stack": {"format": 1, "stack": name, "inline": inline,
            "containers": {"app": {"image": format!("app:1@sha256:{A}"), "network_mode": "none"}}}})
    }

    #[test]
    fn a_base_gives_its_version_and_every_layer_stack_of_its_images() {
        let dir = TempDir::new("base-ok");
        let d = dumped(
            &dir,
            "docker",
            stack(
                "web",
                json!({"images.tar": {"images": [format!("sha256:{A}")]}}),
            ),
        );
        let diff = format!("sha256:{}", "1".repeat(64));
        let manifest = json!([{"Config": format!("{A}.json"), "Layers": ["l1/layer.tar"]}]);
        crate::archive::tests::tar_file(
            &d.files.join("images.tar"),
            &[
                (
                    &format!("{A}.json"),
                    json!({"rootfs": {"diff_ids": [diff]}})
                        .to_string()
                        .as_bytes(),
                ),
                ("manifest.json", manifest.to_string().as_bytes()),
            ],
        );
        let base = from_dump(&d, "B.mender", "web", KEY).unwrap();
        assert_eq!(base.depends(), format!("{KEY}:1"));
        assert_eq!(base.layers.held(&[diff.clone(), "sha256:x".into()]), 1);
    }

    #[test]
    fn a_base_that_cannot_be_one_is_refused_with_what_to_name_instead() {
        let dir = TempDir::new("base-bad");
        let inline = json!({"images.tar": {"images": [format!("sha256:{A}")]}});
        let mut other_key = dumped(&dir, "docker", stack("web", inline.clone()));
        other_key.provides = vec![("data-partition.shop.version".into(), "3".into())];
        let cases: Vec<(Dumped, &str)> = vec![
            (dumped(&dir, "persistent-app", stack("web", inline.clone())), "--base B.mender is an artifact for the persistent-app Update Module, not for docker"),
            (dumped(&dir, "docker", stack("shop", inline.clone())), "--base B.mender is a release of stack shop, not web"),
            (other_key, "--base B.mender does not provide data-partition.web.version (it provides data-partition.shop.version=3)"),
            (dumped(&dir, "docker", stack("web", json!({}))), "carries no inline images"),
            (dumped(&dir, "docker", stack("web", inline.clone())), "--base B.mender: payload images.tar: "),
        ];
        for (d, want) in cases {
            let e = format!("{:#}", from_dump(&d, "B.mender", "web", KEY).unwrap_err());
            assert!(e.contains(want), "{e}\nwant: {want}");
        }
        // A docker-save payload that is missing its layers is fine (a delta),
        // one without diff IDs is not.
        let d = dumped(&dir, "docker", stack("web", inline));
        docker_save(&d.files.join("images.tar"), &format!("{A}.json"), &[]);
        let e = format!("{:#}", from_dump(&d, "B.mender", "web", KEY).unwrap_err());
        assert!(
            e.contains("rootfs.diff_ids holds 0 valid diff ID(s)"),
            "{e}"
        );
    }
}
