"""Pure parts of pilot records closing themselves (PilotRegistry.stopped) and of the stdout
tails the service keeps for ``job peek`` (StdoutTails)."""

from __future__ import annotations

import pytest

from dirac_like.config import PilotsConfig
from dirac_like.services.pilots import PilotRegistry
from dirac_like.services.stdout_tails import MAX_TAIL_CHARS, StdoutTails


@pytest.mark.parametrize(
    ("fabric", "code", "closed", "state"),
    [
        ("", 0, True, "Done"),  # started by hand
        ("", 3, True, "Failed"),
        ("local", 0, True, "Done"),  # a local pilot knows its exit code as its director does
        ("slurm", 0, False, "Running"),  # a batch pilot: its director reports the end
    ],
)
def test_a_pilot_that_stopped(fabric: str, code: int, closed: bool, state: str) -> None:
    registry = PilotRegistry(PilotsConfig())
    if fabric:
        [pilot_id] = registry.add("Site.A.org", "ce", fabric, 1, now=1.0)
    else:
        pilot_id = "by-hand"
    registry.contact(pilot_id, "Site.A.org", "ce", now=2.0)

    assert registry.stopped(pilot_id, code, now=3.0) is closed
    assert registry.get(pilot_id).state == state
    assert registry.stopped(pilot_id, code, now=4.0) is False  # once


def test_a_killed_local_pilot_is_left_to_its_director() -> None:
    registry = PilotRegistry(PilotsConfig())
    [pilot_id] = registry.add("Site.A.org", "ce", "local", 1, now=1.0)
    registry.kill(pilot_id, now=2.0)

    assert registry.stopped(pilot_id, 0, now=3.0) is False
    assert registry.get(pilot_id).state == "Submitted"


def test_tails_are_bounded_per_job_and_in_number() -> None:
    tails = StdoutTails(max_jobs=2)
    tails.keep(1, "x" * (MAX_TAIL_CHARS + 10) + "end")
    tails.keep(2, "two")
    tails.keep(1, "one")  # the latest, and job 1 is now the most recent
    tails.keep(3, "three")  # job 2 goes

    assert (tails.latest(1), tails.latest(2), tails.latest(3)) == ("one", "", "three")
    tails.keep(4, "y" * (MAX_TAIL_CHARS + 10))
    assert len(tails.latest(4)) == MAX_TAIL_CHARS
