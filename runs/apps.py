from __future__ import annotations

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runflow site"

    def ready(self) -> None:
        from runs import checks, throttle  # noqa: F401  (register checks and signal receivers)
