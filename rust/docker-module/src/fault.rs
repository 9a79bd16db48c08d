//! Fault injection for the crash-safety tests, with module_kit::fault:
//! `DOCKER_MODULE_FAULT=<State>:<point>[:<n>]` (`*` for any state) kills the
//! process with SIGKILL the n-th time (default: the first) it passes the
//! point in that state, the closest a test can get to pulling the plug;
//! `DOCKER_MODULE_FAULT_TRACE=<file>` appends `<State>:<point>:<pid>` for
//! every point passed. The state is the one the client invoked
//! (`DownloadWithFileSizes` for a C++ client's Download). Compiled in only
//! with the `fault-injection` feature (test builds); without it every call
//! compiles to nothing, so a shipped binary cannot be made to crash.

/// Every point the module passes, for tests that walk them all.
pub const POINTS: &[&str] = &[
    // Inside a pull, after the first progress report.
    "mid-pull",
    // After each engine call of that kind.
    "after-pull",
    "after-create",
    "after-start",
    "after-stop",
    "after-rename",
    "after-remove",
    "after-remove-image",
    "after-remove-volume",
    // Inline archive loads: after each chunk handed to the engine; the whole
    // archive sent, the engine's answer not yet read; after the answer;
    // after a tag put back; after an image the load added was removed.
    "mid-load",
    "load-sent",
    "after-load",
    "after-retag",
    "after-remove-loaded",
    // After each journal write, by the phase it records.
    "journal-download",
    "journal-load",
    "journal-loaded",
    "journal-install",
    "journal-installed",
    "journal-commit",
    "journal-rolled-back",
    "journal-dropped-pulled",
    "journal-cleared",
    // Inside each journal write (module_kit::fs): the new file renamed into
    // place, its directory not yet synced.
    "rename",
];

/// The variable that names the fault to inject (module_kit::fault's syntax).
pub const ENV: &str = "DOCKER_MODULE_FAULT";

pub use module_kit::fault::point;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn sources(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
            {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    /// The quoted names after each `marker` in `text`.
    fn names_after(text: &str, marker: &str, prefix: &str) -> BTreeSet<String> {
        text.split(marker)
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|name| !name.is_empty() && !name.contains('{') && *name != "t")
            .map(|name| format!("{prefix}{name}"))
            .collect()
    }

    #[test]
    fn points_lists_every_point_in_the_source_and_nothing_else() {
        let mut text = String::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut text,
        );
        let mut used = names_after(&text, "fault::point(\"", "");
        used.extend(names_after(&text, ".save(\"", "journal-"));
        // module_kit::fs::Dir::rename's point, under every journal write.
        used.insert("rename".to_owned());
        let listed: BTreeSet<String> = super::POINTS.iter().map(|p| p.to_string()).collect();
        assert_eq!(used, listed);
    }
}
