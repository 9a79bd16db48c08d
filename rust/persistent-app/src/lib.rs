//! The persistent-app Update Module: installs an application tree under an
//! allowed root (`/data/apps/<name>` by default) from a Mender artifact,
//! keeps the previous version until commit, swaps atomically, rolls back in
//! O(1), and recovers from a power cut at any point.
//!
//! The library is shared with the host generator, which uses only [`spec`]:
//! the artifact format and its validation live in one place.

mod apply;
pub mod archive;
mod community;
pub mod config;
pub mod error;
pub mod fault;
pub mod journal;
pub mod pack;
pub mod plan;
pub mod progress;
pub mod service;
pub mod spec;
mod stage;
mod states;

pub use error::{Error, Result};
pub use states::PersistentApp;
