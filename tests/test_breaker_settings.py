"""The circuit breaker's settings come from the environment, like every other setting, and a
bad value stops the start with the variable's name rather than running on a guess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from runflow_site import env

ROOT = Path(__file__).resolve().parents[1]
SHOW = (
    "from runs.connection import breaker; "
    "print(breaker.threshold(), breaker.base_seconds(), breaker.max_seconds(), "
    "breaker.probe_seconds())"
)


def breaker_values(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """What the breaker reads in a fresh process started with ``variables`` set."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RUNFLOW_BREAKER_") and k != "DATABASE_URL"
    }
    environment.update(RUNFLOW_VAR_DIR=str(tmp_path), **variables)
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", SHOW],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_defaults_and_environment_reach_the_breaker(tmp_path: Path) -> None:
    default = breaker_values(tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["5", "30.0", "600.0", "60.0"]
    tuned = breaker_values(
        tmp_path,
        RUNFLOW_BREAKER_THRESHOLD="7",
        RUNFLOW_BREAKER_SECONDS="12.5",
        RUNFLOW_BREAKER_MAX_SECONDS="90",
        RUNFLOW_BREAKER_PROBE_SECONDS="20",
    )
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stdout.split() == ["7", "12.5", "90.0", "20.0"]


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RUNFLOW_BREAKER_THRESHOLD": "five"}, "RUNFLOW_BREAKER_THRESHOLD"),
        ({"RUNFLOW_BREAKER_THRESHOLD": "0"}, "RUNFLOW_BREAKER_THRESHOLD"),
        ({"RUNFLOW_BREAKER_SECONDS": "soon"}, "RUNFLOW_BREAKER_SECONDS"),
        ({"RUNFLOW_BREAKER_SECONDS": "nan"}, "RUNFLOW_BREAKER_SECONDS"),
        (
            {"RUNFLOW_BREAKER_SECONDS": "60", "RUNFLOW_BREAKER_MAX_SECONDS": "30"},
            "RUNFLOW_BREAKER_MAX_SECONDS",
        ),
        ({"RUNFLOW_BREAKER_PROBE_SECONDS": "-1"}, "RUNFLOW_BREAKER_PROBE_SECONDS"),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_variable(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    result = breaker_values(tmp_path, **variables)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


def test_env_float_reads_numbers_and_refuses_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_SECONDS", " 2.5 ")
    assert env.env_float("X_SECONDS", 1.0) == 2.5
    monkeypatch.setenv("X_SECONDS", "")
    assert env.env_float("X_SECONDS", 1.0) == 1.0
    for bad in ("inf", "1e999", "two"):
        monkeypatch.setenv("X_SECONDS", bad)
        with pytest.raises(ImproperlyConfigured, match="X_SECONDS"):
            env.env_float("X_SECONDS", 1.0)
    monkeypatch.setenv("X_SECONDS", "0.5")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        env.env_float("X_SECONDS", 1.0, minimum=1)
