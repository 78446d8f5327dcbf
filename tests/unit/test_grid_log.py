"""What the service remembers of the grid for ``job why``: bounded, and a CE seen only through
its pilots is as wide as the widest of them."""

from __future__ import annotations

import pytest

from dirac_like.protocol import PilotResources
from dirac_like.services import grid_log
from dirac_like.services.grid_log import GridLog

CERN = "LCG.CERN.cern"


def test_a_ce_known_from_pilots_only_is_the_widest_they_showed() -> None:
    log = GridLog()
    log.pilot_asked("p1", PilotResources(site=CERN, ce="ce1", cores=2, cpu_time_left=3600), 1.0)
    log.pilot_asked("p2", PilotResources(site=CERN, ce="ce1", cores=8, cpu_time_left=600), 2.0)
    [ce] = log.known_ces()
    assert (ce.cores, ce.cpu_time_left) == (8, 3600)


def test_a_directors_description_is_kept_over_its_pilots() -> None:
    log = GridLog()
    log.sized(PilotResources(site=CERN, ce="ce1", cores=4), 1.0)
    log.pilot_asked("p1", PilotResources(site=CERN, ce="ce1", cores=16), 2.0)
    assert [ce.cores for ce in log.known_ces()] == [4]
    assert log.has_director(CERN, 2.0) and not log.has_director(CERN, 1.0 + 2 * log.window)


def test_pilots_are_bounded_and_old_ones_are_not_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grid_log, "MAX_PILOTS", 3)
    log = GridLog(window=100.0)
    for number in range(5):
        log.pilot_asked(f"p{number}", PilotResources(site=CERN), float(number * 60))
    assert list(log.pilots) == ["p2", "p3", "p4"]
    assert len(log.recent_pilots(now=250.0)) == 2  # seen at 180 and 240


def test_the_match_rate_is_over_the_last_ten_minutes() -> None:
    log = GridLog()
    for second in range(100):
        log.matched(float(second))
    assert log.match_rate(100.0) == 100 / grid_log.RATE_WINDOW
    assert log.match_rate(2000.0) == 0.0
