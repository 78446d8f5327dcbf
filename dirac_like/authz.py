"""Who may do what: the roles, the authenticated principal, and the one authorization check.

The principal of a request comes from the transport (the ZAP User-Id of its CurveZMQ connection,
looked up in the service's identity registry), never from a field the client fills in.
:func:`authorize` is the single place that decides whether a principal may run an operation with
given arguments: a table op -> allowed roles, plus ownership (a user's own jobs, a pilot's own
jobs and site, a director's own site). It is pure: what it needs of the state comes through
:class:`Ownership`.

The policy, in brief (``RULES`` below is the authority):

- admin: every operation, arguments unchanged (a submit with no owner is the admin's own).
- operator: sites and bans, shares, task queues, pilot records (list, output, kill), and sees
  every job (status, list, history); it does not submit, kill or reschedule jobs.
- user: submits into its own groups only, as itself (the owner is forced to its name, an empty
  group becomes its first group); status, history, kill, reschedule and job_output of its own
  jobs only (another user's job is answered exactly as a job that does not exist:
  :class:`~dirac_like.errors.JobNotVisible`); list_jobs narrowed to its own jobs; uploads input
  sandboxes.
- director: add/update/list pilot records and read pilot output of its own site only; eligible
  and pilot_token for its own site.
- pilot: request_job (and request_jobs) for its own site, as its own pilot id: the one its
  credential names, or (a credential for any pilot of the site, like the simulated fabric's) a
  pilot id no other credential is bound to — the first request binds the pilot record to the
  credential; update_status only for jobs matched to it (update_statuses: reports of its own
  pilot id, each refused alone by the handler when the job is not matched to it; pilot_turn:
  both, checked as request_jobs and update_statuses are); heartbeat with its own pilot id (for
  a job that is no longer its own the service only answers "kill it", which changes nothing);
  downloads input sandboxes and uploads output sandboxes.
- agent: read-only: ping, sites, task_queues, shares, pilots, list_jobs, status; and, for the
  transfer agent, leasing and reporting transfers, reading the catalog and marking replicas.
- monitor (the monitoring agent): submits probe jobs as itself into the reserved probe group
  only, and sees, kills and reads the output of its own jobs; reports probe results, sets the
  statuses its policy decided (never over an operator's ban: the handler refuses), reads sites,
  pilots, jobs, statuses and downtimes. Users may not submit into the probe group.
- operators also declare and cancel downtimes and read probe results and statuses.

Data (the replica catalog and transfers): everyone reads the catalog and the SE list. A user
registers, removes and replicates only under its own folder ``/<vo>/user/<name>`` (the owner of
what it registers or asks to copy is its name); operators set SE status and see all transfers;
users see their own transfers. Any reader (user, pilot) reports a replica it found corrupted
Bad, with the reason (only operators and agents mark one Good again). A pilot registers the
output data of a job matched to it, under and as the job owner's (and asks for its failover
transfer).

Sandboxes are bound to their holders (dirac_like/sandbox.py), not a capability by hash: a user
holds the input archives it uploaded (uploading the bytes, even of content stored already, is
the only way to hold one) and the output archives of its own jobs; a pilot holds the output
archives it uploaded, and may read the input archive of a job matched to it. Anyone else asking
for an archive gets exactly the answer to one that does not exist; a job may name only an input
archive its owner holds. Operators and agents do not touch sandboxes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from dirac_like.errors import Forbidden, JobNotVisible
from dirac_like.monitoring import PROBE_GROUP
from dirac_like.protocol import MAX_JOB_IDS, Op, build_trusted
from dirac_like.sandbox import SandboxNotFound


class Role(StrEnum):
    ADMIN = "admin"  # everything
    OPERATOR = "operator"  # sites, pilots, shares; sees all jobs
    USER = "user"  # member of groups, owns jobs
    DIRECTOR = "director"  # registers and manages the pilots of its own site
    PILOT = "pilot"  # requests jobs for its site, reports on the jobs matched to it
    AGENT = "agent"  # monitoring and transfer agents
    MONITOR = "monitor"  # the monitoring agent: probe jobs, results, site/SE statuses


@dataclass(frozen=True)
class Principal:
    """An authenticated identity, as the service's registry knows it."""

    name: str  # unique; a user's name is the owner of their jobs
    role: Role
    groups: tuple[str, ...] = ()  # users: the groups they may submit into
    site: str = ""  # directors and pilots: the site they act for
    pilot_id: str = ""  # pilots: the pilot record the token was issued for ("" = any of the site)
    expires: float = 0.0  # epoch seconds; 0: does not expire


