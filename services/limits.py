"""The per-identity limits on what one request may make (issue 11, defect 14): jobs per
request, waiting jobs per owner, bytes per job description after parametric expansion.

Each check raises :class:`~dirac_like.errors.LimitExceeded` naming the limit and its config key
before anything is changed, so a refused submission leaves the state as it was. The expansion of
a parametric description is bounded by what is left of the request's budget *before* it
expands, so one small request cannot make millions of jobs in memory first.

Pure: numbers in, exceptions out.
"""

from __future__ import annotations

import dataclasses

from dirac_like.config import LimitsConfig
from dirac_like.description import DescriptionLimits
from dirac_like.errors import InvalidArgument, LimitExceeded


class SubmissionLimits:
    def __init__(self, config: LimitsConfig, descriptions: DescriptionLimits) -> None:
        self.config = config
        self.descriptions = descriptions

    def for_next_description(self, jobs_so_far: int) -> DescriptionLimits:
        """The parse limits of a request's next description, ``jobs_so_far`` jobs made by the
        ones before it (LimitExceeded if none may follow)."""
        left = self.config.max_jobs_per_request - jobs_so_far
        if left < 1:
            raise self._too_many(jobs_so_far + 1)
        if left >= self.descriptions.max_parametric_jobs:
            return self.descriptions
        return dataclasses.replace(
            self.descriptions,
            max_parametric_jobs=left,
            parametric_limit_name=(
                f"(what is left of the limit of "
                f"{self.config.max_jobs_per_request} jobs per request, "
                "limits.max_jobs_per_request)"
            ),
        )

    def check_request(self, jobs: int) -> None:
        if jobs > self.config.max_jobs_per_request:
            raise self._too_many(jobs)

    def check_waiting(self, owner: str, waiting: int, new: int) -> None:
        """``owner`` has ``waiting`` jobs in Waiting and submits ``new`` more."""
        limit = self.config.max_waiting_jobs_per_user
        if waiting + new > limit:
            raise LimitExceeded(
                f"{owner} has {waiting} waiting jobs: {new} more would pass the limit of {limit} "
                "waiting jobs per user (limits.max_waiting_jobs_per_user); wait for some to run"
            )

    def check_size(self, index: int, size: int) -> None:
        """The ``index``-th job of the request (from 0) has a stored description of ``size``
        bytes."""
        limit = self.config.max_description_bytes
        if size > limit:
            raise LimitExceeded(
                f"job {index + 1} of the request has a description of {size} bytes after "
                f"expansion, over the limit of {limit} bytes per job "
                "(limits.max_description_bytes)"
            )

    def _too_many(self, jobs: int) -> LimitExceeded:
        return LimitExceeded(
            f"the request makes at least {jobs} jobs, over the limit of "
            f"{self.config.max_jobs_per_request} jobs per request "
            "(limits.max_jobs_per_request): submit them in several requests"
        )


MAX_LISTED = 10_000_000  # rows one listing request may ask for (the frame limit bounds the reply)


def check_listing_limit(limit: int, most: int = MAX_LISTED) -> None:
    """Refuse a listing's ``limit`` outside 1..``most`` (InvalidArgument), before any work."""
    if not 1 <= limit <= most:
        raise InvalidArgument(f"limit must be 1 to {most}, not {limit}")
