"""Walking Runflow's list envelope page by page."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from runs.runflow.schemas import Page

logger = logging.getLogger(__name__)

MAX_PAGES = 1000


def iter_pages[T](
    fetch: Callable[[str | None], Page[T]], *, max_pages: int = MAX_PAGES
) -> Iterator[T]:
    """Every item, following ``next`` cursors from the first page.

    Stops at the last page, on an empty page, on a cursor seen before (a server that keeps
    answering the same cursor must not loop a worker forever) and after ``max_pages``.
    """
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        page = fetch(cursor)
        yield from page.items
        cursor = page.next_cursor
        if not cursor or not page.items or cursor in seen:
            return
        seen.add(cursor)
    logger.warning("Stopped listing after %d pages: Runflow kept sending a next page", max_pages)