class Ownership(Protocol):
    """What :func:`authorize` needs to know about stored objects."""

    def job_owner(self, job_id: int) -> str | None: ...  # None: no such job

    def job_pilot(self, job_id: int) -> str | None: ...  # the pilot the job is matched to

    def pilot_site(self, pilot_id: str) -> str | None: ...  # None: no such pilot

    def pilot_credential(self, pilot_id: str) -> str: ...  # the identity bound to it ('' none)

    def sandbox_holder(self, sha256: str, name: str) -> bool: ...  # stored, granted to name

    # The input sandbox of a job matched to a pilot this credential acts as (``pilot_id``: the
    # one its credential names; '' any pilot record bound to ``credential``).
    def pilot_input_sandbox(self, sha256: str, credential: str, pilot_id: str) -> bool: ...


# How a refusal names an operation: what a user knows it as, not the internal op name.
_ACTIONS = {
    Op.PING: "ping the service",
    Op.SUBMIT: "submit jobs",
    Op.STATUS: "see job statuses",
    Op.LIST_JOBS: "list jobs",
    Op.KILL: "kill jobs",
    Op.RESCHEDULE: "reschedule jobs",
    Op.HISTORY: "see job histories",
    Op.REQUEST_JOB: "ask for jobs as a pilot",
    Op.REQUEST_JOBS: "ask for jobs as a pilot",
    Op.ELIGIBLE: "count the jobs a pilot could run",
    Op.UPDATE_STATUS: "report job statuses",
    Op.UPDATE_STATUSES: "report job statuses",
    Op.PILOT_TURN: "report job statuses and ask for jobs as a pilot",
    Op.HEARTBEAT: "send job heartbeats",
    Op.SITES: "list sites",
    Op.BAN_SITE: "ban sites",
    Op.UNBAN_SITE: "unban sites",
    Op.TASK_QUEUES: "list task queues",
    Op.SHARES: "see shares",
    Op.SET_SHARE: "set shares",
    Op.ADD_PILOTS: "record pilots",
    Op.UPDATE_PILOTS: "update pilot records",
    Op.PILOTS: "list pilots",
    Op.PILOT_OUTPUT: "see pilot output",
    Op.KILL_PILOT: "kill pilots",
    Op.SANDBOX_UPLOAD: "upload sandboxes",
    Op.SANDBOX_DOWNLOAD: "download sandboxes",
    Op.JOB_OUTPUT: "get job output",
    Op.IDENTITY_ADD: "issue identities",
    Op.IDENTITY_LIST: "list identities",
    Op.IDENTITY_REVOKE: "revoke identities",
    Op.PILOT_TOKEN: "obtain pilot tokens",
    Op.JOB_DESCRIPTION: "see job descriptions",
    Op.DELETE: "delete jobs",
    Op.PEEK: "peek at job output",
    Op.PILOT_STOPPED: "report a pilot stopped",
    Op.WHY: "ask why jobs wait",
    Op.SELECT_JOBS: "select jobs",
    Op.BULK: "act on jobs in bulk",
    Op.BULK_STATUS: "follow bulk actions",
    Op.SITE_SHOW: "show sites",
    Op.SITE_DRAIN: "drain sites",
    Op.SITE_LIMIT: "limit sites",
    Op.PILOT_SUMMARY: "summarize pilots",
    Op.PROBE_REPORT: "report probe results",
    Op.PROBE_RESULTS: "read probe results",
    Op.RESOURCE_STATUS: "see site and SE statuses",
    Op.SET_STATUS: "set site and SE statuses",
    Op.DOWNTIME_ADD: "declare downtimes",
    Op.DOWNTIME_LIST: "list downtimes",
    Op.DOWNTIME_CANCEL: "cancel downtimes",
    Op.SERVICE_STATUS: "see which service instance leads",
    Op.SE_LIST: "list storage elements",
    Op.SE_SET_STATUS: "set storage element status",
    Op.CATALOG_REGISTER: "register files",
    Op.CATALOG_FILES: "look files up",
    Op.CATALOG_LIST: "list catalog folders",
    Op.CATALOG_REMOVE: "remove files",
    Op.CATALOG_REPLICA_STATUS: "mark replicas",
    Op.TRANSFER_SUBMIT: "ask for transfers",
    Op.TRANSFER_REQUEST: "take transfers as an agent",
    Op.TRANSFER_UPDATE: "report transfers as an agent",
    Op.TRANSFERS: "list transfers",
    Op.RULE_ADD: "add replication rules",
    Op.RULES: "list replication rules",
    Op.RULE_REMOVE: "remove replication rules",
}


