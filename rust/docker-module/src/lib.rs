//! The `docker` Update Module: deploys a stack of containers pinned by digest
//! from the artifact's meta-data (see `docker-spec`), with images pulled and
//! verified before anything stops, a health-gated switch, rollback to exactly
//! the previous set, and a journal that lets every state run again in a fresh
//! process after a crash.
//!
//! Layout: [`config`] (device configuration), [`engine`] (the seam in front of
//! the container engine), [`plan`] (pure planning: the phase steps and the
//! container operations), [`executor`] with [`fetch`], [`switch`] and
//! [`apply`] (the only code that acts), [`journal`] (the per-stack state file), [`health`] (the
//! gate), [`states`] (the protocol states), [`policy`] (what artifacts may ask
//! of the host), [`archive`] and [`load_guard`] (inline image loads that can
//! neither tag nor leave anything behind).

pub mod apply;
pub mod archive;
pub mod config;
pub mod engine;
pub mod executor;
pub mod fault;
pub mod fetch;
pub mod health;
pub mod journal;
pub mod labels;
pub mod load_guard;
pub mod plan;
pub mod policy;
pub mod states;
pub mod switch;

pub use states::{recover_at_boot, DockerModule};

/// Progress for the deployment log, `docker: …` on stderr (stdout belongs
/// to the protocol), each line in one write so the C++ client logs it whole
/// (module_kit::log!).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        module_kit::log!("docker", $($arg)*)
    };
}
