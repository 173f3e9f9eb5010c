"""Catalog, launching, presets and batches. Model ids are slash paths of any depth, so
routes that end in ``<path:model_id>/`` come after the fixed ones they could swallow."""

from __future__ import annotations

from django.urls import path

from runs.views import batches, catalog, launch, presets

urlpatterns = [
    path("t/<uuid:team>/models/", catalog.model_list, name="models"),
    path("t/<uuid:team>/models/sync/", catalog.model_sync, name="models_sync"),
    path("t/<uuid:team>/model-covers/<str:digest>.jpg", catalog.model_cover, name="model_cover"),
    path("t/<uuid:team>/models/<path:model_id>/", catalog.model_detail, name="model"),
    # Also named "launch": reverse("runs:launch", args=[team]) is the "type an id" page, and
    # with a model id it is that model's form. Both accept ?from=<run uuid> (edit and run).
    path("t/<uuid:team>/launch/", launch.launch_pick, name="launch"),
    path("t/<uuid:team>/launch/upload/", launch.upload, name="launch_upload"),
    path("t/<uuid:team>/launch/<path:model_id>/", launch.launch, name="launch"),
    path(
        "t/<uuid:team>/launch-preview/<path:model_id>/",
        launch.launch_preview,
        name="launch_preview",
    ),
    path("t/<uuid:team>/runs/<uuid:run>/rerun/", launch.rerun_view, name="rerun"),
    path("t/<uuid:team>/presets/", presets.preset_list, name="presets"),
    path(
        "t/<uuid:team>/presets/<uuid:preset>/delete/", presets.preset_delete, name="preset_delete"
    ),
    path("t/<uuid:team>/presets/new/<path:model_id>/", presets.preset_create, name="preset_create"),
    path("t/<uuid:team>/batches/new/<path:model_id>/", batches.batch_new, name="batch_new"),
    path("t/<uuid:team>/batches/<uuid:batch>/", batches.batch_detail, name="batch"),
    path("t/<uuid:team>/batches/<uuid:batch>/retry/", batches.batch_retry, name="batch_retry"),
]
