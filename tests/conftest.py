"""Fixtures for every test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _root_logger_level() -> Iterator[None]:
    """Each test starts with the root logger at WARNING, its default: a test that runs
    the CLI in-process (``--log-level ERROR``) must not silence the logs of later tests
    that assert on them with caplog."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(level)
