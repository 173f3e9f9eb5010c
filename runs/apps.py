from __future__ import annotations

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runflow site"

    def ready(self) -> None:
        # checks and throttle register system checks and signal receivers on import.
        from runs import callbacks, checks, throttle, transitions  # noqa: F401
        from runs.tasks.archive import enqueue_archive
        from runs.tasks.details import fetch_details_when_missing

        # Results pipeline: outputs are copied by the worker, batches follow their runs.
        if enqueue_archive not in transitions.on_outputs:
            transitions.on_outputs.append(enqueue_archive)
        if callbacks.on_run_transition not in transitions.on_transition:
            transitions.on_transition.append(callbacks.on_run_transition)
        # A callback carries no cost, logs or steps: one read after it brings them.
        if fetch_details_when_missing not in transitions.on_transition:
            transitions.on_transition.append(fetch_details_when_missing)
