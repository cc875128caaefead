"""docker/asterisk/render-config.sh: /etc/asterisk of the container from the tested files.

Run here with /bin/sh on a copy of asterisk-config/ (no root, no Asterisk); that Asterisk
22 reads the result as intended is checked by test_stack_without_docker.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.docker.helpers import ASTERISK_CONFIG, DOCKER, ROUTES

RENDER = DOCKER / "asterisk" / "render-config.sh"
WRAPPED = {"pjsip.conf", "manager.conf"}


def render(tmp_path: Path, **env: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    dest = tmp_path / "etc"
    full_env = {"PATH": os.environ["PATH"], "AGI_BRIDGE_PROC_NET_ROUTE": str(routes), **env}
    res = subprocess.run(
        ["/bin/sh", str(RENDER), str(ASTERISK_CONFIG), str(dest)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return dest, res


def sections(text: str) -> dict[str, list[str]]:
    """``[name](opts)`` header -> its non-comment lines, for the wrappers."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        if line.startswith("["):
            current = line
            out[current] = []
        else:
            out.setdefault(current, []).append(line)
    return out


def test_unwrapped_files_are_copied_byte_for_byte(tmp_path: Path) -> None:
    dest, res = render(tmp_path)
    assert res.returncode == 0, res.stderr
    tested = {p.name for p in ASTERISK_CONFIG.glob("*.conf")}
    assert {p.name for p in dest.glob("*.conf")} == tested
    for name in tested - WRAPPED:
        assert (dest / name).read_bytes() == (ASTERISK_CONFIG / name).read_bytes(), name


def test_pjsip_wrapper_includes_the_tested_file_and_binds_the_container(tmp_path: Path) -> None:
    dest, res = render(tmp_path)
    assert res.returncode == 0, res.stderr
    s = sections((dest / "pjsip.conf").read_text())
    assert s[""] == [f'#include "{ASTERISK_CONFIG}/pjsip.conf"']
    assert s["[transport-udp](+)"] == [
        "bind = 0.0.0.0:5060",
        "local_net = 10.5.0.0/24",
        "local_net = 172.18.0.0/16",
    ]
    # every endpoint with the template's 127.0.0.1 media_address, and only those
    for phone in ("6001", "6002"):
        assert s[f"[{phone}](+type=endpoint)"] == [
            "media_address =",
            "bind_rtp_to_media_address = no",
        ]
    assert len(s) == 4


def test_nat_settings(tmp_path: Path) -> None:
    dest, res = render(
        tmp_path,
        AST_EXTERNAL_ADDRESS="192.0.2.10",
        AST_LOCAL_NET="172.18.0.0/16,192.168.65.0/24",
        AST_MEDIA_ADDRESS="172.18.0.3",
    )
    assert res.returncode == 0, res.stderr
    s = sections((dest / "pjsip.conf").read_text())
    assert s["[transport-udp](+)"] == [
        "bind = 0.0.0.0:5060",
        "local_net = 172.18.0.0/16",
        "local_net = 192.168.65.0/24",
        "external_media_address = 192.0.2.10",
        "external_signaling_address = 192.0.2.10",
    ]
    assert s["[6001](+type=endpoint)"] == [
        "media_address = 172.18.0.3",
        "bind_rtp_to_media_address = yes",
    ]
    dest, res = render(tmp_path, AST_EXTERNAL_MEDIA_ADDRESS="198.51.100.1", AST_LOCAL_NET="none")
    s = sections((dest / "pjsip.conf").read_text())
    assert s["[transport-udp](+)"] == [
        "bind = 0.0.0.0:5060",
        "external_media_address = 198.51.100.1",
    ]


def test_manager_wrapper_opens_ami_to_the_container_network(tmp_path: Path) -> None:
    dest, res = render(tmp_path)
    assert res.returncode == 0, res.stderr
    s = sections((dest / "manager.conf").read_text())
    assert s[""] == [f'#include "{ASTERISK_CONFIG}/manager.conf"']
    assert s["[general](+)"] == ["bindaddr = 0.0.0.0"]
    assert s["[agi_bridge](+)"] == ["permit = 10.5.0.0/24", "permit = 172.18.0.0/16"]
    dest, res = render(tmp_path, AST_AMI_PERMIT="172.30.0.5/32", AST_AMI_BIND_ADDRESS="172.30.0.2")
    s = sections((dest / "manager.conf").read_text())
    assert s["[general](+)"] == ["bindaddr = 172.30.0.2"]
    assert s["[agi_bridge](+)"] == ["permit = 172.30.0.5/32"]


def test_ami_secret_from_the_environment_or_a_file(tmp_path: Path) -> None:
    dest, res = render(tmp_path, AGI_BRIDGE_AMI_SECRET="s3cret-from-env")
    assert res.returncode == 0, res.stderr
    secret = dest / "manager_agi_bridge_secret.conf"
    assert secret.read_text() == "secret = s3cret-from-env\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640
    assert "s3cret" not in res.stderr + res.stdout, "the secret is never logged"
    (tmp_path / "secret").write_text("s3cret-from-file\n")
    dest, res = render(tmp_path, AGI_BRIDGE_AMI_SECRET_FILE=str(tmp_path / "secret"))
    assert res.returncode == 0, res.stderr
    assert secret.read_text() == "secret = s3cret-from-file\n"
    # no secret given: the override file goes, manager.conf's development default applies
    dest, res = render(tmp_path)
    assert res.returncode == 0, res.stderr
    assert not secret.exists()
    assert "development secret" in res.stderr


@pytest.mark.parametrize("bad", ["with;semicolon", "two\nlines", "   "])
def test_unusable_secrets_are_refused(tmp_path: Path, bad: str) -> None:
    _, res = render(tmp_path, AGI_BRIDGE_AMI_SECRET=bad)
    assert res.returncode == 1
    assert "ERROR" in res.stderr


def test_overrides_can_be_switched_off(tmp_path: Path) -> None:
    """network_mode: host: the tested files as they are."""
    dest, res = render(tmp_path, AGI_BRIDGE_ASTERISK_OVERRIDES="no")
    assert res.returncode == 0, res.stderr
    for conf in ASTERISK_CONFIG.glob("*.conf"):
        assert (dest / conf.name).read_bytes() == conf.read_bytes(), conf.name


def test_shell_scripts_parse_and_are_executable() -> None:
    """POSIX sh (dash in the images); run as copied with COPY --chmod, and directly here."""
    for script in (
        RENDER,
        DOCKER / "asterisk" / "entrypoint.sh",
        DOCKER / "bridge" / "install-bridge.sh",
    ):
        res = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, check=False)
        assert res.returncode == 0, res.stderr
        assert os.access(script, os.X_OK), f"{script} is not executable"