def describe_action(op: str) -> str:
    """What ``op`` does, in the words of the commands (e.g. "list sites")."""
    return _ACTIONS.get(op, f"run {op[:64]!r}")


class Asked(NamedTuple):
    """One request being authorized: what a check looks at (a tuple: made once per request)."""

    principal: Principal
    op: str
    args: Any
    ownership: Ownership

    @property
    def who(self) -> str:
        return f"{self.principal.role} {self.principal.name}"

    def arg(self, name: str) -> Any:
        return getattr(self.args, name, None)

    def replaced(self, **changes: Any) -> Any:
        """The arguments with some fields changed (the argument dataclasses are frozen): the
        arguments themselves when nothing changes, else a copy made without the checks of
        ``dataclasses.replace`` (every request_job takes this path)."""
        args = self.args
        fields = vars(args)
        if all(fields[name] == value for name, value in changes.items()):
            return args
        return build_trusted(type(args), {**fields, **changes})


# A check returns the arguments to run the operation with, or raises Forbidden.
Check = Callable[[Asked], Any]


def authorize(principal: Principal, op: str, args: Any, ownership: Ownership) -> Any:
    """Raise :class:`dirac_like.errors.Forbidden` unless ``principal`` may run ``op`` with
    ``args``; return the arguments to run it with (e.g. a submit's owner set to the principal,
    a user's job listing narrowed to their own jobs)."""
    asked = Asked(principal, op, args, ownership)
    rules = RULES.get(op)
    if rules is None:
        raise Forbidden(f"{asked.who} may not run {op[:64]!r}: no such operation")
    if principal.role == Role.ADMIN:
        return _as_admin(asked)
    check = rules.get(principal.role)
    if check is None:
        roles = ", ".join(sorted(role.value for role in allowed_roles(op)))
        raise Forbidden(f"{asked.who} may not {describe_action(op)}: only {roles} may")
    return check(asked)


def allowed_roles(op: str) -> frozenset[Role]:
    """The roles that may run ``op`` at all (ownership checks aside); empty if unknown."""
    if op not in RULES:
        return frozenset()
    return frozenset({Role.ADMIN, *RULES[op]})


def _short(value: Any, length: int = 64) -> str:
    return repr(str(value)[:length])


# The argument naming who acts, where the transport fills it in for everyone but admins.
_ACTING_AS = {
    Op.SUBMIT: "owner",
    Op.SANDBOX_UPLOAD: "owner",
    Op.REQUEST_JOB: "credential",
    Op.REQUEST_JOBS: "credential",
    Op.PILOT_TURN: "credential",
}


