//! `mender-inventory-docker`, installed on devices as
//! `/usr/share/mender/inventory/mender-inventory-docker`: reports the stacks
//! the docker module manages as Mender inventory attributes. Read-only: it
//! takes no lock, changes no journal and only lists and inspects in the engine.
//!
//! ```text
//! docker_stacks=web
//! docker_stack_web_version=web-1.2
//! docker_stack_web_state=running
//! docker_stack_web_containers=db
//! docker_stack_web_containers=web
//! docker_stack_web_images=registry.example.com/web/db@sha256:…
//! ```
//!
//! A key printed several times becomes a list on the server (Mender's rule
//! for inventory scripts). When the engine cannot be reached nothing is
//! printed, the reason goes to stderr and the exit status is 1: the client
//! then logs the failure and ignores this script's output, so the server
//! keeps the last known values instead of being told that no stack runs.

use std::process::ExitCode;
use std::time::Duration;

mod inventory;

use docker_module::config::Config;
use docker_module::engine::docker::DockerEngine;
use docker_module::engine::Engine;

fn main() -> ExitCode {
    let config = match Config::load_for_recovery_from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mender-inventory-docker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut engine = match DockerEngine::connect(&config.socket, Duration::from_secs(10)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mender-inventory-docker: the container engine is unreachable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let containers = match engine.containers() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mender-inventory-docker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let journals = inventory::read_journals(&config.state_dir);
    let mut digests_of = |image_id: &str| match engine.image(image_id) {
        Ok(Some(image)) => image.repo_digests,
        _ => Vec::new(),
    };
    let stacks = inventory::stacks(&journals, &containers, &mut digests_of);
    print!("{}", inventory::render(&stacks));
    ExitCode::SUCCESS
}
