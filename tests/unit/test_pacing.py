"""The pacing of the service loop's background work (services/pacing.py)."""

from __future__ import annotations

import pytest

from dirac_like.services.pacing import Pacer


def test_nothing_ran_yet_so_a_piece_is_due_at_once() -> None:
    assert Pacer(0.5).due(0.0) and Pacer(0.5).wait(0.0) == 0.0


@pytest.mark.parametrize(("duty", "pause"), [(0.5, 0.2), (0.25, 0.6), (1.0, 0.0)])
def test_after_a_piece_the_loop_waits_so_background_work_keeps_its_share(
    duty: float, pause: float
) -> None:
    pacer = Pacer(duty)
    pacer.worked(10.0, 10.2)  # a piece of 0.2 s
    assert pacer.wait(10.2) == pytest.approx(pause)
    assert pacer.due(10.2 + pause + 1e-9)
    assert (pause == 0.0) == pacer.due(10.2)


def test_a_clock_that_went_backwards_gives_no_negative_wait() -> None:
    pacer = Pacer(0.5)
    pacer.worked(5.0, 4.0)
    assert pacer.wait(4.0) == 0.0


def test_after_a_turn_that_served_no_request_the_next_piece_is_due_at_once() -> None:
    # work-conserving: an idle service makes a big submission at full speed
    pacer = Pacer(0.2)
    pacer.worked(10.0, 10.2, contended=False)
    assert pacer.due(10.2) and pacer.wait(10.2) == 0.0
    pacer.worked(10.2, 10.4, contended=True)  # requests came: background keeps its share
    assert pacer.wait(10.4) == pytest.approx(0.8)
