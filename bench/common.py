"""Shared helpers for the benchmarks: a scratch Django, timings, summary lines, memory.

Every benchmark prints one summary line per figure, ``FIGURE <name>: ...``, with the ratio
measured side by side in the same run first and the absolute numbers after it for context.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def scratch_django(name: str) -> Path:
    """Configure Django in this process on a fresh SQLite file in a temporary var dir.

    Production-like: not under pytest, so the database cache, the database task queue and
    hashed static files are used, as ``serve`` would.
    """
    var_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ.update(
        RUNFLOW_VAR_DIR=str(var_dir),
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
        LOG_LEVEL="ERROR",
        SANDBOX_ENABLED="0",
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runflow_site.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    return var_dir


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls, in milliseconds (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    box = [0.0]
    started = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - started


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of one process, in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def figure(name: str, text: str) -> None:
    print(f"FIGURE {name}: {text}", flush=True)


def machine() -> str:
    cores = os.cpu_count() or 0
    memory = 0.0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) / 1024 / 1024
    return f"{cores} cores, {memory:.0f} GiB"