def _as_admin(asked: Asked) -> Any:
    """An admin's arguments are its own, except who acts, left empty: then the admin is it (the
    owner of a submission or of an uploaded sandbox, the credential a pilot record is bound
    to)."""
    name, field = asked.principal.name, _ACTING_AS.get(asked.op)
    args = asked.args
    if field is not None and not asked.arg(field):
        args = dataclasses.replace(args, **{field: name})
    if asked.op == Op.SUBMIT and args.submitter != name:
        args = dataclasses.replace(args, submitter=name)  # an admin may name its own sandboxes
    return args


def _anything(asked: Asked) -> Any:
    return asked.args


# --------------------------------------------------------------------------------------------
# Users: their own groups, their own jobs


def _user_submit(asked: Asked) -> Any:
    groups = asked.principal.groups
    if not groups:
        raise Forbidden(f"{asked.who} may not submit: it belongs to no group")
    group = asked.arg("group") or groups[0]
    if group == PROBE_GROUP:
        raise Forbidden(
            f"{asked.who} may not submit into group {PROBE_GROUP}: it is reserved "
            "for the monitoring agent's probes"
        )
    if group not in groups:
        raise Forbidden(
            f"{asked.who} may not submit into group {_short(group)}: its groups "
            f"are {', '.join(groups)}"
        )
    name = asked.principal.name
    return asked.replaced(owner=name, group=group, submitter=name)


def _user_listing(asked: Asked) -> Any:
    owner = asked.arg("owner")
    if owner is not None and owner != asked.principal.name:
        raise Forbidden(f"{asked.who} may not list the jobs of {_short(owner)}: only its own")
    return asked.replaced(owner=asked.principal.name)


def _job_ids(asked: Asked) -> list[Any]:
    job_ids = asked.arg("job_ids")
    return [asked.arg("job_id")] if job_ids is None else list(job_ids)


def _own_jobs(asked: Asked) -> Any:
    """Every job named is the principal's own. The first that is not (someone else's, or no
    job at all) is answered exactly as the handler answers a job that does not exist, so a
    user learns neither that another user's job exists nor whose it is. (No ids, or too many:
    left to the handler, which refuses those before it looks at any job.)"""
    job_ids = _job_ids(asked)
    if not job_ids or len(job_ids) > MAX_JOB_IDS:
        return asked.args
    for job_id in job_ids:
        if asked.ownership.job_owner(job_id) != asked.principal.name:
            raise JobNotVisible(job_id)
    return asked.args


def _user_upload(asked: Asked) -> Any:
    return _upload_of_kind(asked, "input")


def _upload_of_kind(asked: Asked, kind: str) -> Any:
    given = asked.arg("kind")
    if given != kind:
        raise Forbidden(
            f"{asked.who} may not upload {_short(given, 20)} sandboxes: only {kind} sandboxes"
        )
    return asked.replaced(owner=asked.principal.name)  # the uploader holds what it uploaded


def _hidden_sandbox(asked: Asked) -> SandboxNotFound:
    """The answer to a sandbox one may not read: exactly that to one that does not exist."""
    return SandboxNotFound(f"sandbox {asked.arg('sha256')} not found")


def _user_download(asked: Asked) -> Any:
    if not asked.ownership.sandbox_holder(asked.arg("sha256"), asked.principal.name):
        raise _hidden_sandbox(asked)
    return asked.args


def _pilot_download(asked: Asked) -> Any:
    sha256, name = asked.arg("sha256"), asked.principal.name
    if not (
        asked.ownership.sandbox_holder(sha256, name)
        or asked.ownership.pilot_input_sandbox(sha256, name, asked.principal.pilot_id)
    ):
        raise _hidden_sandbox(asked)
    return asked.args


def _user_selection(asked: Asked) -> Any:
    """A user's selections and bulk actions count and touch its own jobs only (the reply says
    so); only an admin may pass the admin cap."""
    if asked.op == Op.BULK:
        return asked.replaced(only_owner=asked.principal.name, over_admin_cap=False)
    return asked.replaced(only_owner=asked.principal.name)


