"""S1 and S4: a key or secret is never readable outside the process that uses it.

A sentinel key and secret go in through the real page; then the raw database, a dumpdata,
the logs, every page an admin can open and a forced 500 error report are searched for them.
"""

# The fake_runflow fixture is imported from tests/connection_support.py, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import io
import logging
import string
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.debug import ExceptionReporter, technical_500_response
from hypothesis import given
from hypothesis import strategies as st

from runs.models import CallbackSecret, RunflowKey, mask_secret
from runs.views import connection as connection_views
from tests.conftest import Cast
from tests.connection_support import (  # noqa: F401 (fixture)
    API,
    SENTINEL_KEY,
    SENTINEL_SECRET,
    FakeRunflow,
    fake_runflow,
)

SENTINELS = (SENTINEL_KEY, SENTINEL_SECRET)
# Long enough to be unmistakable, short enough to catch a partial leak.
FRAGMENTS = ("SENTINELplaintext", "SENTINELsecret")


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for fragment in FRAGMENTS:
        assert fragment.encode() not in data, f"{fragment} found in {where}"


def connect_through_the_page(cast: Cast) -> Client:
    client = cast.client_for("admin")
    teams = reverse("runs:connection_key_add", args=[cast.team.uuid])
    client.post(teams, {"label": "Main", "api_url": API, "api_key": SENTINEL_KEY})
    paste = reverse("runs:connection_secret_paste", args=[cast.team.uuid])
    client.post(paste, {"secret": SENTINEL_SECRET})
    assert RunflowKey.objects.filter(team=cast.team).count() == 1
    assert CallbackSecret.objects.filter(team=cast.team).count() == 1
    return client


def test_the_raw_database_holds_no_plaintext(
    transactional_db: None, cast: Cast, fake_runflow: FakeRunflow, tmp_path: Path
) -> None:
    connect_through_the_page(cast)
    if connection.vendor == "sqlite":
        copy = tmp_path / "copy.sqlite3"
        with connection.cursor() as cursor:
            cursor.execute("VACUUM INTO %s", [str(copy)])
        raw = copy.read_bytes()
        name = str(connection.settings_dict["NAME"])
        for path in (Path(name), Path(name + "-wal")):
            if path.is_file():  # a file-backed test database: its own bytes too
                raw += path.read_bytes()
    else:
        chunks = []
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names(cursor):
                cursor.execute(f'SELECT t::text FROM "{table}" t')
                chunks += [row[0] for row in cursor.fetchall()]
        raw = "\n".join(chunks).encode()
    assert "rf_live_…Zk42".encode() in raw, "the row is there, masked"
    assert_clean(raw, "the database")


def test_dumpdata_holds_only_ciphertext(cast: Cast, fake_runflow: FakeRunflow) -> None:
    connect_through_the_page(cast)
    out = io.StringIO()
    call_command("dumpdata", "runs", stdout=out)
    dump = out.getvalue()
    assert "rf_live_…Zk42" in dump
    token = RunflowKey.objects.values_list("secret", flat=True).get().token
    assert token in dump
    assert_clean(dump, "dumpdata")


