from __future__ import annotations

from django.urls import path

from runs.views import teams

urlpatterns = [
    path("", teams.home, name="home"),
    path("teams/new/", teams.team_create, name="team_create"),
    path("t/<uuid:team>/settings/", teams.team_settings, name="team_settings"),
    path("t/<uuid:team>/settings/rename/", teams.team_rename, name="team_rename"),
    path("t/<uuid:team>/members/<uuid:member>/role/", teams.member_update, name="member_update"),
    path("t/<uuid:team>/members/<uuid:member>/remove/", teams.member_remove, name="member_remove"),
    path("t/<uuid:team>/invitations/", teams.invitation_create, name="invitation_create"),
    path(
        "t/<uuid:team>/invitations/<uuid:invitation>/revoke/",
        teams.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invite/<str:token>/", teams.invitation_accept, name="invitation_accept"),
]
