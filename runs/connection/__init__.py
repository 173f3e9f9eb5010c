"""A team's connection to Runflow: API keys, callback secrets, the circuit breaker.

The names other areas code against (PREAMBLE "Contracts"):
``client_for_team(team, *, key=None)``, ``ConnectionUnavailable``, ``connect_sandbox(team)``,
``active_secret_values(team)``, ``launch_blocker(team)``, and for the worker
``record_upstream_success(team)`` / ``record_upstream_failure(team, reason)`` (with
``counts_against_breaker(error)`` to decide which failures count).
"""

from runs.connection.breaker import (
    counts_against_breaker,
    record_upstream_failure,
    record_upstream_success,
)
from runs.connection.callback_secrets import (
    SecretRefused,
    active_secret_values,
    active_secrets_with_values,
    create_secret,
    paste_secret,
    record_bad_signature,
    record_verified_callback,
    retire_secret,
)
from runs.connection.keys import (
    ConnectionUnavailable,
    KeyCheck,
    KeyRefused,
    check_key,
    client_for_team,
    connect_key,
    recheck_key,
    reenter_key,
    revoke_key,
    set_default_key,
)
from runs.connection.sandbox import connect_sandbox
from runs.connection.status import launch_blocker

__all__ = [
    "ConnectionUnavailable",
    "KeyCheck",
    "KeyRefused",
    "SecretRefused",
    "active_secret_values",
    "active_secrets_with_values",
    "check_key",
    "client_for_team",
    "connect_key",
    "connect_sandbox",
    "counts_against_breaker",
    "create_secret",
    "launch_blocker",
    "paste_secret",
    "recheck_key",
    "record_bad_signature",
    "record_upstream_failure",
    "record_upstream_success",
    "record_verified_callback",
    "reenter_key",
    "retire_secret",
    "revoke_key",
    "set_default_key",
]
