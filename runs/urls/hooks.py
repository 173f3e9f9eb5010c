from __future__ import annotations

from django.urls import path

from runs.views import hooks

urlpatterns = [
    path("hooks/runflow/<uuid:team>/", hooks.runflow_callback, name="hook"),
]
