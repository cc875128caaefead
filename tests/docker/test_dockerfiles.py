"""The Dockerfiles of docker/ install what the tests test.

* Asterisk: the image runs scripts/install-asterisk.sh with scripts/asterisk-packages.txt,
  the same two files the e2e tests' chroot is provisioned with (and keyed by), and carries
  asterisk-config/ unmodified.
* bridge: pip-installs the package only through docker/bridge/install-bridge.sh (which
  test_bridge_install.py runs), runs as a non-root user, checks /healthz.
* softphone: the e2e tests' baresip, espeak-ng and sox, and docker/softphone/smoke.py.
"""

from __future__ import annotations

import hashlib
import re

from tests.docker.helpers import DOCKER, REPO, SCRIPTS, parse_dockerfile, stage_args
from tests.e2e import harness

ASTERISK = DOCKER / "asterisk" / "Dockerfile"
BRIDGE = DOCKER / "bridge" / "Dockerfile"
SOFTPHONE = DOCKER / "softphone" / "Dockerfile"
INSTALL_FILES = ["scripts/install-asterisk.sh", "scripts/asterisk-packages.txt"]


def test_asterisk_image_is_debian_sid() -> None:
    df = parse_dockerfile(ASTERISK)
    assert len(df.stages) == 1
    assert df.base_image(df.final) == "debian:sid-slim"


def test_asterisk_image_runs_the_shared_install_script() -> None:
    stage = parse_dockerfile(ASTERISK).final
    copies = [(sources, dest) for _, sources, dest in stage.copies()]
    install = [(s, d) for s, d in copies if any("install-asterisk" in x for x in s)]
    assert install == [(INSTALL_FILES, "/tmp/agi-bridge/")], copies
    runs = [i.args for i in stage.all("RUN") if "install-asterisk.sh" in i.args]
    assert len(runs) == 1
    # run as copied, with no argument: it reads the package list next to it
    # (install-asterisk.sh: list=${1:-$here/asterisk-packages.txt}), as in the chroot
    assert re.search(r"(^|;)\s*sh /tmp/agi-bridge/install-asterisk.sh\s*(;|$)", runs[0]), runs[0]
    assert "list=${1:-$here/asterisk-packages.txt}" in (SCRIPTS / "install-asterisk.sh").read_text()


def test_ci_chroot_is_provisioned_with_the_same_files() -> None:
    script = (SCRIPTS / "provision-asterisk-chroot.sh").read_text()
    assert "pkg_list=$here/asterisk-packages.txt" in script
    assert "installer=$here/install-asterisk.sh" in script
    assert 'cp "$installer" "$pkg_list" "$root/tmp/agi-bridge-install/"' in script
    assert 'chroot "$root" /bin/sh /tmp/agi-bridge-install/install-asterisk.sh' in script
    # the cached chroot the e2e tests run is keyed by exactly these two files
    digest = hashlib.sha256()
    for name in ("scripts/asterisk-packages.txt", "scripts/install-asterisk.sh"):
        digest.update((REPO / name).read_bytes())
    assert harness.expected_root().name == f"asterisk-root-{digest.hexdigest()[:16]}"
    assert 'hash=$(cat "$pkg_list" "$installer" | sha256sum | cut -c1-16)' in script


def test_expired_release_is_an_opt_in_build_arg() -> None:
    stage = parse_dockerfile(ASTERISK).final
    assert stage_args(stage)["APT_ALLOW_EXPIRED_RELEASE"] == "0"
    run = next(i.args for i in stage.all("RUN") if "install-asterisk.sh" in i.args)
    assert 'if [ "$APT_ALLOW_EXPIRED_RELEASE" = 1 ]' in run
    assert 'Acquire::Check-Valid-Until "false"' in run
    # removed again in the same step: the image's apt keeps checking Valid-Until
    assert "rm -rf /tmp/agi-bridge /etc/apt/apt.conf.d/99agi-bridge-allow-expired" in run
    # and the chroot of the tests sets the same option for the same reason
    chroot = (SCRIPTS / "provision-asterisk-chroot.sh").read_text()
    assert 'Acquire::Check-Valid-Until "false";' in chroot


def test_asterisk_config_is_copied_unchanged() -> None:
    stage = parse_dockerfile(ASTERISK).final
    copies = {dest: sources for _, sources, dest in stage.copies()}
    assert copies["/usr/share/agi-bridge/asterisk-config/"] == ["asterisk-config/"]
    for ins in stage.all("RUN"):
        assert "asterisk-config" not in ins.args, "the image must not edit the tested files"
    # /etc/asterisk holds only what the entrypoint renders from them
    run = next(i.args for i in stage.all("RUN") if "install-asterisk.sh" in i.args)
    assert "find /etc/asterisk -mindepth 1 -delete" in run
    entrypoint = (DOCKER / "asterisk" / "entrypoint.sh").read_text()
    assert 'agi-bridge-render-asterisk-config "$config_src" "$etc"' in entrypoint
    assert copies["/usr/local/bin/agi-bridge-render-asterisk-config"] == [
        "docker/asterisk/render-config.sh"
    ]
    assert copies["/usr/local/bin/agi-bridge-asterisk-entrypoint"] == [
        "docker/asterisk/entrypoint.sh"
    ]
    assert stage.all("ENTRYPOINT")[-1].json_args() == [
        "/usr/local/bin/agi-bridge-asterisk-entrypoint"
    ]


