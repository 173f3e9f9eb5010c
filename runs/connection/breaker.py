"""A circuit breaker over each team's Runflow calls (RELIABILITY.md R4).

When Runflow keeps failing for a team (timeouts, 5xx, 429), hammering it helps nobody: after
``RUNFLOW_BREAKER_THRESHOLD`` consecutive failures the team's calls stop for a while, and
the wait doubles with every further failure, up to ``RUNFLOW_BREAKER_MAX_SECONDS``. Once
the wait is over, ``claim_probe`` lets exactly one caller through (a half-open probe); its
success closes the breaker, its failure opens it again for longer.

The state lives on the ``Team`` row, changed only with conditional UPDATEs, so every web
process and worker on every host sees the same breaker (D2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from runs.models import Team, record
from runs.runflow import OutcomeUnknown, ProtocolError, RateLimited, RunflowError, Unavailable


def threshold() -> int:
    return int(getattr(settings, "RUNFLOW_BREAKER_THRESHOLD", 5))


def base_seconds() -> float:
    return float(getattr(settings, "RUNFLOW_BREAKER_SECONDS", 30))


def max_seconds() -> float:
    return float(getattr(settings, "RUNFLOW_BREAKER_MAX_SECONDS", 600))


def probe_seconds() -> float:
    # How long one half-open probe may take before another caller may try.
    return float(getattr(settings, "RUNFLOW_BREAKER_PROBE_SECONDS", 60))


@dataclass(frozen=True)
class BreakerState:
    failures: int
    open_until: datetime | None
    reason: str

    @property
    def is_open(self) -> bool:
        return self.open_until is not None and self.open_until > timezone.now()

    @property
    def is_tripped(self) -> bool:
        """Open, or waiting for a probe to say whether Runflow is back."""
        return self.failures >= threshold()


def state(team: Team) -> BreakerState:
    return BreakerState(team.breaker_failures, team.breaker_open_until, team.breaker_reason)


def counts_against_breaker(error: BaseException) -> bool:
    """Whether a failed call says Runflow is unhealthy (not just that one request was wrong).

    A 4xx about one run (422, 402, 404...) says nothing about Runflow's health; an
    unreachable endpoint, a 5xx, a 429 or an unreadable answer does.
    """
    if isinstance(error, Unavailable | RateLimited | OutcomeUnknown | ProtocolError):
        return True
    return isinstance(error, RunflowError) and error.retryable


def wait_after(failures: int) -> timedelta:
    extra = max(0, failures - threshold())
    return timedelta(seconds=min(max_seconds(), base_seconds() * (2 ** min(extra, 20))))


def record_upstream_failure(team: Team, reason: str) -> BreakerState:
    """Count one failed call; open the breaker once the failures reach the threshold.

    ``reason`` is shown to the team's admins: a sentence without secrets (an error's
    ``message`` is fine).
    """
    now = timezone.now()
    reason = " ".join(str(reason).split())[:300]
    Team.objects.filter(pk=team.pk).update(
        breaker_failures=F("breaker_failures") + 1, breaker_reason=reason
    )
    failures = Team.objects.filter(pk=team.pk).values_list("breaker_failures", flat=True).first()
    failures = failures or 0
    if failures >= threshold():
        until = now + wait_after(failures)
        Team.objects.filter(pk=team.pk).update(breaker_open_until=until)
        if failures == threshold():
            record("connection.breaker_opened", team=team, target=team.name, reason=reason)
    _reload(team)
    return state(team)


def record_upstream_success(team: Team) -> None:
    """A call worked: close the breaker (and say so in the audit log if it had tripped).

    A healthy team costs one SELECT here and no write, so workers may call this after
    every successful request.
    """
    failures = Team.objects.filter(pk=team.pk).values_list("breaker_failures", flat=True).first()
    if failures:
        closed = Team.objects.filter(pk=team.pk, breaker_failures=failures).update(
            breaker_failures=0, breaker_open_until=None, breaker_reason=""
        )
        if closed and failures >= threshold():
            record("connection.breaker_closed", team=team, target=team.name)
    team.breaker_failures, team.breaker_open_until, team.breaker_reason = 0, None, ""


def claim_probe(team: Team) -> bool:
    """May this caller send a request now? Always yes while the breaker is closed.

    When the breaker has tripped and its wait is over, one caller wins the compare-and-set
    and becomes the probe (the others keep waiting ``probe_seconds``), so a recovering
    Runflow is not met by every queued call of the team at once.
    """
    _reload(team)
    current = state(team)
    if not current.is_tripped:
        return True
    if current.is_open:
        return False
    now = timezone.now()
    won = Team.objects.filter(
        pk=team.pk, breaker_open_until=current.open_until, breaker_failures=current.failures
    ).update(breaker_open_until=now + timedelta(seconds=probe_seconds()))
    _reload(team)
    return bool(won)


def _reload(team: Team) -> None:
    fresh = (
        Team.objects.filter(pk=team.pk)
        .values("breaker_failures", "breaker_open_until", "breaker_reason")
        .first()
    )
    if fresh:
        team.breaker_failures = fresh["breaker_failures"]
        team.breaker_open_until = fresh["breaker_open_until"]
        team.breaker_reason = fresh["breaker_reason"]
