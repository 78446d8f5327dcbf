"""The dashboard's web application (Flask; Jinja2 templates, autoescaped; server-side SVG plots).

Pages: ``/`` overview, ``/jobs`` search, ``/jobs/<id>`` one job (history, JDL, resource usage
over time, why it waits, output, kill and reschedule), ``/sites`` (with the availability grids),
``/transfers``, ``/accounting``, ``/login``. Parts of the overview, sites and job pages
refresh themselves (``static/live.js`` fetches ``/fragment/...`` and swaps it in).

Every page but the login needs a session, made from a login token (:mod:`services.web.auth`).
What a principal sees is decided by :func:`dirac_like.authz.authorize`, the function the central
service runs for the same operation: LIST_JOBS for searches and counts, STATUS and HISTORY for a
job, JOB_OUTPUT for its output, SITES and SHARES for those pages and panels. A refused job looks
exactly like a missing one (404), so a user learns nothing of other users' jobs. Kill and
reschedule are checked with KILL and RESCHEDULE first, then sent to the central service with the
dashboard's own identity (which the service checks again), and logged with the user's name.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from dirac_like.accounting import DAY, HOUR, Report, ReportQuery
from dirac_like.authz import authorize
from dirac_like.availability import target_figures
from dirac_like.errors import DiracLikeError, Forbidden, NotFound, StoreError
from dirac_like.protocol import ARGUMENTS, JobIdArgs, JobIdsArgs, ListJobsArgs, Op
from dirac_like.states import TRANSITIONS, JobStatus
from dirac_like.web_login import LoginRefused

from ..accounting_store import AccountingReader
from . import plots
from .dashboard import Dashboard
from .reader import JobRow
from .sandboxes import open_sandboxes
from .views import (
    PILOT_STATE_ORDER,
    STATUS_ORDER,
    TRANSFER_STATES,
    AvailabilityGrid,
    BadQuery,
    availability_grid,
    jdl_lines,
    may,
    next_page,
    overview,
    parse_job_query,
    pilots_by_site,
    site_rows,
    transfer_links,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CHUNK_BYTES = 1024 * 1024
GRID_DAYS = 14
WAITING_STATUSES = (JobStatus.WAITING.value, JobStatus.RESCHEDULED.value)


def create_app(dashboard: Dashboard) -> Flask:
    app = Flask(
        __name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static")
    )
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),  # sessions last as long as this process
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=dashboard.settings.session_hours),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.extensions["dashboard"] = dashboard
    _add_hooks(app, dashboard)
    _add_error_handlers(app)
    _add_login_routes(app, dashboard)
    _add_page_routes(app, dashboard)
    _add_job_routes(app, dashboard)
    _add_transfer_routes(app, dashboard)
    return app


# -- every request -------------------------------------------------------------------------------


def _add_hooks(app: Flask, dashboard: Dashboard) -> None:
    @app.before_request
    def identify() -> Any:
        g.principal = None
        if request.endpoint in ("login", "static"):
            return None
        public_key = session.get("key")
        if public_key:
            try:
                g.principal = dashboard.gate.principal(public_key, dashboard.clock())
            except LoginRefused as exc:
                log.info("web session ended: %s", exc.message)
                session.clear()
        if g.principal is None:
            if request.path.startswith("/fragment/") or request.method != "GET":
                abort(401)
            return redirect(url_for("login", next=request.full_path.rstrip("?")))
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # login tokens travel in URLs
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def common() -> dict[str, Any]:
        principal = g.get("principal")
        return {
            "principal": principal,
            "may": (lambda op: may(principal, op)) if principal else (lambda op: False),
            "refresh": dashboard.settings.refresh_seconds,
            "when": _when,
            "csrf": session.get("csrf", ""),
        }


def _add_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error_page(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(BadQuery)
    def bad_query(exc: BadQuery) -> Any:
        return _error_page(400, str(exc))

    @app.errorhandler(Forbidden)
    def forbidden(exc: Forbidden) -> Any:
        return _error_page(403, "not for you: " + exc.message)

    @app.errorhandler(StoreError)
    def store_error(exc: StoreError) -> Any:
        log.error("web: %s", exc.message)
        return _error_page(503, "the job store cannot be read right now; try again")

    @app.errorhandler(DiracLikeError)
    def refused(exc: DiracLikeError) -> Any:
        return _error_page(409, exc.message)


def _error_page(code: int, message: str) -> Any:
    if request.path.startswith("/fragment/"):
        return message, code
    return render_template("error.html", code=code, message=message), code


def _when(stamp: float) -> str:
    if not stamp:
        return ""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- login ---------------------------------------------------------------------------------------


def _add_login_routes(app: Flask, dashboard: Dashboard) -> None:
    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        token = request.values.get("token", "")
        target = _local_path(request.values.get("next", ""))
        if not token:
            return render_template("login.html", next=target)
        try:
            claim = dashboard.gate.login(token, dashboard.clock())
        except LoginRefused as exc:
            log.info("web login refused: %s", exc.message)
            message = "This login link is not valid (expired, used, or not yours)."
            return render_template("login.html", next=target, error=message), 403
        session.clear()
        session.permanent = True
        session.update(key=claim.public_key, csrf=secrets.token_urlsafe(24))
        return redirect(target)

    @app.post("/logout")
    def logout() -> Any:
        _check_csrf()
        session.clear()
        return redirect(url_for("login"))


def _local_path(target: str) -> str:
    """``target`` if it is a path on this site, else the overview (no open redirects)."""
    if (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and all(32 <= ord(char) < 127 for char in target)
    ):
        return target
    return "/"


def _check_csrf() -> None:
    expected = session.get("csrf", "")
    if not expected or not secrets.compare_digest(expected, request.form.get("csrf", "")):
        abort(403, "the form is stale: reload the page and try again")


# -- overview, sites, accounting -----------------------------------------------------------------


def _owner_filter(dashboard: Dashboard) -> str | None:
    """Whose jobs the principal's counts cover: their own for a user, all (None) otherwise."""
    allowed: ListJobsArgs = authorize(g.principal, Op.LIST_JOBS, ListJobsArgs(), dashboard.reader)
    return allowed.owner


