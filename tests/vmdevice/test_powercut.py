"""The pure parts of the power-cut harness: which fault point stands for a named moment, when a cut
counts as passed, and the matrix as printed."""

from vmdevice.powercut import Cut, first_point, table

TRACE = [("Download", "journal-begin"), ("Download", "extract-entry"), ("ArtifactInstall", "rename"),
         ("ArtifactInstall", "exchange"), ("ArtifactCommit", "clear-journal")]


def test_a_preferred_point_wins_over_the_first_one_the_state_passes():
    assert first_point(TRACE, "ArtifactInstall", ("exchange",)) == "ArtifactInstall:exchange"
    assert first_point(TRACE, "ArtifactInstall", ("after-stop", "exchange")) == "ArtifactInstall:exchange"


def test_without_a_preferred_point_the_states_first_point_is_taken():
    assert first_point(TRACE, "ArtifactInstall", ("after-stop",)) == "ArtifactInstall:rename"
    assert first_point(TRACE, "Download", ()) == "Download:journal-begin"


def test_a_state_the_run_never_passed_has_no_point():
    assert first_point(TRACE, "ArtifactRollback", ("exchange",)) is None


def test_a_cut_passes_only_if_the_next_deployment_is_accepted_and_nothing_was_found_inconsistent():
    assert Cut("d", "p", after_boot=True, after_next=True).ok
    assert not Cut("d", "p", after_boot=False, after_next=True).ok
    assert not Cut("d", "p", after_boot=True, after_next=False).ok
    assert not Cut("d", "p").ok  # never ran


def test_the_table_has_a_row_per_cut_under_aligned_headers():
    text = table([Cut("persistent-app", "swap", True, True, seconds=107.4),
                  Cut("rootfs", "after reboot", False, True, seconds=300)])
    lines = text.splitlines()
    assert lines[0].split() == ["domain", "cut", "at", "after", "reboot", "+", "client", "recovery",
                                "next", "deployment", "s"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["persistent-app", "swap", "consistent", "consistent", "107"]
    assert lines[3].split() == ["rootfs", "after", "reboot", "NOT", "consistent", "consistent", "300"]
    assert lines[2].index("consistent") == lines[3].index("NOT")
