//! persistent-app's meta-data (`{"persistent-app": {...}}`, or none for the
//! community format) and the device's allowed-roots check.
#![no_main]

use std::path::PathBuf;

use composable_fuzz::check_error;
use libfuzzer_sys::fuzz_target;
use persistent_app_format::spec::{check_allowed, parse_meta_data, ArtifactFormat};

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match parse_meta_data(&meta) {
        Ok(ArtifactFormat::Ours(spec)) => {
            let roots = [PathBuf::from("/data/apps"), PathBuf::from("/opt")];
            if let Err(e) = check_allowed(&spec.dest, &roots) {
                check_error("allowed roots", &e);
            }
            // What validated, the generator writes back the same.
            let again = parse_meta_data(&spec.to_meta_data()).unwrap();
            assert_eq!(again, ArtifactFormat::Ours(spec));
        }
        Ok(ArtifactFormat::Community) => {}
        Err(e) => check_error("meta-data", &e),
    }
});