def _overview_context(dashboard: Dashboard) -> dict[str, Any]:
    summary = overview(dashboard.counts(_owner_filter(dashboard)))
    context: dict[str, Any] = {
        "summary": summary,
        "status_svg": dashboard.svg(
            ("status", repr(summary.by_status)),
            lambda: plots.bar_chart(summary.by_status, "Jobs by status", plots.STATUS_COLOURS),
        ),
        "site_svg": _sites_svg(dashboard, summary.by_site),
    }
    if may(g.principal, Op.SHARES):
        series, targets = dashboard.share_timeline()
        context["shares"] = dashboard.latest_shares()
        now = dashboard.clock()
        last = max((t for points in series.values() for t, _ in points), default=0.0)
        context["share_svg"] = dashboard.svg(
            ("shares", repr(series), repr(targets), int(now - last)),
            lambda: plots.share_timeline(series, targets, "Realised share vs target", now),
        )
    return context


def _sites_svg(dashboard: Dashboard, by_site: list[tuple[str, dict[str, int]]]) -> str:
    return dashboard.svg(
        ("sites", repr(by_site)),
        lambda: plots.stacked_bars(
            by_site,
            STATUS_ORDER,
            "Jobs by site and status",
            plots.STATUS_COLOURS,
            empty="no job reached a site yet",
        ),
    )


def _add_page_routes(app: Flask, dashboard: Dashboard) -> None:
    @app.get("/")
    def index() -> Any:
        return render_template("overview.html", **_overview_context(dashboard))

    @app.get("/fragment/overview")
    def overview_fragment() -> Any:
        return render_template("overview_panels.html", **_overview_context(dashboard))

    @app.get("/sites")
    def sites() -> Any:
        return render_template("sites.html", **_sites_context(dashboard))

    @app.get("/fragment/sites")
    def sites_fragment() -> Any:
        return render_template("sites_panels.html", **_sites_context(dashboard))

    @app.get("/accounting")
    def accounting() -> Any:
        source = dashboard.accounting
        panels = None if source is None else source.plots(g.principal, dashboard.clock())
        return render_template("accounting.html", panels=panels)


def _sites_context(dashboard: Dashboard) -> dict[str, Any]:
    authorize(g.principal, Op.SITES, None, dashboard.reader)
    reader = dashboard.reader
    pilots = reader.pilot_counts()
    by_site = pilots_by_site(pilots)
    counts = dashboard.counts(None)
    return {
        "grids": dashboard.timed("availability", lambda: _availability_grids(dashboard)),
        "sites": site_rows(reader.sites(), counts, pilots, reader.site_statuses()),
        "jobs_svg": _sites_svg(dashboard, overview(counts).by_site),
        "pilots_svg": dashboard.svg(
            ("pilots", repr(by_site)),
            lambda: plots.stacked_bars(
                by_site,
                PILOT_STATE_ORDER,
                "Pilots by site and state",
                plots.PILOT_COLOURS,
                empty="no pilot yet",
                unit="pilots",
            ),
        ),
    }


