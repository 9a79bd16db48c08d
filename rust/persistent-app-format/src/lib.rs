//! The persistent-app artifact format, in one place for both sides: the
//! meta-data and its validation ([`spec`]), the rules every app tree obeys
//! ([`links`], [`Summary`]) and the generator's writer of the app archive
//! ([`pack`]); for file deltas, the manifest and the choice of what to ship
//! ([`delta`]) with the digest it names ([`sha256`]). The Update Module links
//! [`spec`], [`links`], [`delta`] and [`sha256`]; only the generator links
//! [`pack`].

pub mod delta;
pub mod links;
pub mod pack;
pub mod sha256;
pub mod spec;

/// The size of an app tree as the meta-data announces it and as the device
/// checks it: members (directories, files, links) and bytes of file content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
}