def _monitor_submit(asked: Asked) -> Any:
    group = asked.arg("group") or PROBE_GROUP
    if group != PROBE_GROUP:
        raise Forbidden(
            f"{asked.who} may submit into group {PROBE_GROUP} only, not {_short(group)}"
        )
    return asked.replaced(owner=asked.principal.name, group=group, submitter=asked.principal.name)


def _monitor_download(asked: Asked) -> Any:
    return _user_download(asked)  # the outputs of its own probe jobs are its own


# --------------------------------------------------------------------------------------------
# Directors: their own site


def _own_site(asked: Asked) -> str:
    site = asked.principal.site
    if not site:
        raise Forbidden(f"{asked.who} has no site: its credential is incomplete")
    return site


def _same_site(asked: Asked, site: Any, what: str) -> None:
    own = _own_site(asked)
    if site != own:
        raise Forbidden(f"{asked.who} may not {what} for site {_short(site)}: it acts for {own}")


def _pilot_of_site(asked: Asked, pilot_id: Any, what: str) -> None:
    """A pilot record that exists must be of the principal's site (an unknown one is left for
    the handler to report as not found)."""
    own = _own_site(asked)
    site = asked.ownership.pilot_site(pilot_id)
    if site is not None and site != own:
        raise Forbidden(
            f"{asked.who} may not {what} pilot {_short(pilot_id, 80)}: it belongs "
            f"to site {site}, not {own}"
        )


def _director_add(asked: Asked) -> Any:
    _same_site(asked, asked.arg("site"), "add pilots")
    return asked.args


def _director_eligible(asked: Asked) -> Any:
    _same_site(asked, asked.arg("resources").site, "size pilots")
    return asked.args


def _director_listing(asked: Asked) -> Any:
    site = asked.arg("site")
    if site is None:
        return asked.replaced(site=_own_site(asked))
    _same_site(asked, site, "list pilots")
    return asked.args


def _director_updates(asked: Asked) -> Any:
    for update in asked.arg("updates") or ():
        _pilot_of_site(asked, update.pilot_id, "update")
    return asked.args


def _director_pilot_output(asked: Asked) -> Any:
    _pilot_of_site(asked, asked.arg("pilot_id"), "read the output of")
    return asked.args


def _director_token(asked: Asked) -> Any:
    _same_site(asked, asked.arg("site"), "issue pilot tokens")
    if asked.arg("pilot_id"):
        _pilot_of_site(asked, asked.arg("pilot_id"), "issue a token for")
    return asked.args


# --------------------------------------------------------------------------------------------
# Pilots: their own site, their own pilot id, the jobs matched to them


def _own_pilot_id(asked: Asked, unknown_ok: bool) -> str:
    """The pilot id of the request, if the principal may act as that pilot: the one its
    credential names, or (a credential for any pilot of the site) one no other credential is
    bound to."""
    pilot_id, own = asked.arg("pilot_id"), _own_site(asked)
    expected = asked.principal.pilot_id
    if expected and pilot_id != expected:
        raise Forbidden(
            f"{asked.who} may not act as pilot {_short(pilot_id, 80)}: its "
            f"credential is for pilot {expected}"
        )
    bound = asked.ownership.pilot_credential(pilot_id)
    if not expected and bound not in ("", asked.principal.name):
        raise Forbidden(
            f"{asked.who} may not act as pilot {_short(pilot_id, 80)}: another "
            "credential acts as that pilot"
        )
    site = asked.ownership.pilot_site(pilot_id)
    if site is None and not unknown_ok:
        raise Forbidden(
            f"{asked.who} may not act as pilot {_short(pilot_id, 80)}: no such "
            "pilot has asked for a job"
        )
    if site is not None and site != own:
        raise Forbidden(
            f"{asked.who} may not act as pilot {_short(pilot_id, 80)}: that pilot "
            f"belongs to site {site}, not {own}"
        )
    return str(pilot_id)


def _pilot_request(asked: Asked) -> Any:
    _same_site(asked, asked.arg("resources").site, "request jobs")
    _own_pilot_id(asked, unknown_ok=True)  # a pilot met for the first time gets a record
    return asked.replaced(credential=asked.principal.name)  # bound to the pilot's record


