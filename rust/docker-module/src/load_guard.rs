//! Defence in depth around an inline archive load: whatever the archive did
//! to the engine's names and images, put back.
//!
//! The tag filter ([`crate::archive`]) keeps the engine from tagging anything;
//! this module does not rely on it. Before a load the engine's image IDs and
//! tags are journaled ([`LoadRecord`]); afterwards [`diff`] compares, and
//! [`undo_plan`] turns the difference into engine operations: a moved or
//! vanished tag is pointed back at its image, an image the load added and the
//! release does not keep is removed (with whatever tags it took), a tag that
//! appeared on an image that was there before is removed when the engine can
//! do that without dropping the image or its registry digests, and named in
//! the error otherwise. A process killed at any point of the load leaves the
//! record in the journal; the client's next state waits for the engine to
//! finish the load it may still be working on, then does the same.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mender_module_protocol::signal;

use crate::archive::shown;
use crate::engine::{ErrorKind, ImageEntry};
use crate::executor::{DeployError, Deployer, Result};
use crate::journal::LoadRecord;
use crate::{fault, log};

/// How long a recovery state waits for the engine to finish a load that a
/// killed process started (it goes on without its client).
const ENGINE_LOAD_WAIT: Duration = Duration::from_secs(15 * 60);

/// A tag that is not what it was before the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagChange {
    pub tag: String,
    pub before: Option<String>,
    pub now: Option<String>,
}

/// What the engine holds now that it did not before the load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadDiff {
    pub added: BTreeSet<String>,
    pub tags: Vec<TagChange>,
}

/// One step of putting the engine back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Point `tag` at `id` again.
    Retag { tag: String, id: String },
    /// Remove `tag` alone; its image keeps other names.
    Untag { tag: String },
    /// Remove an image the load added, with any tags it took.
    Remove { id: String },
    /// Cannot be put back safely; said in the error.
    Leave { what: String },
}

pub fn record(payload: &str, images: &[ImageEntry]) -> LoadRecord {
    LoadRecord {
        payload: payload.to_owned(),
        images: images.iter().map(|i| i.id.clone()).collect(),
        tags: tag_map(images),
    }
}

fn tag_map(images: &[ImageEntry]) -> BTreeMap<String, String> {
    images
        .iter()
        .flat_map(|i| i.tags.iter().map(move |t| (t.clone(), i.id.clone())))
        .collect()
}

pub fn diff(before: &LoadRecord, after: &[ImageEntry]) -> LoadDiff {
    let now = tag_map(after);
    let mut tags: Vec<TagChange> = Vec::new();
    for name in before
        .tags
        .keys()
        .chain(now.keys())
        .collect::<BTreeSet<_>>()
    {
        let (b, n) = (before.tags.get(name), now.get(name));
        if b != n {
            tags.push(TagChange {
                tag: name.clone(),
                before: b.cloned(),
                now: n.cloned(),
            });
        }
    }
    LoadDiff {
        added: after
            .iter()
            .map(|i| i.id.clone())
            .filter(|id| !before.images.contains(id))
            .collect(),
        tags,
    }
}

fn repo_of(reference: &str) -> &str {
    let cut = reference.find('@').or_else(|| {
        reference
            .rfind(':')
            .filter(|i| !reference[*i..].contains('/'))
    });
    cut.map_or(reference, |i| &reference[..i])
}

/// Whether the engine removes `tag` from `image` and nothing else: it also
/// drops the image's digests in the tag's repository when no other tag of
/// that repository is left, and the image itself when no name is left.
fn untag_is_harmless(image: &ImageEntry, tag: &str) -> bool {
    let repo = repo_of(tag);
    let others: Vec<&String> = image.tags.iter().filter(|t| *t != tag).collect();
    others.iter().any(|t| repo_of(t) == repo)
        || (!others.is_empty() && !image.digests.iter().any(|d| repo_of(d) == repo))
}

/// The operations that put the engine back as `before` recorded it, keeping
/// the added images listed in `keep`.
pub fn undo_plan(before: &LoadRecord, after: &[ImageEntry], keep: &[String]) -> Vec<Undo> {
    let d = diff(before, after);
    let by_id: BTreeMap<&str, &ImageEntry> = after.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut retag = Vec::new();
    let mut untag = Vec::new();
    let mut leave = Vec::new();
    for c in &d.tags {
        match (&c.before, &c.now) {
            (Some(was), _) if by_id.contains_key(was.as_str()) => retag.push(Undo::Retag {
                tag: c.tag.clone(),
                id: was.clone(),
            }),
            (Some(was), _) => leave.push(Undo::Leave {
                what: format!("tag {} named image {}, which is gone", c.tag, short(was)),
            }),
            (None, Some(now)) if d.added.contains(now) && !keep.contains(now) => {}
            (None, Some(now)) => {
                if untag_is_harmless(by_id[now.as_str()], &c.tag) {
                    untag.push(Undo::Untag { tag: c.tag.clone() });
                } else {
                    leave.push(Undo::Leave {
                        what: format!(
                            "tag {} now names image {}, which removing it would delete",
                            c.tag,
                            short(now)
                        ),
                    });
                }
            }
            (None, None) => {}
        }
    }
    let mut remove = Vec::new();
    for id in d.added.iter().filter(|id| !keep.contains(id)) {
        if by_id[id.as_str()].digests.is_empty() {
            remove.push(Undo::Remove { id: id.clone() });
        } else {
            // A load never gives an image registry digests: a pull did.
            leave.push(Undo::Leave {
                what: format!("image {} came from a registry meanwhile", short(id)),
            });
        }
    }
    [retag, untag, remove, leave].concat()
}

