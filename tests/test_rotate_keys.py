"""``manage.py rotate_keys`` (S3): [K1] → [K2, K1] → rotate → [K2], every value still readable."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command

from runs.models import CallbackSecret, RunflowKey
from tests.conftest import Cast
from tests.connection_support import store_key, store_secret

K1, K2, K3 = (Fernet.generate_key().decode() for _ in range(3))


def rotate(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def tokens() -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for model in (RunflowKey, CallbackSecret):
        for pk, value in model.objects.values_list("pk", "secret"):
            found[(model.__name__, pk)] = value.token
    return found


def plains() -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for model in (RunflowKey, CallbackSecret):
        for obj in model.objects.all():
            found[(model.__name__, obj.pk)] = obj.secret.reveal()  # type: ignore[attr-defined]
    return found


@pytest.fixture
def rows(cast: Cast, settings: Any) -> dict[tuple[str, int], str]:
    settings.FIELD_ENCRYPTION_KEYS = [K1]
    for number in range(5):
        store_key(cast.team, f"rf_live_key{number}abcdefgh", label=f"Key {number}")
    for number in range(3):
        store_secret(cast.other_team, f"whsec_secret{number}abcdefgh")
    return plains()


def test_rotation_from_k1_to_k2_keeps_every_value_readable(
    rows: dict[tuple[str, int], str], settings: Any
) -> None:
    before = tokens()
    settings.FIELD_ENCRYPTION_KEYS = [K2, K1]
    out, err = rotate("--batch-size", "3")
    assert "8 encrypted values: 8 re-encrypted, 0 already under the first key, 0 unreadable" in out
    assert err == ""
    after = tokens()
    assert all(after[row] != before[row] for row in rows)
    for token in after.values():
        Fernet(K2.encode()).decrypt(token.encode())  # under K2 now
        with pytest.raises(InvalidToken):
            Fernet(K1.encode()).decrypt(token.encode())
    settings.FIELD_ENCRYPTION_KEYS = [K2]
    assert plains() == rows


def test_rotation_is_idempotent(rows: dict[tuple[str, int], str], settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [K2, K1]
    rotate()
    once = tokens()
    out, _ = rotate()
    assert "0 re-encrypted, 8 already under the first key" in out
    assert tokens() == once  # nothing rewritten


def test_dry_run_writes_nothing(rows: dict[tuple[str, int], str], settings: Any) -> None:
    before = tokens()
    settings.FIELD_ENCRYPTION_KEYS = [K2, K1]
    out, _ = rotate("--dry-run")
    assert "8 would be re-encrypted" in out
    assert tokens() == before


def test_unreadable_rows_are_reported_and_marked_and_the_rest_rotate(
    rows: dict[tuple[str, int], str], cast: Cast, settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [K3]
    lost = store_key(cast.team, "rf_live_lostKEYzzzz9999", label="Lost")
    settings.FIELD_ENCRYPTION_KEYS = [K2, K1]
    out, err = rotate()
    assert "8 re-encrypted, 0 already under the first key, 1 unreadable" in out
    assert "1 marked “needs re-entry”" in out
    assert "Lost (rf_live_…9999)" in err and "team Acme" in err
    assert "lostKEY" not in out + err
    lost.refresh_from_db()
    assert lost.needs_reentry
    assert RunflowKey.objects.filter(needs_reentry=True).count() == 1
    settings.FIELD_ENCRYPTION_KEYS = [K2]
    for row, plain in rows.items():
        model = RunflowKey if row[0] == "RunflowKey" else CallbackSecret
        assert model.objects.get(pk=row[1]).secret.reveal() == plain  # type: ignore[attr-defined]


def test_output_never_contains_a_plain_value(
    rows: dict[tuple[str, int], str], settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [K2, K1]
    out, err = rotate()
    for plain in rows.values():
        assert plain not in out + err


def test_malformed_keys_fail_with_the_settings_message(settings: Any, db: None) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="malformed"):
        rotate()
