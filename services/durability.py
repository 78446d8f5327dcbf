"""Which changes of a batch must be durable before its replies go, and which may wait. Pure.

The loop writes what a batch changed in one transaction, and sends the batch's replies once that
is durable (services/central.py). A change that is a promise to someone — a job's status, a
match, a remembered reply — is written before the reply that makes the promise. Two things a
pilot's heartbeat changes are no such promise, and the loop does not start a transaction (nor a
sync) for a batch that changed nothing else:

- **the job's lease** (its ``heartbeat_at`` and stall deadline) is kept in memory only, never
  written for a heartbeat. What the service promised the pilot with an acknowledged heartbeat is
  "your job is not taken from you before ``stalled_timeout`` plus ``stalled_to_reschedule`` from
  now" (the lease rule, :meth:`services.job_book.JobBook._beat`). A restarted service gives
  every Running job a full stalled window *from the restart* (``JobBook._restore_job``), which
  is later than any lease acknowledged before the stop, so the promise holds without a write;
  and a dead pilot's job is still declared Stalled, then rescheduled, by the same rule: a
  window after the restart instead of after its last heartbeat (the cost of not writing: a
  dead pilot found at most one window later when the service restarted meanwhile).
- **a usage sample** of a running job (the series behind the dashboard's plot,
  dirac_like/usage_series.py) promises nothing to the pilot: :func:`commit_due` lets a change set
  holding only such samples wait for the next batch that commits anyway (a match, a report), or
  :data:`MAX_WAIT_SECONDS` at most, or until :data:`MAX_WAITING_SAMPLES` of them wait. A crash
  loses the samples of those last seconds (points of a plot, never a job's state or its final
  usage, which comes with its final report); a stop asked for (SIGTERM) writes them.

So a batch of heartbeats of Running jobs commits nothing, syncs nothing, and its replies go at
once (after the sync of an earlier batch still running, if any: replies keep their order).
"""

from __future__ import annotations

from dirac_like.model import ChangeSet

MAX_WAIT_SECONDS = 10.0  # how long a usage sample may wait for a commit
MAX_WAITING_SAMPLES = 20_000  # bounded memory: ~100 B each


def commit_due(
    changes: ChangeSet,
    now: float,
    max_wait: float = MAX_WAIT_SECONDS,
    max_waiting: int = MAX_WAITING_SAMPLES,
) -> bool:
    """Whether ``changes`` must be written now: it holds something that is a promise (anything
    but usage samples), or samples that waited ``max_wait`` seconds or more, or too many of
    them. False for an empty change set (nothing to write)."""
    if not changes.nothing_but_usage_samples():
        return True
    samples = changes.usage_samples
    if not samples:
        return False
    oldest = samples[0][2]  # (job id, attempt, time, cpu, rss), appended in time order
    return len(samples) >= max_waiting or now - oldest >= max_wait
