"""The site's URLs plus one bare view: the practical limit of one database write per request.

``POST /bench/bare/<team uuid>/`` reads the body and stores it as a ``Delivery`` row, the same
single write the callback hook makes first, with nothing else: no signature check, no
parsing, no run lookup, no transition. Mounted only by ``bench/settings.py``.
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from runs.models import Delivery, Outcome, Source, Team


@csrf_exempt
@require_POST
def bare_write(request: HttpRequest, team: UUID) -> JsonResponse:
    team_id = Team.objects.values_list("pk", flat=True).get(uuid=team)
    delivery = Delivery.objects.create(
        team_id=team_id, source=Source.CALLBACK, raw_body=request.body, outcome=Outcome.IGNORED
    )
    return JsonResponse({"delivery": str(delivery.uuid)})


urlpatterns = [
    path("bench/bare/<uuid:team>/", bare_write),
    path("", include("runflow_site.urls")),
]
