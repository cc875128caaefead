"""The ari: section: defaults, validation with file/line/key, the password lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from agi_bridge.config import load_text
from agi_bridge.errors import ConfigError


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(text, "b.yaml")
    return str(info.value)


def test_defaults() -> None:
    ari = load_text("", "b.yaml").ari
    assert ari.enabled is False
    assert (ari.url, ari.app, ari.media) == ("http://127.0.0.1:8088", "agi-bridge", "rtp")
    assert ari.password_env == "AGI_BRIDGE_ARI_PASSWORD"
    assert (ari.rtp_host, ari.rtp_port_min, ari.rtp_port_max) == ("127.0.0.1", 20000, 20199)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "ari:\n  media: sip\n",
            "b.yaml:2 ari.media: got 'sip', expected one of 'rtp', 'websocket'",
        ),
        ("ari:\n  url: 127.0.0.1:8088\n", "b.yaml:2 ari.url: expected an http:// or https:// URL"),
        ("ari:\n  app: 'a b'\n", "b.yaml:2 ari.app: a Stasis application name"),
        ("ari:\n  rtp_host: localhost\n", "b.yaml:2 ari.rtp_host: expected an IP address"),
        ("ari:\n  rtp_port_min: 0\n", "b.yaml:2 ari.rtp_port_min: expected a port"),
        (
            "ari:\n  rtp_port_min: 3000\n  rtp_port_max: 2000\n",
            "b.yaml:3 ari.rtp_port_max: must be >= ari.rtp_port_min",
        ),
        ("ari:\n  websocket_url: http://x\n", "b.yaml:2 ari.websocket_url: expected a ws://"),
        ("ari:\n  request_timeout_s: 0\n", "b.yaml:2 ari.request_timeout_s: must be > 0"),
        ("ari:\n  passwd: x\n", "b.yaml:2 ari.passwd: unknown key"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    assert message in error(text)


def test_password_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_ARI_PW", "from-env")
    cfg = load_text("ari:\n  password_env: MY_ARI_PW\n", "b.yaml")
    assert cfg.ari_password() == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    cfg = load_text(f"ari:\n  password_file: {secret}\n", "b.yaml")
    assert cfg.ari_password() == "from-file"


def test_environment_overrides_ari_keys() -> None:
    cfg = load_text("", "b.yaml", env={"AGI_BRIDGE_ARI_MEDIA": "websocket"})
    assert cfg.ari.media == "websocket"