def test_nothing_is_logged(
    cast: Cast, fake_runflow: FakeRunflow, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connect_through_the_page(cast)
    from runs.connection import client_for_team

    with client_for_team(cast.team) as client:
        client.me()
    assert caplog.records, "the calls were logged (method and path)"
    assert_clean(caplog.text, "the logs")
    for record in caplog.records:
        assert_clean(repr(record.args), "log arguments")


def test_pages_an_admin_opens_show_only_masked_values(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    client = connect_through_the_page(cast)
    pages = [
        reverse("runs:connection", args=[cast.team.uuid]),
        reverse("runs:team_settings", args=[cast.team.uuid]),
    ]
    if "runs:audit" in {f"runs:{p.name}" for p in _patterns()}:
        pages.append(reverse("runs:audit", args=[cast.team.uuid]))
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_clean(response.content, page)
    connection_page = client.get(pages[0]).content.decode()
    assert "rf_live_…Zk42" in connection_page and "whsec_…Lm31" in connection_page


def _patterns() -> list[Any]:
    from runs.urls import urlpatterns

    return [p for p in urlpatterns if getattr(p, "name", None)]


def test_instances_never_hold_the_plain_value(cast: Cast, fake_runflow: FakeRunflow) -> None:
    connect_through_the_page(cast)
    key = RunflowKey.objects.get()
    fresh = RunflowKey(team=cast.team, label="x", api_url=API)
    fresh.set_secret(SENTINEL_KEY)  # before save, too
    for obj in (key, fresh, CallbackSecret.objects.get()):
        assert_clean(repr(vars(obj)), "a model instance")
        assert_clean(str(obj) + repr(obj), "str/repr")


def test_the_admin_change_page_shows_no_key(cast: Cast, fake_runflow: FakeRunflow) -> None:
    if not admin.site.is_registered(RunflowKey):
        pytest.skip("RunflowKey is not registered in the admin yet (issue 9)")
    connect_through_the_page(cast)
    client = cast.client_for("superuser")
    key = RunflowKey.objects.get()
    secret = CallbackSecret.objects.get()
    for model, pk in (("runflowkey", key.pk), ("callbacksecret", secret.pk)):
        for view in ("change", "history"):
            response = client.get(f"/admin/runs/{model}/{pk}/{view}/")
            assert response.status_code == 200, (model, view)
            assert_clean(response.content, f"admin {model} {view}")
        listing = client.get(f"/admin/runs/{model}/")
        assert listing.status_code == 200
        assert_clean(listing.content, f"admin {model} list")


# ---- a forced 500: the report Django would mail to ADMINS or show with DEBUG ----


def test_a_forced_500_report_contains_no_key(cast: Cast, fake_runflow: FakeRunflow) -> None:
    """POST the sentinel key to the real view; Runflow's transport blows up mid-check."""

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom inside the transport")

    fake_runflow.answers["GET /v1/auth/me"] = explode
    request = RequestFactory().post(
        reverse("runs:connection_key_add", args=[cast.team.uuid]),
        {"label": "Main", "api_url": API, "api_key": SENTINEL_KEY},
    )
    request.user = cast.admin
    request.session = {}  # type: ignore[assignment]
    try:
        connection_views.key_add(request, team=cast.team.uuid)
    except RuntimeError:
        exc_info = sys.exc_info()
    else:
        pytest.fail("the view did not raise")
    reporter = ExceptionReporter(request, *exc_info)
    html = reporter.get_traceback_html()
    text = reporter.get_traceback_text()
    assert "boom inside the transport" in text
    assert "check_key" in text and "api_key" in text  # the frames and the POST are there
    assert_clean(html, "the HTML error report")
    assert_clean(text, "the text error report")
    response = technical_500_response(request, *exc_info)
    assert_clean(response.content, "technical_500_response")


def test_the_report_would_show_an_unprotected_local(cast: Cast) -> None:
    """Control: the reporter does print locals, so the clean report above means something."""

    def unprotected() -> None:
        plain = SENTINEL_KEY  # noqa: F841
        raise RuntimeError("boom")

    request = RequestFactory().post("/x/", {"api_key": SENTINEL_KEY})
    try:
        unprotected()
    except RuntimeError:
        exc_info = sys.exc_info()
    assert "SENTINELplaintext" in ExceptionReporter(request, *exc_info).get_traceback_text()


# ---- masking: the known prefix and the last four characters, never more ----

URLSAFE = string.ascii_letters + string.digits + "-_"


@given(
    prefix=st.sampled_from(["rf_live_", "rf_svc_", "whsec_", "", "sk_live_"]),
    body=st.text(alphabet=URLSAFE, min_size=9, max_size=80),
)
def test_masking_shows_only_a_known_prefix_and_four_characters(prefix: str, body: str) -> None:
    plain = prefix + body
    masked = mask_secret(plain)
    shown_prefix, _, tail = masked.partition("…")
    assert tail == plain[-4:]
    assert shown_prefix in ("rf_live_", "rf_svc_", "whsec_", "")
    assert plain.startswith(shown_prefix)
    assert len(masked) <= len(shown_prefix) + 5


def test_masking_a_secret_with_underscores_in_its_body() -> None:
    assert mask_secret("whsec_Ab_cdefghij_klmn_opqr") == "whsec_…opqr"
    assert mask_secret("rf_live_a_b_c_d_e_f_g_h") == "rf_live_…_g_h"
    assert mask_secret("tiny") == "…"
