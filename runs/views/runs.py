"""The team's run history (the team's home page) and the run page, with their live regions.

Both pages read only the local database: opening them never causes an upstream call. While
something is in flight each page keeps ONE htmx poll going, answered with just the regions
that changed (as out-of-band swaps), and the poll stops with HTTP 286 once nothing is left
to wait for.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, reswap, retarget
from django_htmx.middleware import HtmxDetails

from runs.access import AuthedRequest, membership_for, run_for
from runs.connection import ConnectionUnavailable, client_for_team
from runs.dates import EARLIEST, LATEST
from runs.history import (
    STATUS_CHOICES,
    HistoryFilters,
    input_order,
    model_choices,
    needs_refresh,
    page_runs,
    parse_uuids,
    team_runs,
    with_star_flags,
)
from runs.models import (
    Delivery,
    Membership,
    NodeRun,
    Output,
    Role,
    Run,
    RunflowKey,
    Star,
    Team,
)
from runs.runflow.errors import RunflowError
from runs.tasks.polling import poll_soon
from runs.tasks.workspace import send_feedback

logger = logging.getLogger(__name__)

LOG_LIMIT = 500  # lines rendered on a full page; older ones are counted, not shown
DELIVERY_LIMIT = 20
POLL_MS = 1500
# The run page's live regions, in the order of their digests in the poll's ``v`` parameter.
REGIONS = ("run", "steps", "outputs", "deliveries")
LIVE_ROWS_SECONDS = 2  # history rows in flight
NEW_ROWS_SECONDS = 5  # a first page with nothing in flight, waiting for new runs


class WorkspaceRequest(AuthedRequest):
    htmx: HtmxDetails


def render_region(
    request: WorkspaceRequest, template: str, region: str, context: dict[str, Any]
) -> HttpResponse:
    """The whole page, or only ``region`` for an htmx request from the page itself.

    A history restore (Back after an htmx navigation) asks for the whole page, and the
    response varies on HX-Request so no cache hands a fragment to a normal visit.
    """
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, f"{template}#{region}" if partial else template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


# ---------------------------------------------------------------- history


def _history_runs(team: Team, user: Any) -> Any:
    outputs = Prefetch("outputs", queryset=Output.objects.order_by("index"))
    return with_star_flags(team_runs(team).select_related("created_by"), user).prefetch_related(
        outputs
    )


def _live_ids(runs: list[Run]) -> list[str]:
    return [str(run.uuid) for run in runs if needs_refresh(run, run.outputs.all())]


def _rows_poll(
    team: Team, live_ids: list[str], *, watch: HistoryFilters | None, top: str
) -> dict[str, Any]:
    """The history's one poll: the visible runs that may still change and, on the first
    page (``watch`` set), runs matching the filters launched above ``top`` since.

    The filters travel as hidden inputs inside the poller (``hx-include="this"``), not in
    its ``hx-get``: what a person typed into the search box never lands in an hx- attribute.
    """
    query = [("ids", uuid) for uuid in live_ids]
    if watch is not None:
        query.append(("new", "1"))
        if top:
            query.append(("top", top))
    url = reverse("runs:run_rows", args=[team.uuid]) + "?" + urlencode(query) if query else ""
    return {
        "rows_url": url,
        "poll_filters": list(watch.params().items()) if watch is not None else [],
        # Rows in flight change every few seconds; a page only waiting for new runs asks less.
        "poll_seconds": LIVE_ROWS_SECONDS if live_ids else NEW_ROWS_SECONDS,
    }


def _history_context(
    request: WorkspaceRequest,
    membership: Membership,
    filters: HistoryFilters,
    *,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    runs = filters.apply_to_runs(_history_runs(membership.team, request.user), request.user)
    page = page_runs(membership.team, runs, after=after, before=before)
    top = str(page.items[0].uuid) if page.items else ""
    watch = filters if page.is_first else None
    return {
        "team": membership.team,
        "membership": membership,
        "filters": filters,
        "page": page,
        "runs": page.items,
        **_rows_poll(membership.team, _live_ids(page.items), watch=watch, top=top),
        "status_choices": STATUS_CHOICES,
        # The date pickers offer only the days the filters accept (runs.dates).
        "earliest_day": EARLIEST,
        "latest_day": LATEST,
        "model_choices": model_choices(membership.team),
        "members": membership.team.memberships.select_related("user").order_by("user__username"),
        "filter_params": filters.params(),
        # The export takes the history's own filters (not the page cursors): every run
        # this view matches, in one file.
        "export_query": urlencode(filters.params()),
    }


@login_required
@require_GET
def run_list(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    filters = HistoryFilters.from_query(request.GET)
    context = _history_context(
        request,
        membership,
        filters,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    return render_region(request, "runs/run_list.html", "history", context)


@login_required
@require_GET
def run_rows(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    """The history's one poll: fresh rows for the visible in-flight runs, as OOB swaps, and
    on the first page the runs launched since (by anyone) to put at the top."""
    membership = membership_for(request, team)
    wanted = parse_uuids(request.GET.getlist("ids"), limit=100)
    runs = list(_history_runs(membership.team, request.user).filter(uuid__in=wanted))
    runs.sort(key=lambda run: (run.created_at, run.pk), reverse=True)
    watch = HistoryFilters.from_query(request.GET) if request.GET.get("new") == "1" else None
    top = request.GET.get("top", "")
    new_runs: list[Run] = []
    if watch is not None and not top:
        if _first_runs_arrived(request, membership, watch):
            return _whole_history(request, membership, watch)
    elif watch is not None:
        new_runs = _runs_above(request, membership, watch, top)
    poll = _rows_poll(
        membership.team,
        _live_ids(new_runs + runs),
        watch=watch,
        top=str(new_runs[0].uuid) if new_runs else top,
    )
    context = {
        "team": membership.team,
        "membership": membership,
        "runs": runs,
        "new_runs": new_runs,
        "oob": True,
        **poll,
    }
    status = 200 if poll["rows_url"] else HTMX_STOP_POLLING
    return render(request, "runs/run_list.html#rows", context, status=status)


def _runs_above(
    request: WorkspaceRequest, membership: Membership, filters: HistoryFilters, top: str
) -> list[Run]:
    """Runs newer than ``top`` (the first row on screen), the ones just above it first.

    This is the history's own keyset page towards newer runs, so rows arrive without a gap
    however many were launched meanwhile, and the page's "Older" cursor (its last row)
    stays right. An unknown ``top`` (a run deleted since) brings nothing: page_runs would
    answer the newest page, and rows already on screen would be shown twice.
    """
    anchor = parse_uuids([top], limit=1)
    if not anchor or not Run.objects.filter(team=membership.team, uuid=anchor[0]).exists():
        return []
    runs = filters.apply_to_runs(_history_runs(membership.team, request.user), request.user)
    return page_runs(membership.team, runs, before=top).items


def _first_runs_arrived(
    request: WorkspaceRequest, membership: Membership, filters: HistoryFilters
) -> bool:
    return filters.apply_to_runs(team_runs(membership.team), request.user).exists()


def _whole_history(
    request: WorkspaceRequest, membership: Membership, filters: HistoryFilters
) -> HttpResponse:
    """An empty history got its first runs: it has no table to add rows to, so the poll
    replaces the whole region (with its table, pager and new poll)."""
    context = _history_context(request, membership, filters)
    response = render(request, "runs/run_list.html#history", context)
    return reswap(retarget(response, "#history"), "outerHTML")


# ---------------------------------------------------------------- the run page


def _digest(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:10]


def _run_regions(run: Run) -> dict[str, Any]:
    """Everything the live regions show, plus a short digest of each region's data.

    The poll sends back the digests it last saw; only regions whose digest changed are
    rendered again, so images are not re-created (no flicker) and a quiet poll is tiny.
    """
    outputs = list(run.outputs.order_by("index"))
    steps = list(run.node_runs.all())
    deliveries_total = run.deliveries.count()
    deliveries = list(run.deliveries.order_by("-received_at", "-id")[:DELIVERY_LIMIT])
    logs_total = run.logs.count()
    logs = list(run.logs.order_by("-id")[:LOG_LIMIT])[::-1]
    return {
        "outputs": outputs,
        "steps": steps,
        "deliveries": deliveries,
        "deliveries_total": deliveries_total,
        "logs": logs,
        "logs_total": logs_total,
        "logs_hidden": max(0, logs_total - len(logs)),
        "digests": _digests(run, outputs, steps, deliveries_total, deliveries[:1]),
        "live": needs_refresh(run, outputs),
    }


def _digests(
    run: Run,
    outputs: list[Output],
    steps: list[NodeRun],
    deliveries_total: int,
    latest_delivery: list[Delivery],
) -> dict[str, str]:
    """One digest per live region, from only the fields that region shows.

    Shared by the full regions and the quiet-poll check (which loads just these fields), so
    the two can never disagree about what "changed" means.
    """
    return {
        "run": _digest(
            run.status,
            run.updated_at,
            run.cost,
            run.duration_ms,
            run.nodes_total,
            run.nodes_completed,
            run.failure_code,
            run.failure_message,
            run.completed_at,
            run.stuck_since,
            run.has_anomaly,
            run.field_errors,
        ),
        "steps": _digest(
            [(s.pk, s.state, s.duration_ms, s.completed_at, s.retry_count) for s in steps]
        ),
        "outputs": _digest([(o.uuid, o.archive_state, o.width, o.thumbnail.name) for o in outputs]),
        "deliveries": _digest(deliveries_total, [(d.pk, d.outcome) for d in latest_delivery]),
    }


def _quiet_poll(request: WorkspaceRequest, run: Run) -> HttpResponse | None:
    """The answer to a poll when nothing changed, or None when something did.

    Most polls find nothing new. Their answer (the poller alone, or 286 to stop) is decided
    here from the fields the digests use, without loading the regions' rows (log lines,
    ledger bodies) or rendering them: half of a full page's server time before.
    """
    outputs = list(
        run.outputs.order_by("index").only("uuid", "archive_state", "width", "thumbnail")
    )
    steps = list(run.node_runs.only("state", "duration_ms", "completed_at", "retry_count"))
    deliveries_total = run.deliveries.count()
    latest = list(run.deliveries.order_by("-received_at", "-id").only("outcome")[:1])
    logs_total = run.logs.count()
    digests = _digests(run, outputs, steps, deliveries_total, latest)
    known = request.GET.get("v", "").split(".")
    logs_seen = _logs_seen(request, logs_total)
    if known != [digests[k] for k in REGIONS] or logs_seen < logs_total:
        return None
    live = needs_refresh(run, outputs)
    context = {
        "live": live,
        "poll_url": _poll_url(run, {"digests": digests}, logs_seen),
        "poll_ms": POLL_MS,
    }
    status = 200 if live else HTMX_STOP_POLLING
    return render(request, "runs/run_detail.html#poller", context, status=status)


def _logs_seen(request: WorkspaceRequest, logs_total: int) -> int:
    """How many log lines the page holds (its ``logs`` parameter; all of them if unreadable)."""
    try:
        return max(0, int(request.GET.get("logs", "0")))
    except ValueError:
        return logs_total


def _poll_url(run: Run, regions: dict[str, Any], logs_seen: int) -> str:
    query = {
        "live": "1",
        "logs": str(logs_seen),
        "v": ".".join(regions["digests"][k] for k in REGIONS),
    }
    return reverse("runs:run", args=[run.team.uuid, run.uuid]) + "?" + urlencode(query)


def _run_context(request: WorkspaceRequest, membership: Membership, run: Run) -> dict[str, Any]:
    regions = _run_regions(run)
    return {
        "team": membership.team,
        "membership": membership,
        "run": run,
        "parent": run.parent if run.parent and run.parent.deleted_at is None else None,
        "input_order": input_order([run]),
        "starred": Star.objects.filter(user=request.user, run=run).exists(),
        "is_mine": run.created_by_id == request.user.pk,
        "share_count": run.share_links.filter(revoked_at__isnull=True).count(),
        "poll_url": _poll_url(run, regions, regions["logs_total"]),
        "poll_ms": POLL_MS,
        **regions,
    }


@login_required
@require_GET
def run_detail(request: WorkspaceRequest, team: UUID, run: UUID) -> HttpResponse:
    membership, run_obj = run_for(request, team, run)
    if request.htmx and request.GET.get("live"):
        return _live_update(request, membership, run_obj)
    return render(request, "runs/run_detail.html", _run_context(request, membership, run_obj))


def _live_update(request: WorkspaceRequest, membership: Membership, run: Run) -> HttpResponse:
    """Only what changed since the digests the page holds; 286 once there is nothing left."""
    quiet = _quiet_poll(request, run)
    if quiet is not None:
        return quiet
    regions = _run_regions(run)
    seen = regions["digests"]
    known = [*request.GET.get("v", "").split("."), "", "", "", ""]
    changed = {name: known[index] != seen[name] for index, name in enumerate(REGIONS)}
    logs_seen = _logs_seen(request, regions["logs_total"])
    new_logs = list(run.logs.order_by("id")[logs_seen : logs_seen + LOG_LIMIT])
    context = {
        "team": membership.team,
        "membership": membership,
        "run": run,
        "is_mine": run.created_by_id == request.user.pk,
        "oob": True,
        "changed": changed,
        "new_logs": new_logs,
        "poll_url": _poll_url(run, regions, logs_seen + len(new_logs)),
        "poll_ms": POLL_MS,
        **regions,
    }
    if changed["run"]:
        context["starred"] = Star.objects.filter(user=request.user, run=run).exists()
        context["share_count"] = run.share_links.filter(revoked_at__isnull=True).count()
    status = 200 if regions["live"] else HTMX_STOP_POLLING
    return render(request, "runs/run_detail.html#live", context, status=status)


# ---------------------------------------------------------------- actions


def run_key(run: Run) -> RunflowKey | None:
    """The key that launched the run, while it is still active: upstream, runs belong to the
    key's organization, so feedback and cancel must go through the same one."""
    key = run.key
    return key if key is not None and key.is_active else None


