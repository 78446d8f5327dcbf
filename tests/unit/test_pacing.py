"""The pacing of the service loop's background work (services/pacing.py): paced by the time
requests take, not by their presence."""

from __future__ import annotations

import pytest

from dirac_like.services.pacing import GRACE_SECONDS, Pacer


def test_nothing_ran_yet_so_a_piece_is_due_at_once() -> None:
    assert Pacer(0.5).due(contended=True)


@pytest.mark.parametrize(("duty", "owed"), [(0.5, 0.2), (0.25, 0.6), (1.0, 0.0)])
def test_after_a_piece_waiting_requests_are_owed_their_share_of_the_loop(
    duty: float, owed: float
) -> None:
    pacer = Pacer(duty)
    pacer.turned(10.0, 10.2, contended=True, piece=10.0)  # a piece of 0.2 s
    assert pacer.owed == pytest.approx(owed)
    assert (owed == 0.0) == pacer.due(contended=True)


def test_the_next_piece_waits_until_requests_have_had_their_time() -> None:
    pacer = Pacer(0.2)
    pacer.turned(10.0, 10.2, contended=True, piece=10.0)  # owed 0.8 s of request service
    for start in (10.2, 10.5):  # two turns of 0.3 s serving requests: 0.2 s still owed
        pacer.turned(start, start + 0.3, contended=True, piece=None)
        assert not pacer.due(contended=True)
    pacer.turned(10.8, 11.0, contended=True, piece=None)
    assert pacer.due(contended=True)


def test_only_the_turns_that_served_requests_pay_off_their_time() -> None:
    # a client served now and then: the time between its requests is not its own
    pacer = Pacer(0.2)
    pacer.turned(10.0, 10.2, contended=True, piece=10.0)
    for tick in range(10):  # ten quick turns of 1 ms, 0.1 s apart
        start = 10.3 + tick * 0.1
        pacer.turned(start, start + 0.001, contended=True, piece=None)
    assert pacer.owed == pytest.approx(0.79)


def test_a_turn_with_no_request_waiting_makes_the_next_piece_due_at_once() -> None:
    # work-conserving: an idle service makes a big submission at full speed
    pacer = Pacer(0.2)
    pacer.turned(10.0, 10.2, contended=True, piece=10.0)
    assert pacer.due(contended=False)
    pacer.turned(10.2, 10.4, contended=False, piece=10.2)
    assert pacer.owed == pytest.approx(0.8)  # the piece is paid for again
    pacer.turned(10.4, 10.4001, contended=False, piece=None)
    assert pacer.due(contended=True)


def test_the_loop_waits_a_moment_for_requests_only_while_they_are_owed_time() -> None:
    pacer = Pacer(0.2)
    assert pacer.wait() == 0.0
    pacer.turned(10.0, 10.2, contended=True, piece=10.0)
    assert pacer.wait() == GRACE_SECONDS
    pacer.turned(10.2, 11.0, contended=True, piece=None)  # paid (the poll's wait included)
    assert pacer.wait() == 0.0


def test_a_clock_that_went_backwards_owes_nothing() -> None:
    pacer = Pacer(0.5)
    pacer.turned(5.0, 4.0, contended=True, piece=5.0)
    assert pacer.due(contended=True)
