"""The parts of a big submission's making that are decided once for many jobs
(services/expansion.py): shared requirements, and a submission's prepared jobs cut in slices."""

from __future__ import annotations

from dirac_like.description import parse_descriptions
from dirac_like.services.expansion import PreparedJobs, SharedRequirements


def test_jobs_that_need_the_same_share_one_requirements_object() -> None:
    same = parse_descriptions('Executable = "a"; Arguments = "%s"; Parameters = 3; Site = "X";')
    other = parse_descriptions('Executable = "a"; Site = "Y";')
    shared = SharedRequirements()

    first, second, third, different = map(shared.of, [*same, *other])

    assert first is second is third
    assert first == same[0].requirements()
    assert different == other[0].requirements() and different != first


def test_a_part_of_the_prepared_jobs_keeps_each_jobs_items_together() -> None:
    jobs = parse_descriptions('Executable = "a"; Arguments = "%s"; Parameters = 5;')
    shared = SharedRequirements()
    prepared = PreparedJobs(jobs, [bytes([n]) for n in range(5)], ["", "s1", "", "", "s4"],
                            ["", "", "f2", "", ""], list(map(shared.of, jobs)))  # fmt: skip

    part = prepared.part(1, 3)

    assert len(part) == 2
    assert part.descriptions == jobs[1:3]
    assert (part.packed, part.sandboxes, part.failures) == ([b"\x01", b"\x02"], ["s1", ""],
                                                             ["", "f2"])  # fmt: skip