def _back(request: WorkspaceRequest, fallback: str) -> HttpResponse:
    """Redirect to ``next`` when it points at this site (B6), else to ``fallback``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


@login_required
@require_POST
def star(request: WorkspaceRequest, team: UUID, run: UUID) -> HttpResponse:
    """Toggle the user's star on a run (members and admins; stars are for launchers)."""
    membership, run_obj = run_for(request, team, run, role=Role.MEMBER)
    deleted, _ = Star.objects.filter(user=request.user, run=run_obj).delete()
    if not deleted:
        Star.objects.get_or_create(user=request.user, run=run_obj)
    if request.htmx:
        context = {
            "team": membership.team,
            "membership": membership,
            "run": run_obj,
            "starred": not deleted,
        }
        return render(request, "runs/_star.html", context)
    return _back(request, reverse("runs:run", args=[membership.team.uuid, run_obj.uuid]))


@login_required
@require_POST
def feedback(request: WorkspaceRequest, team: UUID, run: UUID) -> HttpResponse:
    """Thumbs up/down: kept on the run, and mirrored to Runflow by a background task."""
    membership, run_obj = run_for(request, team, run, role=Role.MEMBER)
    value = {"up": True, "down": False}.get(request.POST.get("value", ""))
    Run.objects.filter(pk=run_obj.pk).update(feedback=value)
    run_obj.feedback = value
    if value is None:
        note = "Feedback cleared here."
    elif run_obj.runflow_id is None:
        note = "Saved here; this run never reached Runflow, so nothing was sent."
    elif run_key(run_obj) is None and membership.team.default_key() is None:
        note = "Saved here, but not sent: this team has no Runflow key any more."
    else:
        send_feedback.enqueue(run_obj.pk)
        note = "Thanks: saved, and sent to Runflow."
    if request.htmx:
        context = {"team": membership.team, "membership": membership, "run": run_obj}
        return render(request, "runs/run_detail.html#feedback", {**context, "note": note})
    messages.info(request, note)
    return redirect("runs:run", membership.team.uuid, run_obj.uuid)


