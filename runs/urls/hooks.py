from __future__ import annotations

from django.urls import path

from runs.views import hooks

urlpatterns = [
    path("hooks/runflow/<uuid:team>/", hooks.runflow_callback, name="hook"),
    # Without the slash too: APPEND_SLASH cannot redirect a POST (Runflow would not follow
    # it, and with DEBUG on Django raises), so a hand-typed callback URL still works.
    path("hooks/runflow/<uuid:team>", hooks.runflow_callback),
]
