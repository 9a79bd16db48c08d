//! The persistent-app Update Module: installs an application tree under an
//! allowed root (`/data/apps/<name>` by default) from a Mender artifact,
//! keeps the previous version until commit, swaps atomically, rolls back in
//! O(1), and recovers from a power cut at any point.
//!
//! The artifact format and its validation live in `persistent-app-format`,
//! shared with the host generator; [`spec`] re-exports its meta-data.

mod apply;
pub mod archive;
mod community;
pub mod config;
pub mod delta;
pub mod error;
pub mod fault;
pub mod journal;
pub mod plan;
pub mod progress;
pub mod service;
mod stage;
mod states;

pub use error::{Error, Result};
pub use persistent_app_format::spec;
pub use states::{recover_at_boot, PersistentApp};