def test_asterisk_drops_root_and_checks_boot() -> None:
    stage = parse_dockerfile(ASTERISK).final
    cmd = stage.all("CMD")[-1].json_args()
    assert cmd == ["asterisk", "-f", "-n", "-U", "asterisk", "-G", "asterisk"]
    # asterisk.conf says so
    assert (
        "asterisk -U asterisk -G asterisk"
        in (REPO / "asterisk-config" / "asterisk.conf").read_text()
    )
    health = stage.all("HEALTHCHECK")[-1].args
    assert 'asterisk -rx "core waitfullybooted"' in health
    assert stage.env()["AGI_BRIDGE_HOST"] == "bridge"
    expose = " ".join(i.args for i in stage.all("EXPOSE")).split()
    assert sorted(expose) == ["10000-10099/udp", "5060/udp"]


def test_bridge_image() -> None:
    df = parse_dockerfile(BRIDGE)
    assert [df.base_image(s) for s in df.stages] == ["python:3.11-slim-bookworm"] * 2
    final = df.final
    users = final.all("USER")
    assert users and users[-1].args not in ("root", "0"), "the bridge runs as a non-root user"
    assert re.search(
        r"useradd .*--uid 10001 .* agi-bridge", " ".join(i.args for i in final.all("RUN"))
    )
    # pip only through the shared install script (run by test_bridge_install.py)
    for stage in df.stages:
        for ins in stage.all("RUN"):
            assert "pip" not in ins.args, f"line {ins.line}: pip outside install-bridge.sh"
    build_runs = [i.args for i in df.stages[0].all("RUN")]
    assert build_runs == ["agi-bridge-install /opt/agi-bridge /src"]
    env = final.env()
    assert env["AGI_BRIDGE_LISTEN_AUDIOSOCKET"] == "0.0.0.0:9092"
    assert env["AGI_BRIDGE_LISTEN_FASTAGI"] == "0.0.0.0:4573"
    assert env["AGI_BRIDGE_LISTEN_HTTP"] == "0.0.0.0:8088"
    health = final.all("HEALTHCHECK")[-1].args
    assert '"/opt/agi-bridge/bin/python", "/opt/agi-bridge/healthcheck.py"' in health
    copies = {dest: sources for _, sources, dest in final.copies()}
    assert copies["/opt/agi-bridge/healthcheck.py"] == ["docker/bridge/healthcheck.py"]
    assert copies["/etc/agi-bridge/agi-bridge.yaml"] == ["docker/agi-bridge.yaml"]
    assert env["AGI_BRIDGE_CONFIG_FILE"] == "/etc/agi-bridge/agi-bridge.yaml"
    assert final.all("ENTRYPOINT")[-1].json_args() == ["agi-bridge"]


def test_softphone_image() -> None:
    df = parse_dockerfile(SOFTPHONE)
    # the baresip the e2e tests run (Debian bookworm's 1.0, scripts/install-system-deps.sh)
    assert df.base_image(df.final) == "debian:bookworm-slim"
    run = " ".join(i.args for i in df.final.all("RUN"))
    for package in ("baresip-core", "espeak-ng", "sox", "python3"):
        assert package in run
        if package != "python3":
            assert package in (SCRIPTS / "install-system-deps.sh").read_text()
    copies = {dest: sources for _, sources, dest in df.final.copies()}
    assert copies["/usr/local/bin/agi-bridge-smoke"] == ["smoke.py"]
    assert df.final.all("USER")[-1].args == "smoke"


DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile")) + sorted(
    (SCRIPTS / "docker-base-images").glob("*.Dockerfile")
)


def test_no_syntax_directive() -> None:
    """`# syntax=docker/dockerfile:1` makes BuildKit fetch a frontend image from a registry
    before building anything: offline (or behind a mirror) every build fails at once."""
    assert len(DOCKERFILES) >= 4
    for path in DOCKERFILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.match(r"#\s*syntax\s*=", line, re.I), f"{path}:{number}: {line}"


def test_ci_base_images_are_the_ones_the_dockerfiles_start_from() -> None:
    """scripts/docker-base-images.sh makes exactly the images the shipped Dockerfiles name
    (tests/docker/test_docker_stack.py builds with them where no registry is reachable)."""
    script = (SCRIPTS / "docker-base-images.sh").read_text()
    made = set(re.findall(r"^(?:debian|python)_image (\S+) ", script, re.M))
    wanted = set()
    for path in (ASTERISK, BRIDGE, SOFTPHONE):
        df = parse_dockerfile(path)
        wanted |= {df.base_image(stage) for stage in df.stages}
    assert made == wanted, (made, wanted)
    # the host's CA bundle goes only into the CI-only images, never into shipped files
    for path in (ASTERISK, BRIDGE, SOFTPHONE):
        assert "ca-certificates.crt" not in path.read_text() and "CERT" not in path.read_text()
