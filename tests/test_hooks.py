"""The callback view: signatures over raw bytes, the ledger, matching and answers (W1 to W13)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from runs.models import (
    ArchiveState,
    CallbackSecret,
    Delivery,
    Outcome,
    Output,
    Run,
    Source,
    Status,
    Team,
)
from tests.conftest import Cast
from tests.hooks_support import (
    OTHER_SECRET,
    OUR_RUN,
    RUNFLOW_ID,
    SECRET,
    add_secret,
    fixture,
    hmac_hex,
    hook_url,
    make_run,
    post_callback,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(cast: Cast) -> Team:
    add_secret(cast.team, SECRET)
    add_secret(cast.other_team, OTHER_SECRET)
    return cast.team


@pytest.fixture
def run(acme: Team) -> Run:
    return make_run(acme, uuid=OUR_RUN, runflow_id=RUNFLOW_ID, status=Status.RUNNING)


def test_signed_recorded_callback_finishes_the_run(acme: Team, run: Run) -> None:
    body = fixture("run_completed")
    response = post_callback(Client(), acme, body, headers={"Runflow-Request-Id": "req_42"})
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.duration_ms == 35120
    assert [o.width for o in Output.objects.filter(run=run)] == [1024, 1024]
    delivery = Delivery.objects.get()
    assert bytes(delivery.raw_body) == body  # stored byte for byte (W6)
    assert delivery.request_id == "req_42"
    assert delivery.signature_verified
    assert delivery.event == "run.completed"
    assert delivery.reported_status == "succeeded"
    assert delivery.run == run
    assert delivery.source == Source.CALLBACK


# ---- W1: every bad signature is 401 and stores nothing but the counter ----

BODY = fixture("run_completed")
GOOD = hmac_hex(BODY, SECRET)
W1_TABLE = {
    "missing": None,
    "empty": "",
    "short": GOOD[:-1],
    "long": GOOD + "0",
    "non-hex": "z" * 64,
    "another body": hmac_hex(BODY + b" ", SECRET),
    "another team's secret": hmac_hex(BODY, OTHER_SECRET),
    "sha256= prefix": f"sha256={GOOD}",
    "re-serialized JSON": "reserialized",
}


@pytest.mark.parametrize("case", list(W1_TABLE))
def test_w1_bad_signatures_are_401_and_change_nothing(acme: Team, run: Run, case: str) -> None:
    body = BODY
    signature = W1_TABLE[case]
    if case == "re-serialized JSON":
        # The same JSON, signed correctly, but sent with different whitespace.
        signature = GOOD
        body = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
        assert body != BODY
    headers = {} if signature is None else {"Runflow-Signature": signature}
    response = Client().post(
        hook_url(acme), data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert Delivery.objects.count() == 0
    run.refresh_from_db()
    assert run.status == Status.RUNNING
    acme.refresh_from_db()
    assert acme.bad_signature_count == 1
    assert acme.last_bad_signature_at is not None
    assert acme.last_verified_callback_at is None


def test_uppercase_hex_signature_is_accepted(acme: Team, run: Run) -> None:
    # Pinned decision (W1): hex is case-insensitive; the signing module lower-cases it.
    response = post_callback(Client(), acme, BODY, signature=GOOD.upper())
    assert response.status_code == 200


def test_team_without_secret_refuses_everything(cast: Cast) -> None:
    # W2: unsigned callbacks are refused, even when the team has no secret to check with.
    make_run(cast.team, runflow_id=RUNFLOW_ID, status=Status.RUNNING)
    response = post_callback(Client(), cast.team, BODY, secret=None)
    assert response.status_code == 401
    assert Delivery.objects.count() == 0


def test_secret_of_one_team_does_not_open_another_teams_url(cast: Cast, acme: Team) -> None:
    # W3: the other team's valid signature on Acme's URL, and Acme's on the other's URL.
    assert post_callback(Client(), acme, BODY, secret=OTHER_SECRET).status_code == 401
    assert post_callback(Client(), cast.other_team, BODY, secret=SECRET).status_code == 401


def test_run_of_another_team_is_not_matched(cast: Cast, acme: Team) -> None:
    # W3: a valid callback on the other team's URL naming Acme's run never touches it.
    acme_run = make_run(acme, uuid=OUR_RUN, runflow_id=RUNFLOW_ID, status=Status.RUNNING)
    response = post_callback(Client(), cast.other_team, BODY, secret=OTHER_SECRET)
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.UNMATCHED
    acme_run.refresh_from_db()
    assert acme_run.status == Status.RUNNING


def test_both_secrets_verify_during_rotation_and_a_retired_one_stops(acme: Team, run: Run) -> None:
    old = CallbackSecret.objects.get(team=acme)
    new = add_secret(acme, "whsec_test_acme_rotated_000000000000")
    assert (
        post_callback(
            Client(), acme, BODY, secret="whsec_test_acme_rotated_000000000000"
        ).status_code
        == 200
    )
    assert post_callback(Client(), acme, BODY, secret=SECRET).status_code == 200
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.last_verified_at is not None and new.last_verified_at is not None
    CallbackSecret.objects.filter(pk=old.pk).update(retired_at=timezone.now())
    assert post_callback(Client(), acme, BODY, secret=SECRET).status_code == 401


def test_verified_callback_is_remembered_on_team_and_secret(acme: Team, run: Run) -> None:
    post_callback(Client(), acme, BODY)
    acme.refresh_from_db()
    assert acme.last_verified_callback_at is not None
    assert CallbackSecret.objects.get(team=acme).last_verified_at is not None


def stamp_writes(queries: list[dict[str, str]]) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith(('UPDATE "runs_team"', 'UPDATE "runs_callbacksecret"'))
    ]


def test_last_verified_times_are_written_at_most_once_a_minute(acme: Team, run: Run) -> None:
    secret = CallbackSecret.objects.get(team=acme)
    with CaptureQueriesContext(connection) as first:
        post_callback(Client(), acme, BODY)
    assert len(stamp_writes(first.captured_queries)) == 2
    acme.refresh_from_db()
    stamped = acme.last_verified_callback_at
    with CaptureQueriesContext(connection) as again:
        for _ in range(3):
            assert post_callback(Client(), acme, BODY).status_code == 200
    assert stamp_writes(again.captured_queries) == []
    acme.refresh_from_db()
    secret.refresh_from_db()
    assert acme.last_verified_callback_at == stamped
    assert secret.last_verified_at == stamped
    # A minute later the next callback stamps both again.
    earlier = timezone.now() - timedelta(seconds=61)
    Team.objects.filter(pk=acme.pk).update(last_verified_callback_at=earlier)
    CallbackSecret.objects.filter(pk=secret.pk).update(last_verified_at=earlier)
    post_callback(Client(), acme, BODY)
    acme.refresh_from_db()
    secret.refresh_from_db()
    assert stamped is not None and acme.last_verified_callback_at > stamped
    assert secret.last_verified_at == acme.last_verified_callback_at


def test_a_good_callback_right_after_a_bad_one_clears_the_warning(acme: Team, run: Run) -> None:
    from runs.connection.callback_secrets import callback_health

    post_callback(Client(), acme, BODY)
    assert post_callback(Client(), acme, BODY, secret=OTHER_SECRET).status_code == 401
    acme.refresh_from_db()
    assert callback_health(acme)["bad_since_verified"]
    post_callback(Client(), acme, BODY)  # within the minute, yet stamped at once
    acme.refresh_from_db()
    assert not callback_health(acme)["bad_since_verified"]


# ---- W4, W5: POST only, bounded body ----


def test_get_and_put_are_405(acme: Team) -> None:
    assert Client().get(hook_url(acme)).status_code == 405
    assert Client().put(hook_url(acme), data=BODY).status_code == 405


def test_callback_view_is_the_only_csrf_exempt_view() -> None:
    exempt = []

    def walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif getattr(pattern.callback, "csrf_exempt", False):
                exempt.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns)
    assert exempt == ["hooks/runflow/<uuid:team>/", "hooks/runflow/<uuid:team>"]


def test_callback_url_without_trailing_slash_is_not_redirected(acme: Team, run: Run) -> None:
    response = Client().post(
        hook_url(acme).rstrip("/"),
        data=BODY,
        content_type="application/json",
        headers={"Runflow-Signature": GOOD},
    )
    assert response.status_code == 200


def test_post_without_csrf_token_works_only_here(acme: Team, run: Run) -> None:
    client = Client(enforce_csrf_checks=True)
    assert post_callback(client, acme, BODY).status_code == 200


def test_declared_oversized_body_is_413_before_any_work(acme: Team, settings: object) -> None:
    settings.CALLBACK_MAX_BYTES = 100  # type: ignore[attr-defined]
    response = post_callback(Client(), acme, b"x" * 101)
    assert response.status_code == 413
    assert Delivery.objects.count() == 0
    acme.refresh_from_db()
    assert acme.bad_signature_count == 0  # refused before the signature was even looked at


def test_body_longer_than_its_content_length_is_413(acme: Team, settings: object) -> None:
    settings.CALLBACK_MAX_BYTES = 100  # type: ignore[attr-defined]
    body = b"y" * 500
    client = Client()
    # A lying Content-Length: the view must count the bytes it actually reads.
    response = client.generic(
        "POST",
        hook_url(acme),
        data=body,
        content_type="application/json",
        headers={"Runflow-Signature": hmac_hex(body, SECRET)},
        CONTENT_LENGTH="50",
    )
    assert response.status_code in (401, 413)  # truncated to 50 bytes: the signature fails
    assert Delivery.objects.count() == 0


def test_non_numeric_content_length_is_400(acme: Team) -> None:
    response = Client().generic(
        "POST", hook_url(acme), data=BODY, content_type="application/json", CONTENT_LENGTH="ten"
    )
    assert response.status_code == 400


def test_unknown_team_is_404(cast: Cast) -> None:
    response = Client().post(
        "/hooks/runflow/00000000-0000-4000-8000-000000000000/",
        data=BODY,
        content_type="application/json",
        headers={"Runflow-Signature": GOOD},
    )
    assert response.status_code == 404


# ---- W11, W12: early, unknown, malformed ----


def test_callback_before_the_create_answer_lands_by_metadata(acme: Team) -> None:
    # The run was saved (our UUID) but Runflow's id was never stored.
    run = make_run(acme, uuid=OUR_RUN, status=Status.PENDING)
    response = post_callback(Client(), acme, BODY)
    assert response.json()["outcome"] == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.runflow_id == RUNFLOW_ID


def test_unknown_run_is_stored_unmatched_and_acknowledged(acme: Team) -> None:
    response = post_callback(Client(), acme, BODY)
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.UNMATCHED
    assert Delivery.objects.get().outcome == Outcome.UNMATCHED


def test_metadata_naming_a_run_linked_elsewhere_is_not_applied(acme: Team) -> None:
    run = make_run(
        acme, uuid=OUR_RUN, runflow_id="0190aaaa-0000-7000-8000-000000000000", status=Status.RUNNING
    )
    assert post_callback(Client(), acme, BODY).json()["outcome"] == Outcome.UNMATCHED
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_unknown_event_is_stored_ignored_and_acknowledged(acme: Team, run: Run) -> None:
    response = post_callback(Client(), acme, fixture("run_unknown_event"))
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.IGNORED
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_unknown_status_on_a_known_event_keeps_the_run_in_flight(acme: Team, run: Run) -> None:
    body = BODY.replace(b'"status": "succeeded"', b'"status": "levitating"')
    response = post_callback(Client(), acme, body)
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.IGNORED
    run.refresh_from_db()
    assert run.status == Status.RUNNING


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2, 3]", b'"run.completed"', b"\xff\xfe\x00garbage", b"[" * 100_000],
    ids=["broken", "empty", "array", "string", "invalid-utf8", "deep-nesting"],
)
def test_malformed_json_with_a_good_signature_is_400_and_kept(acme: Team, body: bytes) -> None:
    response = post_callback(Client(), acme, body)
    assert response.status_code == 400
    delivery = Delivery.objects.get()
    assert delivery.outcome == Outcome.INVALID
    assert bytes(delivery.raw_body) == body


def test_values_the_database_refuses_are_invalid_not_retried(acme: Team, run: Run) -> None:
    # PostgreSQL stores no NUL character in text or JSON; SQLite does. Either way the answer
    # is final (200 or 400), never "stored, try later", and never a 500.
    body = BODY.replace(b'"output": {', b'"output": {"seed": "x\\u0000y", ', 1)
    response = post_callback(Client(), acme, body)
    expected = 400 if connection.vendor == "postgresql" else 200
    assert response.status_code == expected
    assert Delivery.objects.get().outcome == (Outcome.INVALID if expected == 400 else "applied")


def test_object_that_is_not_an_envelope_is_400(acme: Team) -> None:
    response = post_callback(Client(), acme, b'{"event": "run.completed", "run_id": "not-a-uuid"}')
    assert response.status_code == 400
    assert "run_id" in Delivery.objects.get().note


# ---- W8, W9, W10: duplicates, conflicts, replays ----


def test_duplicate_is_recorded_and_changes_nothing(acme: Team, run: Run) -> None:
    assert post_callback(Client(), acme, BODY).json()["outcome"] == Outcome.APPLIED
    assert post_callback(Client(), acme, BODY).json()["outcome"] == Outcome.DUPLICATE
    assert Output.objects.filter(run=run).count() == 2
    assert list(Delivery.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.APPLIED,
        Outcome.DUPLICATE,
    ]


def test_conflicting_terminal_callback_is_an_anomaly(acme: Team, run: Run) -> None:
    post_callback(Client(), acme, BODY)
    response = post_callback(Client(), acme, fixture("run_failed"))
    assert response.json()["outcome"] == Outcome.CONFLICT
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.has_anomaly


def test_cancelled_event_spelling_cancels(acme: Team, run: Run) -> None:
    assert post_callback(Client(), acme, fixture("run_cancelled")).json()["outcome"] == "applied"
    run.refresh_from_db()
    assert run.status == Status.CANCELED


def test_failed_callback_keeps_the_failure_message(acme: Team, run: Run) -> None:
    post_callback(Client(), acme, fixture("run_failed"))
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.failure_code == "CONTENT_POLICY"
    assert "safety filter" in run.failure_message


def test_legacy_output_shape_is_normalized(acme: Team, run: Run) -> None:
    post_callback(Client(), acme, fixture("run_completed_legacy"))
    kinds = list(Output.objects.filter(run=run).values_list("kind", "source_url"))
    assert kinds == [
        ("image", "https://cdn.runflow.example/legacy/a.png"),
        ("image", "https://cdn.runflow.example/legacy/b.jpg"),
    ]


def test_replay_of_an_old_callback_after_a_rerun_is_harmless(acme: Team, run: Run) -> None:
    post_callback(Client(), acme, BODY)
    Run.objects.filter(pk=run.pk).update(cost=Decimal("0.5"))
    for _ in range(3):
        assert post_callback(Client(), acme, BODY).json()["outcome"] == Outcome.DUPLICATE
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.cost == Decimal("0.5")
    assert Output.objects.filter(run=run).count() == 2


# ---- W6, W7, W13: storage failures, headers, logs ----


def test_database_failure_while_storing_is_503(
    acme: Team, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise DatabaseError("database is locked")

    monkeypatch.setattr("runs.views.hooks.store_callback", broken)
    response = post_callback(Client(), acme, BODY)
    assert response.status_code == 503


def test_failure_after_storing_is_acknowledged_and_left_for_reconcile(
    acme: Team, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(delivery: Delivery) -> str:
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr("runs.views.hooks.process_delivery", broken)
    response = post_callback(Client(), acme, BODY)
    assert response.status_code == 202
    assert Delivery.objects.get().outcome == Outcome.RECEIVED


def test_ledger_headers_drop_cookies_and_credentials(acme: Team, run: Run) -> None:
    client = Client()
    client.cookies["sessionid"] = "s3cr3t-session"
    post_callback(
        client,
        acme,
        BODY,
        headers={"Authorization": "Bearer rf_live_leak", "X-Forwarded-For": "203.0.113.9"},
    )
    headers = Delivery.objects.get().headers
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "cookie" not in lowered and "authorization" not in lowered
    assert lowered["x-forwarded-for"] == "203.0.113.9"
    assert lowered["runflow-signature"].endswith("…")  # never the whole signature
    assert GOOD not in json.dumps(headers)


def test_no_secret_or_signature_reaches_the_logs(
    acme: Team, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_callback(Client(), acme, BODY, headers={"Runflow-Request-Id": "req_visible"})
    post_callback(
        Client(), acme, BODY, signature="0" * 64, headers={"Runflow-Request-Id": "req_bad"}
    )
    text = caplog.text
    assert "req_visible" in text and "req_bad" in text
    assert SECRET not in text and GOOD not in text


def test_the_answer_does_not_wait_for_the_outputs_to_be_copied(
    acme: Team, run: Run, django_capture_on_commit_callbacks: Any
) -> None:
    # Copying outputs is slow and may fail; Runflow must get its 2xx without waiting for it
    # (W6: store, then answer 2xx fast). The copy is queued once the transition commits.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = post_callback(Client(), acme, BODY)
    assert response.status_code == 200
    states = set(Output.objects.filter(run=run).values_list("archive_state", flat=True))
    assert states == {ArchiveState.PENDING}
    assert queued, "nothing was queued to copy the outputs"
