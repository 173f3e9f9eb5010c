"""Run every benchmark, one after the other, and print their summary lines together.

    uv run python bench/run_all.py

Each benchmark is its own process (its own scratch database and stack) and is bounded in
time; the whole run takes about six minutes on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.common import machine  # noqa: E402

BENCHMARKS = [
    "callback_ingest.py",
    "history.py",
    "live_refresh.py",
    "worker_polling.py",
    "archive.py",
    "memory.py",
]


def main() -> int:
    print(f"# runflow-site benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    figures: list[str] = []
    failed = 0
    for name in BENCHMARKS:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(HERE / name)], capture_output=True, text=True, timeout=300
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("FIGURE ")]
        figures += lines
        status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
        print(f"{name}: {status} in {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode != 0:
            failed += 1
            print(result.stderr[-3000:], file=sys.stderr)
    print()
    print("\n".join(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
