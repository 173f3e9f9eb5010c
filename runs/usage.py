"""Usage figures of a team: spend, run counts, durations and the Runflow balance.

Every figure is one aggregate query (GROUP BY in the database, never a loop over runs), so
the page costs the same for ten runs as for a million, on SQLite and on PostgreSQL alike.
Money comes from each run's ``cost`` as Runflow reported it; runs without a cost count as
zero spend except in ``month_spend``, which estimates them so budgets hold while runs are
still in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value, Window
from django.db.models.functions import Coalesce, RowNumber, TruncDate
from django.utils import timezone

from runs.dates import EARLIEST, LATEST, BadDay, day_end, day_start, parse_day
from runs.models import IN_FLIGHT, Run, RunflowModel, Status, Team
from runs.pricing import estimate_cost

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
_MONEY = DecimalField(max_digits=18, decimal_places=6)
# Runs whose expected duration we learn from: recent successes only (failures end early).
DURATION_HISTORY_DAYS = 90
BALANCE_TIMEOUT = getattr(settings, "USAGE_BALANCE_TIMEOUT", 3.0)
BALANCE_CACHE_SECONDS = 60
BALANCE_FAILURE_CACHE_SECONDS = 20
_balance_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="balance")


def _spend() -> Coalesce:
    return Coalesce(Sum("cost"), Value(ZERO), output_field=_MONEY)


# ---------- Periods ----------

PERIOD_CHOICES = [
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("month", "This month"),
    ("last_month", "Last month"),
    ("custom", "Custom dates"),
]
DEFAULT_PERIOD = "30d"
MAX_PERIOD_DAYS = 400


@dataclass(frozen=True)
class Period:
    key: str
    first_day: date
    last_day: date  # inclusive
    error: str = ""
    error_field: str = ""  # "start" or "end" when the error is about that date, shown beside it

    # The days a custom period may use (runs/dates.py), as the date pickers' min and max.
    earliest_day = EARLIEST
    latest_day = LATEST

    @property
    def start(self) -> datetime:
        return day_start(self.first_day)

    @property
    def end(self) -> datetime:
        return day_end(self.last_day)

    @property
    def days(self) -> list[date]:
        return [
            self.first_day + timedelta(days=n)
            for n in range((self.last_day - self.first_day).days + 1)
        ]

    @property
    def label(self) -> str:
        if self.key == "custom":
            return f"{self.first_day:%d %b %Y} to {self.last_day:%d %b %Y}"
        return dict(PERIOD_CHOICES)[self.key]


def month_start(now: datetime | None = None) -> datetime:
    """Midnight on the first of this month in the site's time zone."""
    local = timezone.localtime(now)
    return day_start(local.date().replace(day=1))


def parse_period(params: Mapping[str, str], now: datetime | None = None) -> Period:
    """The period a querystring asks for (``period``, and ``start``/``end`` for custom).

    An unusable custom date falls back to the default period, with the reason attached to
    the field it came from so the page can say it right beside that field.
    """
    today = timezone.localtime(now).date()
    key = params.get("period") or DEFAULT_PERIOD
    if key == "custom":
        try:
            first = parse_day(params.get("start"))
        except BadDay as bad:
            return _preset(DEFAULT_PERIOD, today, error=str(bad), error_field="start")
        if first is None:
            message = "Pick the first day of the period."
            return _preset(DEFAULT_PERIOD, today, error=message, error_field="start")
        try:
            last = parse_day(params.get("end")) or today
        except BadDay as bad:
            return _preset(DEFAULT_PERIOD, today, error=str(bad), error_field="end")
        if first > last:
            first, last = last, first
        if (last - first).days > MAX_PERIOD_DAYS:
            first = last - timedelta(days=MAX_PERIOD_DAYS)
            return Period("custom", first, last, f"Periods are capped at {MAX_PERIOD_DAYS} days.")
        return Period("custom", first, last)
    if key not in dict(PERIOD_CHOICES):
        return _preset(DEFAULT_PERIOD, today)
    return _preset(key, today)


def _preset(key: str, today: date, error: str = "", error_field: str = "") -> Period:
    if key == "month":
        return Period(key, today.replace(day=1), today, error, error_field)
    if key == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return Period(key, last.replace(day=1), last, error, error_field)
    days = int(key.removesuffix("d"))
    return Period(key, today - timedelta(days=days - 1), today, error, error_field)


# ---------- Spend ----------


def team_runs(team: Team, period: Period | None = None) -> QuerySet[Run]:
    # Deleted runs are included: hiding a run does not give the money back.
    runs = Run.objects.filter(team=team)
    if period is not None:
        runs = runs.filter(created_at__gte=period.start, created_at__lt=period.end)
    return runs


