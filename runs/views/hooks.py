"""POST /hooks/runflow/<team uuid>/: where Runflow reports a run's end (W1 to W13).

The only CSRF-exempt view of the site (W4): its callers are not browsers, and the HMAC
signature over the raw body is what authenticates them. In order:

1. a body over ``CALLBACK_MAX_BYTES`` is refused with 413 before any HMAC work (W5);
2. the team comes from the URL (404 if there is none);
3. ``Runflow-Signature`` is checked over the exact bytes against the team's active secrets,
   in constant time (W1, W3). A missing or wrong signature is 401 and only bumps a counter:
   storing refused bodies would let anyone fill our disk;
4. the verified body is stored in the ledger *before* it is parsed (W6, D4); if that write
   fails the answer is 503, so Runflow retries (W7);
5. it is parsed, matched and applied (``runs.callbacks``); a body that is not JSON is 400,
   anything else that was stored is 2xx (W12). Slow work (copying outputs) is queued.
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from runs.callbacks import process_delivery, store_callback
from runs.connection import (
    active_secrets_with_values,
    record_bad_signature,
    record_verified_callback,
)
from runs.models import Outcome, Team
from runs.runflow.signing import verify

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
@sensitive_variables("secrets")
def runflow_callback(request: HttpRequest, team: UUID) -> JsonResponse:
    started = time.monotonic()
    limit = settings.CALLBACK_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        return _answer(400, "Content-Length is not a number.")
    if int(declared) > limit:
        return _answer(413, f"Callback bodies are limited to {limit} bytes.")
    try:
        body = request.read(limit + 1)  # never trust the header alone
    except OSError:
        return _answer(400, "The body could not be read.")
    if len(body) > limit:
        return _answer(413, f"Callback bodies are limited to {limit} bytes.")
    request_id = request.headers.get("Runflow-Request-Id", "")[:200]
    try:
        team_obj = Team.objects.filter(uuid=team).first()
        if team_obj is None:
            return _answer(404, "No such callback endpoint.")
        secrets = active_secrets_with_values(team_obj)  # undecryptable ones are left out
        index = verify(body, request.headers.get("Runflow-Signature"), [s for _, s in secrets])
        if index is None:
            logger.warning(
                "Callback for team %s (request %s) refused: bad or missing signature",
                team_obj.uuid,
                request_id or "-",
            )
            record_bad_signature(team_obj)
            return _answer(401, "The Runflow-Signature header is missing or does not match.")
        delivery = store_callback(team_obj, body, request.headers, request_id)
        record_verified_callback(team_obj, secrets[index][0])
    except DatabaseError:
        logger.exception("Callback for team %s (request %s) not stored", team, request_id or "-")
        return _answer(503, "The callback could not be stored; please retry.")
    try:
        outcome = process_delivery(delivery)
    except Exception:
        # Stored, so acknowledged: the worker's reconcile sweep applies it later (D4).
        logger.exception("Callback %s stored but not applied yet", delivery.uuid)
        outcome = Outcome.RECEIVED
    logger.info(
        "Callback %s (request %s) for team %s: %s in %.0f ms",
        delivery.uuid,
        request_id or "-",
        team_obj.uuid,
        outcome,
        (time.monotonic() - started) * 1000,
    )
    status = 400 if outcome == Outcome.INVALID else 202 if outcome == Outcome.RECEIVED else 200
    return JsonResponse({"delivery": str(delivery.uuid), "outcome": outcome}, status=status)


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)