def _availability_grids(dashboard: Dashboard) -> list[AvailabilityGrid]:
    """The last 24 hours by hour and the last 14 days by day (WLCG availability)."""
    reader, now = dashboard.reader, dashboard.clock()
    validity = dashboard.settings.availability_validity
    first = now - GRID_DAYS * DAY
    results = reader.probe_outcomes(first - validity)
    downtimes = reader.downtimes(first)
    statuses = reader.resource_statuses()
    grids = []
    for title, since, period in (
        ("Availability, last 24 hours (UTC hours)", now - DAY, "hour"),
        (f"Availability, last {GRID_DAYS} days (UTC days)", first, "day"),
    ):
        targets = target_figures(results, downtimes, statuses, since, now, period, validity)
        grids.append(availability_grid(targets, title, hourly=period == "hour"))
    return grids


# -- transfers -----------------------------------------------------------------------------------


def _add_transfer_routes(app: Flask, dashboard: Dashboard) -> None:
    @app.get("/transfers")
    def transfers() -> Any:
        return render_template("transfers.html", **_transfers_context(dashboard))

    @app.get("/fragment/transfers")
    def transfers_fragment() -> Any:
        return render_template("transfers_panels.html", **_transfers_context(dashboard))


def _transfers_context(dashboard: Dashboard) -> dict[str, Any]:
    """Every transfer request's state by link, the recent failures with their reasons, and the
    throughput by link from the transfer accounting (operators, admins and monitors, like the
    sites page: transfers name files and SEs of every user)."""
    authorize(g.principal, Op.SITES, None, dashboard.reader)
    reader = dashboard.reader
    links = transfer_links(reader.transfer_counts())
    return {
        "links": links,
        "states": TRANSFER_STATES,
        "failures": reader.failed_transfers(),
        "throughput_svg": dashboard.timed("throughput", lambda: _throughput_svg(dashboard)),
        "states_svg": dashboard.svg(
            ("transfer-states", repr(links)),
            lambda: plots.stacked_bars(
                [(link.name, link.states) for link in links],
                TRANSFER_STATES,
                "Transfer requests by link and state",
                plots.TRANSFER_COLOURS,
                empty="no transfer requested yet",
                unit="requests",
            ),
        ),
    }


def _throughput_svg(dashboard: Dashboard) -> str:
    """Bytes verified at their destination per hour, by link, over the last day, as MB/s."""
    query = ReportQuery.make("transfer-bytes", "link", DAY, HOUR, dashboard.clock())
    try:
        with AccountingReader(dashboard.settings.store_url) as accounting:
            report = accounting.report(query)
    except StoreError as exc:
        log.warning("web: no transfer accounting: %s", exc.message)
        report = Report(query, [])
    rates = {
        label: [value / HOUR / 1e6 for value in values] for label, values in report.series.items()
    }
    return plots.time_bars(
        report.times, rates, "Throughput by link, last 24 hours (hourly mean)", "MB/s"
    )


# -- jobs ----------------------------------------------------------------------------------------


def _add_job_routes(app: Flask, dashboard: Dashboard) -> None:
    @app.get("/jobs")
    def jobs() -> Any:
        query = parse_job_query(request.args, g.principal, dashboard.reader)
        rows = dashboard.reader.search(query)
        return render_template(
            "jobs.html",
            query=query,
            rows=rows,
            next_page=next_page(query, rows),
            statuses=STATUS_ORDER,
        )

    @app.get("/jobs/<int:job_id>")
    def job(job_id: int) -> Any:
        return render_template("job.html", **_job_context(dashboard, job_id))

    @app.get("/fragment/jobs/<int:job_id>")
    def job_fragment(job_id: int) -> Any:
        return render_template("job_panels.html", **_job_context(dashboard, job_id))

    @app.get("/jobs/<int:job_id>/output")
    def job_output(job_id: int) -> Any:
        _visible_job(dashboard, job_id, Op.JOB_OUTPUT)
        sha256 = dashboard.reader.output_sandbox(job_id)
        if sha256 is None:
            abort(404, f"job {job_id} has no output sandbox (yet)")
        settings = dashboard.settings
        store = open_sandboxes(settings.home, settings.store_url, settings.sandbox_max_bytes)
        try:
            found = store.has(sha256)
        except BaseException:
            store.close()
            raise
        if not found:
            store.close()
            abort(404, f"the output sandbox of job {job_id} is gone (collected)")
        return Response(
            _chunks(store, sha256),
            mimetype="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="job-{job_id}-output.tar.gz"'},
        )

    @app.post("/jobs/<int:job_id>/<any(kill, reschedule):action>")
    def job_action(job_id: int, action: str) -> Any:
        _check_csrf()
        _visible_job(dashboard, job_id, Op.STATUS)
        op = Op.KILL if action == "kill" else Op.RESCHEDULE
        authorize(g.principal, op, JobIdsArgs([job_id]), dashboard.reader)  # Forbidden: 403
        if dashboard.actions is None:
            abort(403, "this dashboard is read-only (started without an identity)")
        log.info(
            "web: %s %s asks to %s job %d", g.principal.role.value, g.principal.name, action, job_id
        )
        do = dashboard.actions.kill if action == "kill" else dashboard.actions.reschedule
        try:
            flash(do([job_id]))
        except DiracLikeError as exc:
            flash(f"{action} of job {job_id} refused: {exc.message}")
        return redirect(url_for("job", job_id=job_id))


