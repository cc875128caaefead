"""Fixtures for the end-to-end tests against a real Asterisk 22 (see harness.py).

    asterisk_root       session: the provisioned chroot (fails, never skips, if missing)
    asterisk            a started Asterisk with asterisk-config/ and the test AMI secret
    asterisk_factory    make_asterisk(**Asterisk kwargs) -> Asterisk, not started
    softphone           make_phone(user="6001", **Softphone kwargs) -> Softphone, not started
    rtp_capture         start_capture(**RtpCapture kwargs) -> RtpCapture, already capturing
    ami                 an AmiClient logged in as agi_bridge to the `asterisk` fixture
    speech_wav          session: 8 kHz mono espeak phrase, ~3.5 s (0.5 s lead, 1 s trail silence)

Everything a fixture starts is stopped by pid at teardown, phones and captures first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness


@pytest.fixture(scope="session")
def asterisk_root() -> Path:
    harness.require_tools()
    return harness.asterisk_root()


@pytest.fixture
def asterisk_factory(
    asterisk_root: Path, tmp_path: Path
) -> Iterator[Callable[..., harness.Asterisk]]:
    made: list[harness.Asterisk] = []

    def make(**kwargs: Any) -> harness.Asterisk:
        kwargs.setdefault("root", asterisk_root)
        workdir = tmp_path / f"asterisk-{len(made)}"
        instance = harness.Asterisk(workdir, **kwargs)
        made.append(instance)
        return instance

    yield make
    for instance in reversed(made):
        instance.stop()


@pytest.fixture
def asterisk(asterisk_factory: Callable[..., harness.Asterisk]) -> harness.Asterisk:
    return asterisk_factory().start()


@pytest.fixture
def softphone(asterisk_root: Path, tmp_path: Path) -> Iterator[Callable[..., harness.Softphone]]:
    phones: list[harness.Softphone] = []

    def make(user: str = "6001", **kwargs: Any) -> harness.Softphone:
        phone = harness.Softphone(tmp_path, user, **kwargs)
        phones.append(phone)
        return phone

    yield make
    for phone in reversed(phones):
        phone.stop()


@pytest.fixture
def rtp_capture(asterisk_root: Path, tmp_path: Path) -> Iterator[Callable[..., harness.RtpCapture]]:
    captures: list[harness.RtpCapture] = []

    def start(**kwargs: Any) -> harness.RtpCapture:
        capture = harness.RtpCapture(tmp_path, **kwargs)
        captures.append(capture)
        return capture.start()

    yield start
    for capture in reversed(captures):
        capture.stop()


@pytest.fixture
async def ami(asterisk: harness.Asterisk) -> AsyncIterator[harness.AmiClient]:
    client = await harness.AmiClient.connect()
    yield client
    await client.close()


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    return harness.espeak_wav(
        "Hello, I would like to check my order, please.",
        path,
        lead_silence=0.5,
        trail_silence=1.0,
    )
