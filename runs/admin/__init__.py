"""The Django admin as the operations console (one module per area; access rules in base)."""

from __future__ import annotations

from django.contrib import admin

from runs.admin import runs, teams  # noqa: F401  (registers the ModelAdmins)

admin.site.site_header = "Runflow site · operations"
admin.site.site_title = "Runflow site operations"
admin.site.index_title = "Operations console"
