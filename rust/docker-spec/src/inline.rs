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
        archives.push(InlineArchive {
            payload: payload.to_owned(),
            images,
            size,
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
