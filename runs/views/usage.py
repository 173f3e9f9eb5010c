"""The team's Usage page (spend, runs, durations, balance) and the run exports."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from runs import charts, export, usage
from runs.access import AuthedRequest, membership_for
from runs.models import Role, Status, Team
from runs.pricing import format_usd

STATUS_TONES = {
    Status.SUCCEEDED: "ok",
    Status.PARTIAL_SUCCEEDED: "warn",
    Status.FAILED: "bad",
    Status.CANCELED: "muted",
    Status.RUNNING: "info",
    Status.DISPATCHING: "info",
    Status.QUEUED: "faint",
    Status.PENDING: "faint",
}


@login_required
@require_GET
def usage_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    # The balance is fetched on demand (htmx on load, or the plain link without JavaScript)
    # so the page itself never waits on Runflow. Viewers only ever see a cached figure.
    can_fetch = membership.has_role(Role.MEMBER)
    balance = _balance(membership.team, can_fetch, fetch=bool(request.GET.get("balance")))
    if getattr(request, "htmx", False) and request.GET.get("balance"):
        context = {"balance": balance, "team": membership.team}
        return render(request, "teams/usage.html#balance", context)
    period = usage.parse_period(request.GET)
    context = {
        "team": membership.team,
        "membership": membership,
        "period": period,
        "period_choices": usage.PERIOD_CHOICES,
        "balance": balance,
        **_report(membership.team, period),
    }
    return render(request, "teams/usage.html", context)


@dataclass(frozen=True)
class BalanceSlot:
    """The balance card: a figure, a reason it is missing, or "not fetched yet"."""

    view: usage.BalanceView | None
    can_fetch: bool


def _balance(team: Team, can_fetch: bool, *, fetch: bool) -> BalanceSlot:
    cached = usage.cached_balance(team)
    if cached is not None or not (can_fetch and fetch):
        return BalanceSlot(cached, can_fetch)
    return BalanceSlot(usage.runflow_balance(team), can_fetch)


def _money(value: float) -> str:
    return format_usd(Decimal(str(round(value, 6))))


def _report(team: Team, period: usage.Period) -> dict[str, object]:
    by_day = usage.spend_by_day(team, period)
    by_model = usage.spend_by_model(team, period)
    by_member = usage.spend_by_member(team, period)
    statuses = usage.runs_by_status(team, period)
    durations = usage.durations_by_model(team, since=period.start)
    month = usage.month_spend(team)
    return {
        "totals": usage.totals(team, period),
        "month_spent": month,
        "month_share": (round(100 * month / team.monthly_budget) if team.monthly_budget else None),
        "by_day": by_day,
        "by_model": by_model,
        "by_member": by_member,
        "statuses": [(Status(key), n) for key, n in statuses.items()],
        "durations": durations,
        "day_chart": charts.column_chart(
            [
                (f"{day:%d %b}", spend, f"{day:%a %d %b}: {format_usd(spend)} · {runs} runs")
                for day, spend, runs in by_day
            ],
            title="Spend per day",
            fmt=_money,
        ),
        "model_chart": charts.bar_chart(
            [(row.label, row.spend) for row in by_model], title="Spend per model", fmt=_money
        ),
        "member_chart": charts.bar_chart(
            [(row.label, row.spend) for row in by_member], title="Spend per member", fmt=_money
        ),
        "status_chart": charts.stack_chart(
            [(Status(key).label, n, STATUS_TONES[Status(key)]) for key, n in statuses.items()],
            title="Runs by status",
        ),
        "duration_chart": charts.range_chart(
            [(d.model_id, d.median_ms, d.p90_ms) for d in durations],
            title="Run duration per model",
            fmt=lambda ms: usage.format_duration(int(ms)),
        ),
    }


@login_required
@require_GET
def export_runs(request: AuthedRequest, team: UUID, fmt: str) -> StreamingHttpResponse:
    """The runs of a filtered history view as CSV or JSON, streamed row by row."""
    membership = membership_for(request, team)
    if fmt not in export.FORMATS:
        raise Http404
    runs = export.filter_runs(membership.team, request.GET, request.user)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    filename = f"runs-{export.slug(membership.team.name)}-{stamp}.{fmt}"
    base_url = request.build_absolute_uri("/").rstrip("/")
    response = StreamingHttpResponse(
        export.stream(runs, fmt, team=membership.team, base_url=base_url),
        content_type=export.FORMATS[fmt],
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
