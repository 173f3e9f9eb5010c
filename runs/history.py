"""The run history and the gallery: filters that live in the URL, keyset pagination.

Filters are parsed leniently from the query string (a bad value is dropped, never a 500), so
any filtered view can be bookmarked and shared. Pages are cut by keyset on the ordering the
``run_team_recent`` index serves, ``(created_at, id)`` newest first, never by OFFSET: the
100th page costs what the first costs, at any table size. Cursors are run (or output) UUIDs,
so no integer key appears in a URL; resolving one is a single unique-index lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from runs.dates import BadDay, day_end, day_start, parse_day
from runs.models import (
    IN_FLIGHT,
    ArchiveState,
    Output,
    OutputKind,
    Run,
    RunflowModel,
    Star,
    Status,
    Team,
)
from runs.templatetags.runs_extras import model_input_order

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

PAGE_SIZE = 50
GALLERY_PAGE_SIZE = 48
MAX_TERMS = 6
IN_FLIGHT_FILTER = "in_flight"
STATUS_CHOICES: list[tuple[str, str]] = [
    ("", "Any status"),
    (IN_FLIGHT_FILTER, "In flight"),
    *Status.choices,
]
KIND_CHOICES: list[tuple[str, str]] = [
    ("", "Any type"),
    (OutputKind.IMAGE, "Images"),
    (OutputKind.VIDEO, "Videos"),
    (OutputKind.AUDIO, "Audio"),
]
# A run whose outputs are still being copied keeps refreshing for a while after it ends, so
# thumbnails appear without a reload; an archive that never finishes must not poll forever.
ARCHIVE_WATCH = timedelta(minutes=10)
# A run a callback finished gets its cost from one more read a moment later
# (runs.tasks.details); its row keeps refreshing that long so the cost appears in place.
DETAILS_WATCH = timedelta(minutes=2)


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _filter_day(query: QueryDict, name: str, label: str, problems: list[str]) -> date | None:
    """The day in ``query[name]``; an unusable one is dropped with a sentence in ``problems``."""
    try:
        return parse_day(query.get(name))
    except BadDay as bad:
        problems.append(f"{label} date ignored: {bad}")
        return None


@dataclass(frozen=True)
class HistoryFilters:
    """What the person asked to see; every field maps to one query-string parameter."""

    q: str = ""
    model: str = ""
    status: str = ""
    member: str = ""
    since: date | None = None
    until: date | None = None
    starred: bool = False
    kind: str = ""  # gallery only
    problems: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def from_query(cls, query: QueryDict) -> HistoryFilters:
        problems = []
        status = query.get("status", "").strip()
        if status and status != IN_FLIGHT_FILTER and status not in Status.values:
            problems.append("Unknown status ignored.")
            status = ""
        kind = query.get("kind", "").strip()
        if kind and kind not in OutputKind.values:
            problems.append("Unknown output type ignored.")
            kind = ""
        since = _filter_day(query, "since", "From", problems)
        until = _filter_day(query, "until", "To", problems)
        if since and until and since > until:
            since, until = until, since
        return cls(
            q=" ".join(query.get("q", "").split())[:200],
            model=query.get("model", "").strip()[:300],
            status=status,
            member=query.get("member", "").strip()[:150],
            since=since,
            until=until,
            starred=query.get("starred", "") in {"1", "on", "true", "yes"},
            kind=kind,
            problems=problems,
        )

    @property
    def active(self) -> bool:
        return any(
            (self.q, self.model, self.status, self.member, self.since, self.until, self.starred)
        ) or bool(self.kind)

    def params(self) -> dict[str, str]:
        """The filters as query-string parameters (empty ones left out)."""
        values = {
            "q": self.q,
            "model": self.model,
            "status": self.status,
            "member": self.member,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "starred": "1" if self.starred else "",
            "kind": self.kind,
        }
        return {key: value for key, value in values.items() if value}

    def run_conditions(self, prefix: str = "") -> Q:
        """The filters as one ``Q`` over runs; ``prefix`` is ``"run__"`` from outputs."""
        p = prefix
        condition = Q()
        if self.model:
            condition &= Q(**{f"{p}model_id": self.model})
        if self.status == IN_FLIGHT_FILTER:
            condition &= Q(**{f"{p}status__in": sorted(IN_FLIGHT)})
        elif self.status:
            condition &= Q(**{f"{p}status": self.status})
        if self.member:
            condition &= Q(**{f"{p}created_by__username": self.member})
        if self.since:
            condition &= Q(**{f"{p}created_at__gte": day_start(self.since)})
        if self.until:
            condition &= Q(**{f"{p}created_at__lt": day_end(self.until)})
        for term in self.q.lower().split()[:MAX_TERMS]:
            # search_text is stored lower-cased, so a plain LIKE serves on every database.
            matches = Q(**{f"{p}search_text__contains": term}) | Q(
                **{f"{p}model_id__icontains": term}
            )
            as_uuid = _parse_uuid(term)
            if as_uuid is not None:
                matches |= Q(**{f"{p}uuid": as_uuid}) | Q(**{f"{p}runflow_id": as_uuid})
            condition &= matches
        return condition

    def apply_to_runs(
        self, runs: QuerySet[Run], user: AbstractBaseUser | AnonymousUser
    ) -> QuerySet[Run]:
        runs = runs.filter(self.run_conditions())
        if self.starred:
            runs = runs.filter(
                Exists(Star.objects.filter(user_id=user.pk or 0, run=OuterRef("pk")))
            )
        return runs

    def apply_to_outputs(
        self, outputs: QuerySet[Output], user: AbstractBaseUser | AnonymousUser
    ) -> QuerySet[Output]:
        outputs = outputs.filter(self.run_conditions(prefix="run__"))
        if self.kind:
            outputs = outputs.filter(kind=self.kind)
        if self.starred:
            starred = Star.objects.filter(user_id=user.pk or 0, run=OuterRef("run_id"))
            outputs = outputs.filter(Exists(starred))
        return outputs


@dataclass
class Page[T]:
    """One page of a keyset-paginated list; cursors are UUID strings for the query string."""

    items: list[T]
    older: str | None = None  # pass as ?after=
    newer: str | None = None  # pass as ?before=

    @property
    def is_first(self) -> bool:
        return self.newer is None


def _keyset_page[T: (Run, Output)](
    items: QuerySet[T],
    newest_first: tuple[str, ...],
    newer: Q | None,
    older: Q | None,
    *,
    before: str | None,
    after: str | None,
    size: int,
) -> Page[T]:
    """One page of ``items`` in ``newest_first`` order, cut at a cursor.

    ``newer`` and ``older`` select the items on either side of the cursor's item (both None
    when there is no usable cursor). A ``before`` cursor asks for the page just above it: the
    database walks the index upward from the cursor, and the rows are turned back to newest
    first. Otherwise the page starts just below the ``after`` cursor, or at the top.
    """
    if before and newer is not None:
        oldest_first = [key[1:] if key.startswith("-") else f"-{key}" for key in newest_first]
        rows = list(items.filter(newer).order_by(*oldest_first)[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            rows,
            older=str(rows[-1].uuid) if rows else after,
            newer=str(rows[0].uuid) if rows and has_newer else None,
        )
    if older is not None:
        items = items.filter(older)
    rows = list(items.order_by(*newest_first)[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        older=str(rows[size - 1].uuid) if has_older else None,
        newer=str(rows[0].uuid) if older is not None and rows else None,
    )


# ---------------------------------------------------------------- runs


def team_runs(team: Team) -> QuerySet[Run]:
    return Run.objects.filter(team=team, deleted_at__isnull=True)


def _run_anchor(team: Team, cursor: str | None) -> tuple[datetime, int] | None:
    wanted = _parse_uuid(cursor)
    if wanted is None:
        return None
    return Run.objects.filter(team=team, uuid=wanted).values_list("created_at", "id").first()


def page_runs(
    team: Team,
    runs: QuerySet[Run],
    *,
    after: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
) -> Page[Run]:
    """Newest first; ``after`` = the last run of the previous page, ``before`` = the first.

    The redundant ``created_at <=`` bound lets every database walk the (team, created_at,
    id) index from the cursor instead of filtering the whole team's history.
    """
    anchor = _run_anchor(team, before or after)
    newer = older = None
    if anchor is not None:
        created, pk = anchor
        newer = Q(created_at__gte=created) & (Q(created_at__gt=created) | Q(id__gt=pk))
        older = Q(created_at__lte=created) & (Q(created_at__lt=created) | Q(id__lt=pk))
    newest_first = ("-created_at", "-id")
    return _keyset_page(runs, newest_first, newer, older, before=before, after=after, size=size)


def with_star_flags(runs: QuerySet[Run], user: AbstractBaseUser | AnonymousUser) -> QuerySet[Run]:
    return runs.annotate(
        starred=Exists(Star.objects.filter(user_id=user.pk or 0, run=OuterRef("pk")))
    )


def model_choices(team: Team, limit: int = 200) -> list[str]:
    """The models this team has run, for the filter menu.

    A plain ``SELECT DISTINCT`` reads every run of the team (60-140 ms at 100,000 runs on
    PostgreSQL). This recursive query hops through the ``run_team_model`` index instead,
    one lookup per distinct model, so it costs the same at any history size; SQLite and
    PostgreSQL both run it.
    """
    table = connection.ops.quote_name(Run._meta.db_table)
    sql = f"""
        WITH RECURSIVE models(model_id) AS (
            SELECT MIN(model_id) FROM {table} WHERE team_id = %s
            UNION ALL
            SELECT (
                SELECT MIN(model_id) FROM {table}
                WHERE team_id = %s AND model_id > models.model_id
            )
            FROM models WHERE models.model_id IS NOT NULL
        )
        SELECT model_id FROM models WHERE model_id IS NOT NULL LIMIT %s
    """  # noqa: S608 - only the quoted table name is interpolated; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [team.pk, team.pk, limit])
        return [row[0] for row in cursor.fetchall()]


def input_order(runs: Iterable[Run]) -> list[str]:
    """The catalog's form order of the runs' models' inputs (one query), for display."""
    pairs = {(run.api_url, run.model_id) for run in runs}
    if not pairs:
        return []
    wanted = Q()
    for api_url, model_id in pairs:
        wanted |= Q(api_url=api_url, model_id=model_id)
    order: list[str] = []
    for inputs in RunflowModel.objects.filter(wanted).values_list("inputs", flat=True):
        order += [name for name in model_input_order(inputs) if name not in order]
    return order