NO_CANCEL_KEY = (
    "Runflow cancels runs only with a service key (rf_svc_…) of the run's organisation. "
    "A team admin can add one on the Runflow connection page."
)


@login_required
@require_POST
def cancel(request: WorkspaceRequest, team: UUID, run: UUID) -> HttpResponse:
    """Admin-only cancel, through Runflow's admin route (needs an admin key upstream)."""
    membership, run_obj = run_for(request, team, run, role=Role.ADMIN)
    back = redirect("runs:run", membership.team.uuid, run_obj.uuid)
    if not run_obj.is_in_flight or run_obj.runflow_id is None:
        messages.warning(request, "Only a run that Runflow is working on can be canceled.")
        return back
    key = run_obj.cancel_key()
    if key is None:
        messages.error(request, NO_CANCEL_KEY)
        return back
    reason = f"Canceled from the site by {request.user.get_username()}"
    try:
        with client_for_team(membership.team, key=key) as client:
            client.cancel_run(str(run_obj.runflow_id), reason=reason)
    except ConnectionUnavailable as exc:
        messages.error(request, f"Could not cancel: {exc.message}")
        return back
    except RunflowError as exc:
        messages.error(request, f"Runflow did not cancel the run: {exc.message}")
        return back
    messages.success(request, "Cancel requested. The run shows as canceled once Runflow confirms.")
    poll_soon(run_obj)
    return back