def month_spend(team: Team, *, user: Any = None, now: datetime | None = None) -> Decimal:
    """Spend this calendar month: reported costs, plus estimates for runs not billed yet.

    A run that is in flight (or finished without a reported cost yet) still counts at its
    estimated price, so a burst of launches cannot overshoot a budget before costs arrive.
    """
    runs = Run.objects.filter(team=team, created_at__gte=month_start(now))
    if user is not None:
        runs = runs.filter(created_by=user)
    billed = runs.aggregate(spend=_spend())["spend"]
    return billed + _unbilled_estimate(runs)


def _unbilled_estimate(runs: QuerySet[Run]) -> Decimal:
    # Failed runs are not billed (RUNFLOW_API.md), so only live or successful ones count.
    pending = (
        runs.filter(cost__isnull=True)
        .exclude(status=Status.FAILED)
        .values("api_url", "model_id", "input")
        .annotate(n=Count("id"))
        .order_by()
    )
    groups = list(pending)
    if not groups:
        return ZERO
    catalog = {
        (m.api_url, m.model_id): m
        for m in RunflowModel.objects.filter(model_id__in={g["model_id"] for g in groups})
    }
    by_id = {model_id: m for (_, model_id), m in catalog.items()}
    total = ZERO
    for group in groups:
        model = catalog.get((group["api_url"], group["model_id"])) or by_id.get(group["model_id"])
        value = group["input"] if isinstance(group["input"], dict) else {}
        estimate = estimate_cost(model, value)
        if estimate is not None:
            total += estimate * group["n"]
    return total


@dataclass(frozen=True)
class Totals:
    """The period's run counts, split exactly like the status chart (``runs_by_status``).

    ``succeeded`` counts full successes only: a partly succeeded run has its own figure, so
    the summary never says "9 succeeded" beside a chart showing 8 and 1 partly succeeded.
    """

    spend: Decimal
    runs: int
    succeeded: int
    partly_succeeded: int
    failed: int
    in_flight: int
    unpriced: int  # finished runs with no reported cost

    @property
    def success_rate(self) -> float | None:
        """Full successes among the runs that ran to an outcome (cancelled ones left out)."""
        finished = self.succeeded + self.partly_succeeded + self.failed
        return self.succeeded / finished if finished else None

    @property
    def success_percent(self) -> int | None:
        rate = self.success_rate
        return None if rate is None else round(100 * rate)


