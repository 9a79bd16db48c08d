//! Images carried in the artifact as payload files (`docker-stack.inline`),
//! for devices that cannot reach a registry.

use serde_json::Value;

use crate::document::{kind, Object};
use crate::error::{Result, SpecError};
use crate::ContainerSpec;

/// One payload file holding images in the engine's archive format (what
/// `docker save` writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineArchive {
    /// The payload file's name in the artifact.
    pub payload: String,
    /// The image IDs (`sha256:…` of each image's configuration) the archive
    /// must load, no more and no less.
    pub images: Vec<String>,
    /// The archive's length in bytes, when the artifact states it.
    pub size: Option<u64>,
    /// For an archive built against a base release (`docker-artifact-gen
    /// --base`): each image's layers, those the device must have and those
    /// the archive carries. Empty for a full archive.
    pub layers: Vec<ImageLayers>,
}

/// One image of a delta archive, by the diff IDs of its layers (bottom
/// first; what `docker image inspect` lists as `RootFS.Layers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayers {
    pub image: String,
    /// The bottom layers the archive leaves out: the engine must already
    /// hold this stack of layers, under some image.
    pub on_device: Vec<String>,
    /// The layers above them, which the archive carries.
    pub inline: Vec<String>,
}

impl InlineArchive {
    /// The layers `image` needs on the device before its archive loads.
    pub fn on_device(&self, image: &str) -> &[String] {
        self.layers
            .iter()
            .find(|l| l.image == image)
            .map_or(&[], |l| l.on_device.as_slice())
    }
}

/// The payload-name rule: what `mender-artifact` keeps as a file name and a
/// module can safely open under `files/` or `streams/`.
pub fn check_payload_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "payload name {name:?} is not valid: 1 to 255 characters, letters, digits, . _ -, not starting with ."
        ))
    }
}

/// `sha256:` followed by 64 lower-case hex digits.
pub fn check_image_id(id: &str) -> std::result::Result<(), String> {
    let ok = id.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not an image ID: write sha256: and the 64 lower-case hex digits `docker inspect --format '{{{{.Id}}}}' IMAGE` prints"
        ))
    }
}

/// Parses an archive's `layers`: `{IMAGE ID: {"on_device": [DIFF ID…],
/// "inline": [DIFF ID…]}}` for images of that archive.
fn parse_layers(items: Object<'_>, images: &[String]) -> Result<Vec<ImageLayers>> {
    let mut out = Vec::new();
    for (image, item) in items.entries() {
        let at = items.path(image);
        if !images.iter().any(|i| i == image) {
            return Err(SpecError::invalid(
                &at,
                format!("{image:?} is not one of the archive's images"),
            ));
        }
        let Value::Object(map) = item else {
            return Err(SpecError::invalid(
                &at,
                format!("must be an object, found {}", kind(item)),
            ));
        };
        let mut o = Object::new(map, at.clone());
        let mut list = |key: &'static str| -> Result<Vec<String>> {
            let mut ids = Vec::new();
            for (id_at, id) in o.optional_strings(key)?.unwrap_or_default() {
                check_layer_id(id).map_err(|p| SpecError::invalid(&id_at, p))?;
                ids.push(id.to_owned());
            }
            Ok(ids)
        };
        let on_device = list("on_device")?;
        let inline = list("inline")?;
        o.finish()?;
        if on_device.is_empty() && inline.is_empty() {
            return Err(SpecError::invalid(
                &at,
                "lists no layer: write the image's layers in \"on_device\" and \"inline\"",
            ));
        }
        out.push(ImageLayers {
            image: image.to_owned(),
            on_device,
            inline,
        });
    }
    Ok(out)
}

/// A layer's diff ID: `sha256:` and 64 lower-case hex digits.
fn check_layer_id(id: &str) -> std::result::Result<(), String> {
    check_image_id(id).map_err(|_| {
        format!(
            "{id:?} is not a layer's diff ID: write sha256: and the 64 lower-case hex digits `docker inspect --format '{{{{.RootFS.Layers}}}}' IMAGE` lists"
        )
    })
}

/// Parses `inline` and marks every container whose image digest is one of the
/// archives' image IDs as inline.
pub(crate) fn parse(
    items: Object<'_>,
    containers: &mut [ContainerSpec],
) -> Result<Vec<InlineArchive>> {
    let mut archives: Vec<InlineArchive> = Vec::new();
    for (payload, item) in items.entries() {
        let at = items.path(payload);
        let Value::Object(map) = item else {
            return Err(SpecError::invalid(
                &at,
                format!("must be an object, found {}", kind(item)),
            ));
        };
        check_payload_name(payload).map_err(|p| SpecError::invalid(&at, p))?;
        let mut o = Object::new(map, at.clone());
        let size_at = o.path("size");
        let size = o.optional_u64("size")?;
        if size == Some(0) {
            return Err(SpecError::invalid(
                &size_at,
                "must be the archive's length in bytes, not 0",
            ));
        }
        let images_at = o.path("images");
        let ids = o.optional_strings("images")?.unwrap_or_default();
        let layers = o.optional_object("layers")?;
        o.finish()?;
        if ids.is_empty() {
            return Err(SpecError::invalid(
                &images_at,
                "must list the image IDs the archive holds (at least one)",
            ));
        }
        let mut images: Vec<String> = Vec::new();
        for (id_at, id) in ids {
            check_image_id(id).map_err(|p| SpecError::invalid(&id_at, p))?;
            let elsewhere = archives.iter().any(|a| a.images.iter().any(|x| x == id));
            if images.iter().any(|x| x == id) || elsewhere {
                return Err(SpecError::invalid(
                    &id_at,
                    format!("image {id} is listed twice; each image travels in one archive"),
                ));
            }
            images.push(id.to_owned());
        }
        let layers = match layers {
            Some(l) => parse_layers(l, &images)?,
            None => Vec::new(),
        };
        archives.push(InlineArchive {
            payload: payload.to_owned(),
            images,
            size,
            layers,
        });
    }
    for c in containers.iter_mut() {
        c.image.inline = archives.iter().any(|a| a.images.contains(&c.image.digest));
    }
    for a in &archives {
        for id in &a.images {
            if !containers.iter().any(|c| c.image.digest == *id) {
                return Err(SpecError::invalid(
                    &items.path(&a.payload).key("images"),
                    format!(
                        "image {id} is used by no container; a container uses it with \"image\": \"NAME:TAG@{id}\" (or drop it from the archive)"
                    ),
                ));
            }
        }
    }
    Ok(archives)
}
