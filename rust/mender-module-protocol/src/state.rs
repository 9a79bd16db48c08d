//! The first argument of an Update Module call: a state to run or a query to answer.

use std::fmt;

/// States that do work. Their stdout and stderr go to the deployment log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Download,
    /// C++ client ≥ 4.0, after the module answered `Yes` to `ProvidePayloadFileSizes`:
    /// like `Download`, but each `stream-next` line carries the payload size.
    DownloadWithFileSizes,
    ArtifactInstall,
    ArtifactReboot,
    ArtifactVerifyReboot,
    ArtifactCommit,
    Cleanup,
    ArtifactRollback,
    ArtifactRollbackReboot,
    ArtifactVerifyRollbackReboot,
    ArtifactFailure,
}

/// Calls whose whole answer is one word on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    SupportsRollback,
    NeedsArtifactReboot,
    ProvidePayloadFileSizes,
    SupportsAugmentedArtifacts,
}

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    State(State),
    Query(Query),
    /// The spec reserves new names for future clients: print nothing, exit 0.
    Unknown(String),
}

impl State {
    pub const ALL: [State; 11] = [
        State::Download,
        State::DownloadWithFileSizes,
        State::ArtifactInstall,
        State::ArtifactReboot,
        State::ArtifactVerifyReboot,
        State::ArtifactCommit,
        State::Cleanup,
        State::ArtifactRollback,
        State::ArtifactRollbackReboot,
        State::ArtifactVerifyRollbackReboot,
        State::ArtifactFailure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Download => "Download",
            State::DownloadWithFileSizes => "DownloadWithFileSizes",
            State::ArtifactInstall => "ArtifactInstall",
            State::ArtifactReboot => "ArtifactReboot",
            State::ArtifactVerifyReboot => "ArtifactVerifyReboot",
            State::ArtifactCommit => "ArtifactCommit",
            State::Cleanup => "Cleanup",
            State::ArtifactRollback => "ArtifactRollback",
            State::ArtifactRollbackReboot => "ArtifactRollbackReboot",
            State::ArtifactVerifyRollbackReboot => "ArtifactVerifyRollbackReboot",
            State::ArtifactFailure => "ArtifactFailure",
        }
    }

    /// True for the states that run while the artifact is still arriving.
    pub fn is_download(self) -> bool {
        matches!(self, State::Download | State::DownloadWithFileSizes)
    }
}

impl Query {
    pub const ALL: [Query; 4] = [
        Query::SupportsRollback,
        Query::NeedsArtifactReboot,
        Query::ProvidePayloadFileSizes,
        Query::SupportsAugmentedArtifacts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Query::SupportsRollback => "SupportsRollback",
            Query::NeedsArtifactReboot => "NeedsArtifactReboot",
            Query::ProvidePayloadFileSizes => "ProvidePayloadFileSizes",
            Query::SupportsAugmentedArtifacts => "SupportsAugmentedArtifacts",
        }
    }
}

impl Invocation {
    pub fn parse(arg: &str) -> Invocation {
        if let Some(state) = State::ALL.iter().find(|s| s.name() == arg) {
            return Invocation::State(*state);
        }
        // Older documentation spells the last rollback state this way; both
        // clients send the other spelling, but a module must not fail on either.
        if arg == "ArtifactRollbackVerifyReboot" {
            return Invocation::State(State::ArtifactVerifyRollbackReboot);
        }
        if let Some(query) = Query::ALL.iter().find(|q| q.name() == arg) {
            return Invocation::Query(*query);
        }
        Invocation::Unknown(arg.to_owned())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_query_round_trips_through_its_name() {
        for s in State::ALL {
            assert_eq!(Invocation::parse(s.name()), Invocation::State(s));
        }
        for q in Query::ALL {
            assert_eq!(Invocation::parse(q.name()), Invocation::Query(q));
        }
    }

    #[test]
    fn old_spelling_of_verify_rollback_reboot_is_the_same_state() {
        assert_eq!(
            Invocation::parse("ArtifactRollbackVerifyReboot"),
            Invocation::State(State::ArtifactVerifyRollbackReboot)
        );
    }

    #[test]
    fn unknown_and_differently_cased_names_are_unknown() {
        for arg in [
            "",
            "download",
            "ArtifactInstall ",
            "Sync",
            "ListSupportedOriginalTypes",
        ] {
            assert_eq!(Invocation::parse(arg), Invocation::Unknown(arg.to_owned()));
        }
    }
}