# ---------------------------------------------------------------- liveness


def needs_refresh(run: Run, outputs: Iterable[Output] | None = None) -> bool:
    """Whether a page showing this run should keep polling it.

    In flight, obviously; and for a while after the end, until every output has been copied
    into our storage and the cost has arrived, so both appear without a reload.
    """
    if run.status in IN_FLIGHT:
        return True
    if run.completed_at is None:
        return False
    since_end = timezone.now() - run.completed_at
    if run.cost is None and run.runflow_id is not None and since_end <= DETAILS_WATCH:
        return True
    if since_end > ARCHIVE_WATCH:
        return False
    pending = {ArchiveState.PENDING, ArchiveState.FAILED}
    items = outputs if outputs is not None else run.outputs.all()
    return any(output.archive_state in pending for output in items)


# ---------------------------------------------------------------- gallery


def team_outputs(team: Team) -> QuerySet[Output]:
    return (
        Output.objects.filter(run__team=team, run__deleted_at__isnull=True)
        .exclude(archive_state=ArchiveState.PURGED)
        .select_related("run", "run__created_by")
    )


def page_outputs(
    team: Team,
    outputs: QuerySet[Output],
    *,
    after: str | None = None,
    before: str | None = None,
    size: int = GALLERY_PAGE_SIZE,
) -> Page[Output]:
    """Outputs newest run first, then by position in the run.

    Ordering by the *run's* (created_at, id) lets the database walk the run index and fetch
    each run's outputs by key, stopping after one page, whatever the size of the team.
    """
    anchor = _output_anchor(team, before or after)
    newer = older = None
    if anchor is not None:
        created, run_pk, index = anchor
        newer = Q(run__created_at__gte=created) & (
            Q(run__created_at__gt=created)
            | Q(run__created_at=created, run_id__gt=run_pk)
            | Q(run_id=run_pk, index__lt=index)
        )
        older = Q(run__created_at__lte=created) & (
            Q(run__created_at__lt=created)
            | Q(run__created_at=created, run_id__lt=run_pk)
            | Q(run_id=run_pk, index__gt=index)
        )
    # Within a run, outputs keep their own order (index ascending).
    newest_first = ("-run__created_at", "-run_id", "index")
    return _keyset_page(outputs, newest_first, newer, older, before=before, after=after, size=size)


def _output_anchor(team: Team, cursor: str | None) -> tuple[datetime, int, int] | None:
    wanted = _parse_uuid(cursor)
    if wanted is None:
        return None
    return (
        Output.objects.filter(run__team=team, uuid=wanted)
        .values_list("run__created_at", "run_id", "index")
        .first()
    )


def parse_uuids(values: Sequence[str], limit: int) -> list[uuid.UUID]:
    """Distinct valid UUIDs from a query string list, in order, at most ``limit``."""
    seen: list[uuid.UUID] = []
    for value in values:
        for part in value.split(","):
            parsed = _parse_uuid(part.strip())
            if parsed is not None and parsed not in seen:
                seen.append(parsed)
            if len(seen) >= limit:
                return seen
    return seen