def _pilot_report(asked: Asked) -> Any:
    pilot_id, job_id = _own_pilot_id(asked, unknown_ok=False), asked.arg("job_id")
    if asked.ownership.job_owner(job_id) is None:
        return asked.args  # no such job: the handler says so
    holder = asked.ownership.job_pilot(job_id)
    if holder != pilot_id:
        matched = f"pilot {holder}" if holder else "no pilot"
        raise Forbidden(
            f"{asked.who} may not report on job {job_id}: it is matched to "
            f"{matched}, not {pilot_id}"
        )
    return asked.args


def _pilot_reports(asked: Asked) -> Any:
    """Reports of the pilot's own (each job's holder is checked by the handler, report by
    report: one the pilot no longer holds is refused alone)."""
    _reports_of(asked, _own_pilot_id(asked, unknown_ok=False), "batch")
    return asked.args


def _pilot_turn(asked: Asked) -> Any:
    """A turn: its reports as in ``update_statuses``, its request as in ``request_jobs`` (a
    pilot met for the first time may ask; reports of jobs not its own are refused alone)."""
    _same_site(asked, asked.arg("resources").site, "request jobs")
    _reports_of(asked, _own_pilot_id(asked, unknown_ok=True), "turn")
    return asked.replaced(credential=asked.principal.name)


def _reports_of(asked: Asked, pilot_id: str, what: str) -> None:
    """Every report of the request is of ``pilot_id`` (``what``: a batch, a turn)."""
    for report in asked.arg("reports") or []:
        if report.pilot_id != pilot_id:
            raise Forbidden(
                f"{asked.who} may not report as pilot {_short(report.pilot_id, 80)} in a "
                f"{what} of pilot {pilot_id}"
            )


def _pilot_heartbeat(asked: Asked) -> Any:
    # For a job taken away from this pilot (rescheduled, killed) the service only answers
    # "kill it" and changes nothing: that answer is how the pilot learns to stop it.
    _own_pilot_id(asked, unknown_ok=False)
    return asked.args


def _pilot_stopped(asked: Asked) -> Any:
    _own_pilot_id(asked, unknown_ok=False)
    return asked.args


def _pilot_upload(asked: Asked) -> Any:
    _own_site(asked)
    return _upload_of_kind(asked, "output")


# --------------------------------------------------------------------------------------------
# Data: a user's own folder


def _own_folder_lfns(asked: Asked) -> list[str]:
    lfns = asked.arg("lfns")
    if lfns is None:
        files = asked.arg("files")
        lfns = [item.lfn for item in files] if files is not None else [asked.arg("lfn")]
    return [str(lfn) for lfn in lfns]


def _check_own_folder(asked: Asked, name: str = "") -> None:
    """Every LFN named is below ``/<vo>/user/<name>/`` (default: the principal's; the handler
    checks the LFN itself: a '..' in it is refused there)."""
    name = name or asked.principal.name
    for lfn in _own_folder_lfns(asked):
        parts = lfn.split("/")
        if len(parts) < 5 or parts[0] != "" or parts[2:4] != ["user", name]:
            raise Forbidden(
                f"{asked.who} may not change {_short(lfn, 120)}: users write only "
                f"under /<vo>/user/{name}/"
            )


def _user_data_write(asked: Asked) -> Any:
    _check_own_folder(asked)
    if asked.op == Op.CATALOG_REGISTER:
        groups = asked.principal.groups
        return asked.replaced(owner=asked.principal.name, group=groups[0] if groups else "")
    if asked.op == Op.TRANSFER_SUBMIT:
        return asked.replaced(owner=asked.principal.name)
    return asked.args


