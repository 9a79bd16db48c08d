//! The docker module's load guard: the images and tags before an inline load,
//! after it, and the images the release keeps, as lines `ID TAG... [@DIGEST]`
//! in three sections split by `--`. Nothing the load made may be kept by
//! mistake, and nothing that was there before may be removed.
#![no_main]

use docker_module::engine::ImageEntry;
use docker_module::load_guard::{diff, few, record, undo_plan, Undo};
use libfuzzer_sys::fuzz_target;

fn images(text: &str) -> Vec<ImageEntry> {
    let mut out: Vec<ImageEntry> = Vec::new();
    for line in text.lines().take(64) {
        let mut words = line.split_whitespace();
        let Some(id) = words.next() else { continue };
        if out.iter().any(|i| i.id == id) {
            continue;
        }
        let (mut tags, mut digests) = (Vec::new(), Vec::new());
        for w in words.take(16) {
            match w.strip_prefix('@') {
                Some(d) => digests.push(d.to_owned()),
                None => tags.push(w.to_owned()),
            }
        }
        out.push(ImageEntry {
            id: id.to_owned(),
            tags,
            digests,
        });
    }
    // The engine lists each tag on one image only.
    let mut seen = std::collections::BTreeSet::new();
    for image in &mut out {
        image.tags.retain(|t| seen.insert(t.clone()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sections = text.split("\n--\n");
    let before = images(sections.next().unwrap_or(""));
    let after = images(sections.next().unwrap_or(""));
    let keep: Vec<String> = sections
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let rec = record("payload", &before);
    let d = diff(&rec, &after);
    for id in &d.added {
        assert!(!rec.images.contains(id), "{id} was there before the load");
    }
    for step in undo_plan(&rec, &after, &keep) {
        match step {
            Undo::Remove { id } => {
                assert!(!rec.images.contains(&id), "would remove {id}, there before");
                assert!(
                    !keep.contains(&id),
                    "would remove {id}, which the release keeps"
                );
            }
            Undo::Retag { tag, id } => {
                assert_eq!(
                    rec.tags.get(&tag),
                    Some(&id),
                    "retag {tag} to another image"
                );
            }
            Undo::Untag { tag } => {
                assert!(!rec.tags.contains_key(&tag), "untag {tag}, there before");
            }
            Undo::Leave { .. } => {}
        }
    }
    let _ = few(&keep);
});