def totals(team: Team, period: Period) -> Totals:
    billable_finished = [Status.SUCCEEDED, Status.PARTIAL_SUCCEEDED, Status.CANCELED]
    row = team_runs(team, period).aggregate(
        spend=_spend(),
        runs=Count("id"),
        succeeded=Count("id", filter=Q(status=Status.SUCCEEDED)),
        partly_succeeded=Count("id", filter=Q(status=Status.PARTIAL_SUCCEEDED)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        in_flight=Count("id", filter=Q(status__in=IN_FLIGHT)),
        unpriced=Count("id", filter=Q(cost__isnull=True, status__in=billable_finished)),
    )
    return Totals(**row)


def spend_by_day(team: Team, period: Period) -> list[tuple[date, Decimal, int]]:
    rows = (
        team_runs(team, period)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(spend=_spend(), runs=Count("id"))
        .order_by("day")
    )
    found = {_as_date(row["day"]): (row["spend"], row["runs"]) for row in rows}
    # Every day of the period appears, so a quiet day reads as zero, not as a gap.
    return [(day, *found.get(day, (ZERO, 0))) for day in period.days]


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    spend: Decimal
    runs: int


def spend_by_model(team: Team, period: Period) -> list[Row]:
    rows = (
        team_runs(team, period)
        .values("model_id")
        .annotate(spend=_spend(), runs=Count("id"))
        .order_by("-spend", "-runs", "model_id")
    )
    return [Row(r["model_id"], r["model_id"], r["spend"], r["runs"]) for r in rows]


def spend_by_member(team: Team, period: Period) -> list[Row]:
    rows = (
        team_runs(team, period)
        .values("created_by", "created_by__username")
        .annotate(spend=_spend(), runs=Count("id"))
        .order_by("-spend", "-runs", "created_by__username")
    )
    return [
        Row(
            str(r["created_by"] or ""),
            r["created_by__username"] or "(deleted account)",
            r["spend"],
            r["runs"],
        )
        for r in rows
    ]


def runs_by_status(team: Team, period: Period) -> dict[str, int]:
    rows = team_runs(team, period).values("status").annotate(n=Count("id")).order_by()
    found = {row["status"]: row["n"] for row in rows}
    return {status.value: found.get(status.value, 0) for status in Status}


# ---------- Durations ----------


@dataclass(frozen=True)
class Durations:
    model_id: str
    median_ms: int
    p90_ms: int
    samples: int

    @property
    def summary(self) -> str:
        """What the launch form shows as the expected wait."""
        if self.samples < 3:
            return f"about {format_duration(self.median_ms)} (from {self.samples} earlier run)"
        return (
            f"usually {format_duration(self.median_ms)}, 9 times in 10 under "
            f"{format_duration(self.p90_ms)} (from {self.samples} earlier runs)"
        )


def durations_by_model(
    team: Team, *, since: datetime | None = None, model_id: str | None = None
) -> list[Durations]:
    """Median and 90th-percentile run duration per model, from the team's successes.

    Nearest-rank percentiles from window functions (ROW_NUMBER and COUNT over each model),
    which SQLite and PostgreSQL both run in the database: at most two rows per model come
    back, whatever the history's size.
    """
    runs = Run.objects.filter(team=team, status=Status.SUCCEEDED, duration_ms__isnull=False)
    if since is not None:
        runs = runs.filter(created_at__gte=since)
    if model_id is not None:
        runs = runs.filter(model_id=model_id)
    ranked = runs.annotate(
        rank=Window(RowNumber(), partition_by=[F("model_id")], order_by=[F("duration_ms"), "id"]),
        total=Window(Count("id"), partition_by=[F("model_id")]),
    )
    # ceil(n/2) and ceil(9n/10) in integer arithmetic, identical on both databases.
    picked = ranked.filter(
        Q(rank=(F("total") + 1) / 2) | Q(rank=(F("total") * 9 + 9) / 10)
    ).values_list("model_id", "duration_ms", "rank", "total")
    found: dict[str, dict[str, int]] = {}
    for mid, duration, rank, total in picked:
        entry = found.setdefault(mid, {"total": total})
        if rank == (total + 1) // 2:
            entry["median"] = duration or 0
        if rank == (total * 9 + 9) // 10:
            entry["p90"] = duration or 0
    result = [
        Durations(mid, e["median"], e["p90"], e["total"])
        for mid, e in found.items()
        if "median" in e and "p90" in e
    ]
    return sorted(result, key=lambda d: (-d.samples, d.model_id))


def expected_duration(team: Team, model_id: str) -> Durations | None:
    """How long a run of ``model_id`` usually takes in this team (None without history)."""
    since = timezone.now() - timedelta(days=DURATION_HISTORY_DAYS)
    found = durations_by_model(team, since=since, model_id=model_id)
    return found[0] if found else None


def format_duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# ---------- Balance ----------


@dataclass(frozen=True)
class BalanceView:
    balance: Decimal | None = None
    low_threshold: Decimal | None = None
    error: str = ""
    fetched_at: datetime | None = None

    @property
    def is_low(self) -> bool:
        return (
            self.balance is not None
            and self.low_threshold is not None
            and self.balance <= self.low_threshold
        )


def runflow_balance(team: Team) -> BalanceView:
    """The team's Runflow credit balance, cached briefly; never slows a page for long.

    The call runs in a small thread pool with a deadline: if Runflow is slow the page shows
    "unavailable" after ``BALANCE_TIMEOUT`` seconds while the call finishes in the
    background. Failures are cached too, so a Runflow outage costs one wait per minute
    rather than one per page view.
    """
    cached = cached_balance(team)
    if cached is not None:
        return cached
    result = _fetch_balance(team)
    seconds = BALANCE_FAILURE_CACHE_SECONDS if result.error else BALANCE_CACHE_SECONDS
    cache.set(_balance_key(team), result, seconds)
    return result


def cached_balance(team: Team) -> BalanceView | None:
    cached = cache.get(_balance_key(team))
    return cached if isinstance(cached, BalanceView) else None


def _balance_key(team: Team) -> str:
    return f"usage:balance:{team.pk}"


def _fetch_balance(team: Team) -> BalanceView:
    try:
        from runs.connection import client_for_team
    except ImportError:
        return BalanceView(error="This site cannot talk to Runflow yet.")
    try:
        client = client_for_team(team)
    except Exception as exc:  # ConnectionUnavailable: no key, undecryptable key, breaker
        return BalanceView(error=_sentence(exc, "The team is not connected to Runflow."))
    future = _balance_pool.submit(_call_balance, client)
    try:
        info = future.result(timeout=BALANCE_TIMEOUT)
    except FutureTimeout:
        return BalanceView(error="Runflow did not answer in time; the balance will be retried.")
    except Exception as exc:  # RunflowError and friends: say it, never crash the page
        logger.info("Balance unavailable for team %s: %s", team.pk, type(exc).__name__)
        return BalanceView(error=_sentence(exc, "Runflow could not report the balance."))
    return BalanceView(
        balance=_decimal(getattr(info, "balance", None)),
        low_threshold=_decimal(getattr(info, "low_balance_threshold", None)),
        fetched_at=timezone.now(),
    )


def _call_balance(client: Any) -> Any:
    with client:
        return client.balance()


def _sentence(exc: Exception, fallback: str) -> str:
    message = getattr(exc, "message", None) or (str(exc) if exc.args else "")
    return str(message) if message else fallback


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None