/// The first 12 characters of an image ID's hex, as `docker images` shows
/// it. The engine's IDs are hex, but a record read back from the journal is
/// whatever the file holds: never cut inside a character.
fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let end = hex.char_indices().nth(12).map_or(hex.len(), |(i, _)| i);
    &hex[..end]
}

/// Up to three items, then how many more: error lines stay short.
pub fn few<T: AsRef<str>>(items: &[T]) -> String {
    let mut s: Vec<String> = items
        .iter()
        .take(3)
        .map(|i| {
            shown(i.as_ref().as_bytes(), 80)
                .trim_matches('"')
                .to_owned()
        })
        .collect();
    if items.len() > 3 {
        s.push(format!("{} more", items.len() - 3));
    }
    s.join(", ")
}

impl Deployer<'_> {
    /// Journals the engine's images and tags before a load of `payload`.
    pub(crate) fn begin_load(&mut self, payload: &str) -> Result<LoadRecord> {
        let before = record(payload, &self.engine.images()?);
        if let Some(u) = self.journal.update_mut() {
            u.load = Some(before.clone());
        }
        self.journal.save("load")?;
        Ok(before)
    }

    /// Runs [`undo_plan`]; returns what could not be put back.
    pub(crate) fn put_back(&mut self, before: &LoadRecord, keep: &[String]) -> Result<Vec<String>> {
        let after = self.engine.images()?;
        let mut left = Vec::new();
        for op in undo_plan(before, &after, keep) {
            match op {
                Undo::Retag { tag, id } => {
                    self.engine.tag(&id, &tag)?;
                    log!("put tag {tag} back on image {}", short(&id));
                    fault::point("after-retag");
                }
                Undo::Untag { tag } => {
                    self.engine.remove_image(&tag)?;
                    log!(
                        "removed tag {tag}, which the load of {} added",
                        before.payload
                    );
                    fault::point("after-retag");
                }
                Undo::Remove { id } => {
                    match self.engine.remove_image_forced(&id) {
                        Err(e) if e.kind == ErrorKind::NotFound => {}
                        other => other?,
                    }
                    log!(
                        "removed image {id}, which the load of {} added",
                        before.payload
                    );
                    fault::point("after-remove-loaded");
                }
                Undo::Leave { what } => left.push(what),
            }
        }
        Ok(left)
    }

    /// Ends the load in the journal.
    pub(crate) fn end_load(&mut self) -> Result<()> {
        if let Some(u) = self.journal.update_mut() {
            u.load = None;
        }
        self.journal.save("loaded")?;
        Ok(())
    }

    /// For the states after a killed process: undoes a load the journal
    /// says was under way, once the engine has finished with it.
    pub(crate) fn undo_interrupted_load(&mut self) -> Result<()> {
        let Some(before) = self
            .journal
            .state
            .update
            .as_ref()
            .and_then(|u| u.load.clone())
        else {
            return Ok(());
        };
        log!(
            "the load of inline archive {} was interrupted; putting back what it changed",
            before.payload
        );
        self.wait_for_engine_loads()?;
        let left = self.put_back(&before, &[])?;
        self.end_load()?;
        if !left.is_empty() {
            return Err(DeployError::Refused(format!(
                "the interrupted load of {} changed what cannot be put back safely: {}; check the engine's images by hand",
                before.payload,
                few(&left)
            )));
        }
        Ok(())
    }

    /// The engine finishes a load whose client died; until it has, images
    /// may still appear.
    fn wait_for_engine_loads(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut said = false;
        loop {
            signal::check()?;
            match self.engine.loads_in_progress()? {
                Some(false) => return Ok(()),
                Some(true) if started.elapsed() < ENGINE_LOAD_WAIT => {
                    if !said {
                        log!("waiting for the engine to finish an image load the interrupted process started");
                        said = true;
                    }
                    std::thread::sleep(self.poll);
                }
                Some(true) => {
                    log!(
                        "the engine is still loading after {} s; going on with what it reports now",
                        ENGINE_LOAD_WAIT.as_secs()
                    );
                    return Ok(());
                }
                None => {
                    // Cannot look: wait until the image list holds still.
                    let mut last = self.engine.image_ids()?;
                    loop {
                        std::thread::sleep(self.poll * 8);
                        signal::check()?;
                        let now = self.engine.image_ids()?;
                        if now == last || started.elapsed() > ENGINE_LOAD_WAIT {
                            return Ok(());
                        }
                        last = now;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, tags: &[&str], digests: &[&str]) -> ImageEntry {
        ImageEntry {
            id: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            digests: digests.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn nothing_changed_gives_nothing_to_undo() {
        let before = vec![
            img("sha256:a", &["postgres:15"], &[]),
            img("sha256:b", &[], &[]),
        ];
        let r = record("images.tar", &before);
        assert_eq!(diff(&r, &before), LoadDiff::default());
        assert!(undo_plan(&r, &before, &[]).is_empty());
    }

    #[test]
    fn a_moved_tag_goes_back_and_the_image_that_took_it_goes() {
        let r = record("images.tar", &[img("sha256:user", &["postgres:15"], &[])]);
        let after = vec![
            img("sha256:user", &[], &[]),
            img("sha256:evil", &["postgres:15"], &[]),
            img("sha256:listed", &[], &[]),
        ];
        let d = diff(&r, &after);
        assert_eq!(d.added.len(), 2);
        assert_eq!(
            d.tags,
            [TagChange {
                tag: "postgres:15".into(),
                before: Some("sha256:user".into()),
                now: Some("sha256:evil".into())
            }]
        );
        assert_eq!(
            undo_plan(&r, &after, &["sha256:listed".into()]),
            [
                Undo::Retag {
                    tag: "postgres:15".into(),
                    id: "sha256:user".into()
                },
                Undo::Remove {
                    id: "sha256:evil".into()
                },
            ]
        );
    }

    #[test]
    fn a_new_tag_on_a_new_image_goes_with_the_image() {
        let r = record("images.tar", &[]);
        let after = vec![img("sha256:evil", &["nginx:latest", "x/y:1"], &[])];
        assert_eq!(
            undo_plan(&r, &after, &[]),
            [Undo::Remove {
                id: "sha256:evil".into()
            }]
        );
    }

    #[test]
    fn a_new_tag_on_an_old_image_is_removed_only_when_that_is_harmless() {
        // Another tag of the same repository: only the tag goes.
        let r = record("p", &[img("sha256:a", &["app:1"], &["reg/app@sha256:d"])]);
        let after = vec![img(
            "sha256:a",
            &["app:1", "app:evil"],
            &["reg/app@sha256:d"],
        )];
        assert_eq!(
            undo_plan(&r, &after, &[]),
            [Undo::Untag {
                tag: "app:evil".into()
            }]
        );
        // Its only other name is a digest of the same repository, which the
        // engine would drop with the tag: left, and said.
        let r = record("p", &[img("sha256:a", &[], &["reg/app@sha256:d"])]);
        let after = vec![img("sha256:a", &["reg/app:evil"], &["reg/app@sha256:d"])];
        let plan = undo_plan(&r, &after, &[]);
        assert!(
            matches!(&plan[..], [Undo::Leave { what }] if what.contains("reg/app:evil")),
            "{plan:?}"
        );
        // An unnamed image (an inline one) would be deleted with its only tag.
        let r = record("p", &[img("sha256:a", &[], &[])]);
        let after = vec![img("sha256:a", &["x:1"], &[])];
        assert!(matches!(
            &undo_plan(&r, &after, &[])[..],
            [Undo::Leave { .. }]
        ));
    }

    #[test]
    fn images_with_registry_digests_are_not_taken_for_loaded_ones() {
        let r = record("p", &[]);
        let after = vec![
            img("sha256:pulled", &[], &["reg/x@sha256:d"]),
            img("sha256:loaded", &[], &[]),
        ];
        let plan = undo_plan(&r, &after, &[]);
        assert_eq!(
            plan[0],
            Undo::Remove {
                id: "sha256:loaded".into()
            }
        );
        assert!(matches!(&plan[1], Undo::Leave { what } if what.contains("registry")));
    }

    #[test]
    fn a_vanished_tag_comes_back_if_its_image_is_there() {
        let r = record(
            "p",
            &[
                img("sha256:a", &["a:1"], &[]),
                img("sha256:b", &["b:1"], &[]),
            ],
        );
        let after = vec![img("sha256:a", &[], &[])];
        let plan = undo_plan(&r, &after, &[]);
        assert_eq!(
            plan[0],
            Undo::Retag {
                tag: "a:1".into(),
                id: "sha256:a".into()
            }
        );
        assert!(matches!(&plan[1], Undo::Leave { what } if what.contains("b:1")));
    }

    #[test]
    fn repositories_are_told_from_tags_and_digests() {
        assert_eq!(repo_of("postgres:15"), "postgres");
        assert_eq!(repo_of("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app");
        assert_eq!(
            repo_of("127.0.0.1:5000/app@sha256:ab"),
            "127.0.0.1:5000/app"
        );
        assert_eq!(repo_of("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(few(&["a", "b", "c", "d", "e"]), "a, b, c, 2 more");
    }

    #[test]
    fn an_id_that_is_not_hex_is_shortened_without_a_panic() {
        // Slicing at byte 12 panicked inside a multi-byte character.
        assert_eq!(short("sha256:2222222db:…-2222"), "2222222db:…-");
        assert_eq!(short("sha256:abc"), "abc");
        assert_eq!(short(&format!("sha256:{}", "f".repeat(64))), "ffffffffffff");
    }
}
