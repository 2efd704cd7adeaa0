"""PolicySwitch: what is prepared, when it is swapped in, and what is given up on (real ONNX files).

`FileSource` stands in for the transport's PolicyFetcher with the same three calls,
answering at once from files on disk; the fetcher itself is tested against a real
bridge in tests/bridge/test_policy_fetch.py.
"""

from __future__ import annotations

import pytest

from lwd_actor.core.policy_switch import PolicySwitch
from lwd_common.policy_store import is_newer
from lwd_testing.models import build_policy
from lwd_testing.sinks import PolicyUpdate


class FileSource:
    """A PolicySource over a list of published files: prefetch hands over every newer one, synchronously."""

    def __init__(self, *files: PolicyUpdate):
        self.files = list(files)
        self.asked: list[str | None] = []
        self.rolled_back: list[tuple[str, str]] = []
        self.reports: list[tuple[str, bool]] = []

    def prefetch(self, current_version, on_ready=None):
        self.asked.append(current_version)
        for f in self.files:
            if on_ready is not None and is_newer(f.version, current_version):
                on_ready(f)

    def rollback_policy(self, bad_version, message=""):
        self.rolled_back.append((bad_version, message))
        self.files = [f for f in self.files if f.version != bad_version]

    def report_policy_loaded(self, version, ok=True, message=""):
        self.reports.append((version, ok))


@pytest.fixture
def good(tmp_path):
    def make(version: str) -> PolicyUpdate:
        return PolicyUpdate(
            str(build_policy(tmp_path / f"{version}.onnx", version=f"exported-{version}")), version
        )

    return make


@pytest.fixture
def broken(tmp_path):
    return PolicyUpdate(str(build_policy(tmp_path / "bad.onnx", noise_horizon=10)), "v000004")


def test_a_newer_file_is_prepared_under_its_published_version(good):
    switch = PolicySwitch("v000002", FileSource(good("v000003")))
    switch.request()
    assert switch.ready_version == "v000003"
    assert switch.at_boundary(can_swap=True, takeover=False).version == "v000003"


def test_request_asks_for_anything_newer_than_what_runs_or_already_waits(good):
    source = FileSource(good("v000003"))
    switch = PolicySwitch("v000002", source)
    switch.request()
    switch.request()
    assert source.asked == ["v000002", "v000003"]


def test_the_swap_waits_for_an_episode_boundary(good):
    switch = PolicySwitch("v000001", FileSource(good("v000002")))
    switch.request()
    assert switch.at_boundary(can_swap=False, takeover=False) is None  # episode running: keep it waiting
    assert switch.current_version == "v000001" and switch.ready_version == "v000002"
    assert switch.at_boundary(can_swap=True, takeover=False).version == "v000002"
    assert switch.current_version == "v000002" and switch.ready_version is None


def test_no_swap_during_a_takeover(good):
    switch = PolicySwitch("v000001", FileSource(good("v000002")))
    switch.request()
    assert switch.at_boundary(can_swap=True, takeover=True) is None
    assert switch.at_boundary(can_swap=True, takeover=False).version == "v000002"


def test_nothing_newer_keeps_the_current_policy(good):
    switch = PolicySwitch("v000005", FileSource())
    switch.request()
    assert switch.offer(good("v000005")) is None and switch.offer(good("v000004")) is None
    assert switch.at_boundary(can_swap=True, takeover=False) is None and switch.current_version == "v000005"


def test_a_newer_offer_replaces_the_one_waiting(good):
    switch = PolicySwitch("v000001", FileSource())
    switch.offer(good("v000002"))
    switch.offer(good("v000003"))
    assert switch.offer(good("v000002")) is None
    assert switch.at_boundary(can_swap=True, takeover=False).version == "v000003"


def test_any_published_version_replaces_an_unpublished_initial_policy(good):
    switch = PolicySwitch("initial", FileSource(good("v000001")))
    switch.request()
    assert switch.at_boundary(can_swap=True, takeover=False).version == "v000001"


def test_a_policy_that_fails_to_load_is_rolled_back_once_and_the_current_one_stays(good, broken):
    source, errors = FileSource(broken), []
    switch = PolicySwitch("v000003", source, error=errors.append)
    switch.request()
    assert switch.offer(broken) is None  # offered again (e.g. another fetcher): not retried
    assert [v for v, _ in source.rolled_back] == ["v000004"] and "noise" in source.rolled_back[0][1]
    assert len(errors) == 1 and "keeping v000003" in errors[0]
    assert switch.at_boundary(can_swap=True, takeover=False) is None and switch.current_version == "v000003"


def test_the_swapped_in_version_is_reported_as_running(good):
    source = FileSource(good("v000002"))
    switch = PolicySwitch("v000001", source)
    switch.request()
    switch.swapped(switch.at_boundary(can_swap=True, takeover=False))
    assert source.reports == [("v000002", True)]


def test_a_failing_source_does_not_block_the_boundary():
    class Down(FileSource):
        def prefetch(self, current_version, on_ready=None):
            raise ConnectionError("bridge down")

    errors = []
    switch = PolicySwitch("v1", Down(), error=errors.append)
    switch.request()
    assert switch.at_boundary(can_swap=True, takeover=False) is None and "bridge down" in errors[0]


def test_without_a_source_the_policy_never_changes():
    switch = PolicySwitch("v000001", None)
    switch.request()
    assert switch.at_boundary(can_swap=True, takeover=False) is None
