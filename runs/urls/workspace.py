"""The workspace: run history, run pages, gallery, compare, share links and media."""

from __future__ import annotations

from django.urls import path

from runs.views import compare, gallery, media, runs, share

urlpatterns = [
    path("t/<uuid:team>/", runs.run_list, name="team"),
    path("t/<uuid:team>/runs/rows/", runs.run_rows, name="run_rows"),
    path("t/<uuid:team>/runs/<uuid:run>/", runs.run_detail, name="run"),
    path("t/<uuid:team>/runs/<uuid:run>/star/", runs.star, name="star"),
    path("t/<uuid:team>/runs/<uuid:run>/feedback/", runs.feedback, name="feedback"),
    path("t/<uuid:team>/runs/<uuid:run>/cancel/", runs.cancel, name="cancel"),
    path("t/<uuid:team>/gallery/", gallery.gallery, name="gallery"),
    path("t/<uuid:team>/downloads/new/", gallery.zip_create, name="zip_create"),
    path("t/<uuid:team>/downloads/<uuid:job>/", gallery.zip_status, name="zip_status"),
    path("t/<uuid:team>/downloads/<uuid:job>/file/", gallery.zip_download, name="zip_download"),
    path("t/<uuid:team>/compare/", compare.compare, name="compare"),
    path("t/<uuid:team>/shares/", share.share_list, name="shares"),
    path("t/<uuid:team>/shares/new/", share.share_create, name="share_create"),
    path("t/<uuid:team>/shares/<str:token>/revoke/", share.share_revoke, name="share_revoke"),
    path("t/<uuid:team>/outputs/<uuid:output>/file/", media.output_file, name="output_file"),
    path("t/<uuid:team>/outputs/<uuid:output>/thumb/", media.output_thumb, name="output_thumb"),
    path("s/<str:token>/", share.shared, name="shared"),
    path("s/<str:token>/outputs/<uuid:output>/file/", media.shared_file, name="shared_file"),
    path("s/<str:token>/outputs/<uuid:output>/thumb/", media.shared_thumb, name="shared_thumb"),
]
