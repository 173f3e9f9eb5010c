"""Archive: MB/s copying outputs into storage, against a bare streamed download.

A stack (sandbox, one worker) on SQLite makes runs with large image outputs (4K PNGs from
the sandbox). Once the worker has archived them, the copies are deleted and the outputs
reset to "pending"; then ``archive_outputs`` runs again for each run, timed, in the control
process: it checks the address, streams the file with size and time caps, sniffs the type
from the bytes, hashes it, reads its dimensions, saves it to storage and writes a thumbnail.
The comparison is a bare ``httpx`` stream of the same URLs into a temporary file.

    uv run python bench/archive.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import figure, peak_rss_mb
from tests.plugins.faults import start_stack

RUNS = 6
ROUNDS = 2

HELPERS = """
import time
from django.core.files.storage import default_storage
from runs.models import ArchiveState
from runs.tasks.archive import archive_outputs
def outputs(uuids):
    rows = Output.objects.filter(run__uuid__in=uuids)
    return [[o.source_url, o.archive_state, o.size_bytes or 0] for o in rows]
def rearchive(uuids):
    for output in Output.objects.filter(run__uuid__in=uuids):
        for field in (output.file, output.thumbnail):
            if field:
                default_storage.delete(field.name)
    Output.objects.filter(run__uuid__in=uuids).update(
        archive_state=ArchiveState.PENDING, file="", thumbnail="", archive_attempts=0, sha256=""
    )
    started = time.perf_counter()
    for pk in Run.objects.filter(uuid__in=uuids).values_list("pk", flat=True):
        archive_outputs.call(pk)
    seconds = time.perf_counter() - started
    states = list(
        Output.objects.filter(run__uuid__in=uuids).values_list("archive_state", flat=True)
    )
    return seconds, states
def profile(uuids):
    import cProfile, pstats
    Output.objects.filter(run__uuid__in=uuids).update(
        archive_state=ArchiveState.PENDING, file="", thumbnail=""
    )
    pk = Run.objects.filter(uuid__in=uuids).values_list("pk", flat=True)[0]
    profiler = cProfile.Profile()
    profiler.runcall(archive_outputs.call, pk)
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = []
    for (file, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        rows.append((ct, f"{file.rsplit('/', 1)[-1]}:{name}"))
    rows.sort(reverse=True)
    top = [f"{label} {ct * 1000:.0f} ms" for ct, label in rows if label[0] not in "~<"][:12]
    return total, top
"""


def main() -> None:
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bench-archive-")), workers=1)
    try:
        stack.run(HELPERS)
        prompts = [f"a detailed city map, sheet {n}" for n in range(RUNS)]
        uuids = stack.run(
            "result = [str(r.uuid) for r in ("
            f"_launch_run(membership, 'google/nano-banana-pro', {{'prompt': p, 'resolution': '4K', "
            f"'num_images': 2}}) for p in {prompts!r})]"
        )
        deadline = time.monotonic() + 90
        while True:
            rows = stack.run(f"result = outputs({uuids!r})")
            if len(rows) == RUNS * 2 and all(state == "archived" for _, state, _ in rows):
                break
            assert time.monotonic() < deadline, f"outputs not archived: {rows}"
            time.sleep(0.5)
        rss = max(peak_rss_mb(pid) for pid in stack.pids("worker-1"))
        stack.kill("worker-1")
        total = sum(size for _, _, size in rows)
        site_seconds = bare_seconds = 0.0
        for _ in range(ROUNDS):
            seconds, states = stack.run(f"result = rearchive({uuids!r})", timeout=300)
            assert all(state == "archived" for state in states), states
            site_seconds += seconds
            started = time.perf_counter()
            with httpx.Client(timeout=30) as client, tempfile.TemporaryFile() as sink:
                for url, _, _ in rows:
                    with client.stream("GET", url) as answer:
                        answer.raise_for_status()
                        for chunk in answer.iter_bytes(64 * 1024):
                            sink.write(chunk)
            bare_seconds += time.perf_counter() - started
        profile_total, top = stack.run(f"result = profile({uuids[:1]!r})", timeout=120)
        site_rate = total * ROUNDS / site_seconds / 1e6
        bare_rate = total * ROUNDS / bare_seconds / 1e6
        figure(
            "archive",
            f"{site_rate / bare_rate:.2f}x of a bare streamed download | archive_outputs "
            f"{site_rate:.1f} MB/s ({len(rows)} files, {total / 1e6:.1f} MB, x{ROUNDS}; checks, "
            f"sniffing, sha256, dimensions, storage, thumbnails) | bare httpx stream to a file "
            f"{bare_rate:.1f} MB/s | worker peak RSS while archiving 4K images {rss:.0f} MiB",
        )
        figure(
            "archive_profile",
            f"one run (2 files) {profile_total * 1000:.0f} ms; cumulative: " + "; ".join(top),
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
