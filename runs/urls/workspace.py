from __future__ import annotations

from django.urls import path

from runs.views import runs

urlpatterns = [
    path("t/<uuid:team>/", runs.run_list, name="team"),
    path("t/<uuid:team>/runs/<uuid:run>/", runs.run_detail, name="run"),
]
