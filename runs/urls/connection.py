"""The team's Runflow connection (team admins only)."""

from __future__ import annotations

from django.urls import path

from runs.views import connection

urlpatterns = [
    path("t/<uuid:team>/connection/", connection.connection_page, name="connection"),
    path("t/<uuid:team>/connection/keys/", connection.key_add, name="connection_key_add"),
    path(
        "t/<uuid:team>/connection/keys/<uuid:key>/reenter/",
        connection.key_reenter,
        name="connection_key_reenter",
    ),
    path(
        "t/<uuid:team>/connection/keys/<uuid:key>/check/",
        connection.key_check,
        name="connection_key_check",
    ),
    path(
        "t/<uuid:team>/connection/keys/<uuid:key>/default/",
        connection.key_default,
        name="connection_key_default",
    ),
    path(
        "t/<uuid:team>/connection/keys/<uuid:key>/revoke/",
        connection.key_revoke,
        name="connection_key_revoke",
    ),
    path(
        "t/<uuid:team>/connection/secrets/",
        connection.secret_create,
        name="connection_secret_create",
    ),
    path(
        "t/<uuid:team>/connection/secrets/paste/",
        connection.secret_paste,
        name="connection_secret_paste",
    ),
    path(
        "t/<uuid:team>/connection/secrets/<uuid:secret>/retire/",
        connection.secret_retire,
        name="connection_secret_retire",
    ),
]