def _pilot_job_output(asked: Asked) -> Any:
    """A pilot registers (or asks to move) the output data of a job matched to it, under the
    job owner's folder, as the job owner's."""
    job_id = asked.arg("job_id")
    holder = asked.ownership.job_pilot(job_id) if job_id else None
    own = asked.principal.pilot_id
    if (
        not holder
        or asked.ownership.pilot_site(holder) != _own_site(asked)
        or (own and holder != own)
    ):
        raise Forbidden(
            f"{asked.who} may write grid files only as the output of a job matched "
            f"to it (job {job_id} is not)"
        )
    # a credential for any pilot of the site acts only as pilots no other credential is bound to
    if not own and asked.ownership.pilot_credential(holder) not in ("", asked.principal.name):
        raise Forbidden(
            f"{asked.who} may write grid files only as the output of a job matched "
            f"to it (job {job_id} is matched to a pilot another credential acts as)"
        )
    owner = str(asked.ownership.job_owner(job_id))
    _check_own_folder(asked, owner)
    return asked.replaced(owner=owner)


def _user_rule(asked: Asked) -> Any:
    """A user's rule covers its own folder only (a folder below it, or the folder itself)."""
    folder = str(asked.arg("folder")).rstrip("/")
    parts = folder.split("/")
    if len(parts) < 4 or parts[0] != "" or parts[2:4] != ["user", asked.principal.name]:
        raise Forbidden(
            f"{asked.who} may not add a rule on {_short(folder, 120)}: users "
            f"only on /<vo>/user/{asked.principal.name}"
        )
    return asked.replaced(owner=asked.principal.name)


def _report_bad_replica(asked: Asked) -> Any:
    """A reader (user or pilot) that found a replica corrupted or missing reports it Bad, with
    what it found; only operators and agents mark a replica Good again."""
    if asked.arg("status") != "Bad":
        raise Forbidden(f"{asked.who} may only report a replica Bad (operators mark it Good)")
    if not str(asked.arg("reason")).strip():
        raise Forbidden(f"{asked.who} must say what it found wrong with the replica")
    return asked.args


def _own_agent_name(asked: Asked) -> Any:
    if asked.arg("agent") != asked.principal.name:
        raise Forbidden(
            f"{asked.who} may not act as agent {_short(asked.arg('agent'))}: only as itself"
        )
    return asked.args


def _user_transfers(asked: Asked) -> Any:
    owner = asked.arg("owner")
    if owner is not None and owner != asked.principal.name:
        raise Forbidden(f"{asked.who} may not list the transfers of {_short(owner)}")
    return asked.replaced(owner=asked.principal.name)


# --------------------------------------------------------------------------------------------
# The table: op -> the roles besides admin that may run it, each with its check

_O, _U, _D, _P, _A = Role.OPERATOR, Role.USER, Role.DIRECTOR, Role.PILOT, Role.AGENT
_M = Role.MONITOR