def _visible_job(dashboard: Dashboard, job_id: int, op: str) -> None:
    """404 unless the job exists and the principal may run ``op`` on it (a refusal and a
    missing job look the same)."""
    args = JobIdsArgs([job_id]) if ARGUMENTS[op] is JobIdsArgs else JobIdArgs(job_id)
    try:
        if dashboard.reader.job_owner(job_id) is None:
            raise NotFound(f"job {job_id}")
        authorize(g.principal, op, args, dashboard.reader)
    except (Forbidden, NotFound):
        abort(404, f"No job {job_id} that you may see.")


def _allowed(dashboard: Dashboard, job_id: int, op: str) -> bool:
    try:
        _visible_job(dashboard, job_id, op)
    except HTTPException:
        return False
    return True


def _job_context(dashboard: Dashboard, job_id: int) -> dict[str, Any]:
    _visible_job(dashboard, job_id, Op.STATUS)
    reader = dashboard.reader
    job = reader.job(job_id)
    if job is None:
        abort(404, f"No job {job_id} that you may see.")
    allowed = {
        op: _allowed(dashboard, job_id, op)
        for op in (
            Op.HISTORY,
            Op.JOB_DESCRIPTION,
            Op.JOB_OUTPUT,
            Op.KILL,
            Op.RESCHEDULE,
            Op.WHY,
        )
    }
    next_statuses = TRANSITIONS[JobStatus(job.status)]
    actions = dashboard.actions is not None
    description = reader.description(job_id) if allowed[Op.JOB_DESCRIPTION] else None
    samples = reader.usage_samples(job_id, job.attempt)
    return {
        "why": _why(dashboard, job) if allowed[Op.WHY] else None,
        "usage_svg": dashboard.svg(
            ("usage", job_id, job.attempt, len(samples), tuple(samples[-1:])),
            lambda: plots.usage_timeline(
                samples,
                f"Resource usage of attempt {job.attempt}",
                samples[0][0] if samples else 0.0,
            ),
        ),
        "job": job,
        "history": reader.history(job_id) if allowed[Op.HISTORY] else None,
        "jdl": None if description is None else jdl_lines(description),
        "has_output": allowed[Op.JOB_OUTPUT] and reader.output_sandbox(job_id) is not None,
        "can_kill": actions and allowed[Op.KILL] and JobStatus.KILLED in next_statuses,
        "can_reschedule": (
            actions and allowed[Op.RESCHEDULE] and JobStatus.RESCHEDULED in next_statuses
        ),
    }


def _why(dashboard: Dashboard, job: JobRow) -> str | None:
    """The central service's "why is it waiting" for a waiting job (None for any other)."""
    if job.status not in WAITING_STATUSES:
        return None
    if dashboard.actions is None:
        return "why it waits: this dashboard has no identity to ask the central service"
    try:
        reply = dashboard.actions.why(job.job_id)
    except DiracLikeError as exc:
        return f"why it waits: the central service did not answer ({exc.message})"
    return " ".join([reply.reason, *reply.details])


def _chunks(store: Any, sha256: str) -> Iterator[bytes]:
    """The archive in pieces; the store is closed once it is sent (or the download ends)."""
    try:
        offset = 0
        while True:
            data, _size = store.read_chunk(sha256, offset, CHUNK_BYTES)
            if not data:
                return
            offset += len(data)
            yield data
    finally:
        store.close()
