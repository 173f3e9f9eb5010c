"""The app's URLs, one module per area; all names live in the ``runs`` namespace.

Each area keeps its own ``urlpatterns`` so that work on one area never touches another's
routes. Team pages live under ``/t/<team uuid>/``; public ids are always UUIDs.
"""

from __future__ import annotations

from runs.urls import catalog, connection, hooks, teams, usage, workspace

app_name = "runs"

urlpatterns = [
    *teams.urlpatterns,
    *connection.urlpatterns,
    *catalog.urlpatterns,
    *workspace.urlpatterns,
    *usage.urlpatterns,
    *hooks.urlpatterns,
]
