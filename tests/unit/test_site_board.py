"""The site board: bans, limits and the names met."""

from __future__ import annotations

from dirac_like.config import SiteLimits
from dirac_like.model import SiteRecord
from dirac_like.services.journal import Journal
from dirac_like.services.site_board import SiteBoard


def test_a_ban_refuses_pilots_is_recorded_and_can_be_lifted() -> None:
    journal = Journal()
    board = SiteBoard({}, journal)
    assert board.why_not("A", 0) == ""
    board.set(SiteRecord("A", True, "broken disk", 1.0))
    assert board.why_not("A", 0) == "site A is banned: broken disk"
    assert journal.changes.sites["A"].banned
    board.set(SiteRecord("A", False, "", 2.0))
    assert board.why_not("A", 0) == ""
    assert "A" in board.seen


def test_a_site_at_its_limit_of_active_jobs_gets_nothing() -> None:
    board = SiteBoard({"B": SiteLimits(max_running=2), "C": SiteLimits()}, Journal())
    assert board.why_not("B", 1) == ""
    assert board.why_not("B", 2) == "site B has reached its limit of 2 jobs"
    assert board.why_not("C", 10**6) == ""  # 0: no limit
    assert board.max_running("B") == 2 and board.max_running("unknown") == 0


def test_configured_loaded_and_met_sites_are_all_seen() -> None:
    board = SiteBoard({"B": SiteLimits()}, Journal(), [SiteRecord("A", True, "x", 0.0)])
    board.see("D")
    assert board.seen == {"A", "B", "D"}
    assert board.banned("A") is not None and board.banned("B") is None
