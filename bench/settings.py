"""The site's settings, plus what only the benchmarks need.

- ``ROOT_URLCONF`` adds ``bench/urls.py``: a bare view to compare the callback hook with;
- the per-team upstream call budget (T3, 120 calls a minute by default) is lifted so the
  worker benchmark measures the worker's capacity, not the policy.
Selected with ``DJANGO_SETTINGS_MODULE=bench.settings`` for the stack's processes only.
"""

from __future__ import annotations

from runflow_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
RUNFLOW_CALLS_PER_MINUTE = 1_000_000
