from __future__ import annotations

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runflow site"

    def ready(self) -> None:
        from runs import checks  # noqa: F401  (registers system checks)