RULES: dict[str, dict[Role, Check]] = {
    Op.PING: {
        _O: _anything,
        _U: _anything,
        _D: _anything,
        _P: _anything,
        _A: _anything,
        _M: _anything,
    },
    Op.SUBMIT: {_U: _user_submit, _M: _monitor_submit},
    Op.STATUS: {_O: _anything, _U: _own_jobs, _A: _anything, _M: _anything},
    Op.LIST_JOBS: {_O: _anything, _U: _user_listing, _A: _anything, _M: _anything},
    Op.KILL: {_U: _own_jobs, _M: _own_jobs},
    Op.RESCHEDULE: {_U: _own_jobs},
    Op.HISTORY: {_O: _anything, _U: _own_jobs},
    Op.REQUEST_JOB: {_P: _pilot_request},
    Op.REQUEST_JOBS: {_P: _pilot_request},
    Op.ELIGIBLE: {_O: _anything, _D: _director_eligible},
    Op.UPDATE_STATUS: {_P: _pilot_report},
    Op.UPDATE_STATUSES: {_P: _pilot_reports},
    Op.PILOT_TURN: {_P: _pilot_turn},
    Op.HEARTBEAT: {_P: _pilot_heartbeat},
    Op.SITES: {_O: _anything, _A: _anything, _M: _anything},
    Op.BAN_SITE: {_O: _anything},
    Op.UNBAN_SITE: {_O: _anything},
    Op.TASK_QUEUES: {_O: _anything, _A: _anything},
    Op.SHARES: {_O: _anything, _A: _anything},
    Op.SET_SHARE: {_O: _anything},
    Op.ADD_PILOTS: {_D: _director_add},
    Op.UPDATE_PILOTS: {_D: _director_updates},
    Op.PILOTS: {_O: _anything, _D: _director_listing, _A: _anything, _M: _anything},
    Op.PILOT_OUTPUT: {_O: _anything, _D: _director_pilot_output},
    Op.KILL_PILOT: {_O: _anything},
    Op.SANDBOX_UPLOAD: {_U: _user_upload, _P: _pilot_upload},
    Op.SANDBOX_DOWNLOAD: {_U: _user_download, _P: _pilot_download, _M: _monitor_download},
    Op.JOB_OUTPUT: {_U: _own_jobs, _M: _own_jobs},
    Op.IDENTITY_ADD: {},
    Op.IDENTITY_LIST: {},
    Op.IDENTITY_REVOKE: {},
    Op.PILOT_TOKEN: {_D: _director_token},
    Op.SE_LIST: {_O: _anything, _U: _anything, _D: _anything, _P: _anything, _A: _anything},
    Op.SE_SET_STATUS: {_O: _anything, _A: _anything},
    Op.CATALOG_REGISTER: {_U: _user_data_write, _P: _pilot_job_output},
    Op.CATALOG_FILES: {_O: _anything, _U: _anything, _P: _anything, _A: _anything},
    Op.CATALOG_LIST: {_O: _anything, _U: _anything, _P: _anything, _A: _anything},
    Op.CATALOG_REMOVE: {_U: _user_data_write},
    Op.CATALOG_REPLICA_STATUS: {
        _O: _anything,
        _A: _anything,
        _U: _report_bad_replica,
        _P: _report_bad_replica,
    },
    Op.TRANSFER_SUBMIT: {_O: _anything, _U: _user_data_write, _P: _pilot_job_output},
    Op.TRANSFER_REQUEST: {_A: _own_agent_name},
    Op.TRANSFER_UPDATE: {_A: _own_agent_name},
    Op.TRANSFERS: {_O: _anything, _U: _user_transfers, _A: _anything},
    Op.RULE_ADD: {_O: _anything, _U: _user_rule},
    Op.RULES: {_O: _anything, _U: _anything, _A: _anything},
    Op.RULE_REMOVE: {_O: _anything},
    Op.JOB_DESCRIPTION: {_O: _anything, _U: _own_jobs},
    Op.DELETE: {_U: _own_jobs},
    Op.PEEK: {_O: _anything, _U: _own_jobs},
    Op.PILOT_STOPPED: {_P: _pilot_stopped},
    # operators' console (issue 14)
    Op.WHY: {_O: _anything, _U: _own_jobs, _A: _anything},
    Op.SELECT_JOBS: {_O: _anything, _U: _user_selection, _A: _anything},
    Op.BULK: {_U: _user_selection},
    Op.BULK_STATUS: {_O: _anything, _U: _user_selection},
    Op.SITE_SHOW: {_O: _anything, _A: _anything},
    Op.SITE_DRAIN: {_O: _anything},
    Op.SITE_LIMIT: {_O: _anything},
    Op.PILOT_SUMMARY: {_O: _anything, _A: _anything},
    Op.PROBE_REPORT: {_M: _anything},
    Op.PROBE_RESULTS: {_O: _anything, _M: _anything},
    Op.RESOURCE_STATUS: {_O: _anything, _A: _anything, _M: _anything},
    Op.SET_STATUS: {_M: _anything},
    Op.DOWNTIME_ADD: {_O: _anything},
    Op.DOWNTIME_LIST: {_O: _anything, _A: _anything, _M: _anything},
    Op.DOWNTIME_CANCEL: {_O: _anything},
    Op.SERVICE_STATUS: {_O: _anything, _A: _anything, _M: _anything},
}
