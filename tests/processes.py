"""What every test that starts the site's own processes (serve, gunicorn, workers, the
sandbox) needs: a free loopback port and the environment to start them in."""

from __future__ import annotations

import os
import socket

# Set by pytest or by CI for this process only: a child must not inherit them (a child given
# DATABASE_URL would write to the test run's PostgreSQL instead of its own scratch database).
NOT_INHERITED = frozenset({"DATABASE_URL", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment without what belongs to the test run, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(overrides)
    return env
