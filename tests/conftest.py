"""Shared test set-up: an isolated HOME and environment, and the process fixtures' plugins."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.plugins.lab", "tests.plugins.sshd"]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """A developer's own config, inventory or known_hosts must not leak into a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in ("REDISOPS_INVENTORY", "NO_COLOR", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    return home