def run_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint on a scratch root: the renderer under its image name, and a
    stand-in for chown (there is no asterisk user here)."""
    shims = tmp_path / "bin"
    if not shims.exists():
        shims.mkdir()
        (shims / "agi-bridge-render-asterisk-config").symlink_to(RENDER)
    (shims / "chown").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/chown.log\n')
    (shims / "chown").chmod(0o755)
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    root = tmp_path / "root"
    (root / "etc" / "asterisk").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "asterisk" / "stale.conf").write_text("; from an older image\n")
    return subprocess.run(
        [
            "/bin/sh",
            str(DOCKER / "asterisk" / "entrypoint.sh"),
            "sh",
            "-c",
            'echo "AGI_BRIDGE_HOST=$AGI_BRIDGE_HOST"',
        ],
        env={
            "PATH": f"{shims}:{os.environ['PATH']}",
            "AGI_BRIDGE_ASTERISK_ROOT": str(root),
            "AGI_BRIDGE_ASTERISK_CONFIG": str(ASTERISK_CONFIG),
            "AGI_BRIDGE_PROC_NET_ROUTE": str(routes),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_resolves_the_bridge_host_and_renders(tmp_path: Path) -> None:
    res = run_entrypoint(tmp_path, AGI_BRIDGE_HOST="localhost", AGI_BRIDGE_AMI_SECRET="x-y-z")
    assert res.returncode == 0, res.stderr
    # the command runs (exec) with the bridge's address instead of its name
    assert res.stdout == "AGI_BRIDGE_HOST=127.0.0.1\n"
    assert "AGI_BRIDGE_HOST localhost -> 127.0.0.1" in res.stderr
    etc = tmp_path / "root" / "etc" / "asterisk"
    rendered = {p.name for p in etc.glob("*.conf")}
    assert rendered == {p.name for p in ASTERISK_CONFIG.glob("*.conf")} | {
        "manager_agi_bridge_secret.conf"
    }, "stale files are removed"
    chowned = (tmp_path / "chown.log").read_text().split("\n")
    assert f"asterisk:asterisk {tmp_path}/root/var/run/asterisk" in chowned
    assert f"asterisk:asterisk {tmp_path}/root/var/log/asterisk" in chowned


def test_entrypoint_keeps_addresses_and_unresolvable_names(tmp_path: Path) -> None:
    res = run_entrypoint(tmp_path, AGI_BRIDGE_HOST="10.1.2.3")
    assert (res.returncode, res.stdout) == (0, "AGI_BRIDGE_HOST=10.1.2.3\n"), res.stderr
    res = run_entrypoint(tmp_path, AGI_BRIDGE_HOST="localhost", AGI_BRIDGE_RESOLVE_HOST="no")
    assert (res.returncode, res.stdout) == (0, "AGI_BRIDGE_HOST=localhost\n"), res.stderr
    res = run_entrypoint(
        tmp_path, AGI_BRIDGE_HOST="no-such-host.invalid", AGI_BRIDGE_RESOLVE_TIMEOUT="0"
    )
    assert (res.returncode, res.stdout) == (0, "AGI_BRIDGE_HOST=no-such-host.invalid\n")
    assert "WARNING: cannot resolve no-such-host.invalid" in res.stderr


def test_rtp_range_from_the_environment(tmp_path: Path) -> None:
    dest, res = render(tmp_path, AST_RTP_START="20000", AST_RTP_END="20049")
    assert res.returncode == 0, res.stderr
    tested = (ASTERISK_CONFIG / "rtp.conf").read_text()
    rendered = (dest / "rtp.conf").read_text()
    assert "rtpstart = 20000\n" in rendered and "rtpend = 20049\n" in rendered
    # everything else of the tested file unchanged
    strip = [ln for ln in tested.splitlines() if not ln.startswith(("rtpstart", "rtpend"))]
    assert [ln for ln in rendered.splitlines() if not ln.startswith(("rtpstart", "rtpend"))] == (
        strip
    )


@pytest.mark.parametrize(
    ("start", "end"), [("20000", "19999"), ("abc", "20049"), ("20000", "20000")]
)
def test_unusable_rtp_range_is_refused(tmp_path: Path, start: str, end: str) -> None:
    _, res = render(tmp_path, AST_RTP_START=start, AST_RTP_END=end)
    assert res.returncode != 0
    assert "AST_RTP_" in res.stderr


def test_external_signaling_port_only_with_an_external_address(tmp_path: Path) -> None:
    dest, res = render(tmp_path, AST_EXTERNAL_SIGNALING_PORT="5070")
    assert res.returncode == 0, res.stderr
    assert "external_signaling_port" not in (dest / "pjsip.conf").read_text()
    dest, res = render(
        tmp_path, AST_EXTERNAL_SIGNALING_PORT="5070", AST_EXTERNAL_ADDRESS="192.0.2.10"
    )
    assert res.returncode == 0, res.stderr
    transport = sections((dest / "pjsip.conf").read_text())["[transport-udp](+)"]
    assert "external_signaling_address = 192.0.2.10" in transport
    assert "external_signaling_port = 5070" in transport
