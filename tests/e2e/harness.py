"""End-to-end harness: a real Asterisk 22, baresip softphones, tshark, audio analysis.

Everything runs on this machine, on 127.0.0.1:

* :class:`Asterisk` runs the Asterisk of the cached Debian sid chroot
  (``scripts/provision-test-env.sh`` builds it) with the shipped ``asterisk-config/``,
  copied into a per-test run directory inside the chroot. Only the run-time directories of
  ``asterisk.conf`` are rewritten, and the AMI test secret is supplied through the same
  ``manager_agi_bridge_secret.conf`` override a deployment uses.
* :class:`Softphone` runs baresip as endpoint 6001 (or 6002): it dials, plays a wav as its
  microphone, records what it hears, and reports whether the far side hung up.
* :class:`RtpCapture` runs tshark on ``lo`` and returns the RTP packets (RFC 4733 events
  included) seen during the test.
* :class:`AmiClient` is a small asyncio AMI client; :class:`FakeBridge` is a minimal stand-in
  for agi_bridge (FastAGI + AudioSocket + AMI Setvar) used to test the dialplan contract.
* ``espeak_wav``, ``read_wav``, ``window_dbfs``, ``speech_present`` ... make and judge audio.

Every process is started by pid and stopped by that pid (SIGTERM, then SIGKILL after a
timeout); nothing is ever stopped by name. The host's /dev is never bind-mounted into the
chroot; /proc is not mounted unless a test asks for it (``Asterisk(mount_proc=True)``), in
which case it is unmounted when no process runs inside the chroot any more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

# --- where things are -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "asterisk-config"
SCRIPTS_DIR = REPO / "scripts"
CACHE_DIR = Path(os.environ.get("AGI_BRIDGE_CACHE", "/var/cache/agi-bridge"))
ROOT_MARKER = ".agi-bridge-provisioned"
PROVISION_COMMAND = "scripts/provision-test-env.sh   (as root, from the repository root)"
RUNS_IN_ROOT = PurePosixPath("/tmp/agi-bridge-e2e")
ASTERISK_BIN = "/usr/sbin/asterisk"

# --- the rig as configured in asterisk-config/ ------------------------------------------

HOST = "127.0.0.1"
SIP_PORT = 5060
AMI_PORT = 5038
AMI_USER = "agi_bridge"
AMI_DEFAULT_SECRET = "agi-bridge-dev-secret"  # in manager.conf; overridden in every test
AMI_TEST_SECRET = "agi-bridge-e2e-secret"
AMI_SECRET_FILE = "manager_agi_bridge_secret.conf"
ARI_PORT = 8088  # http.conf: ARI REST, events websocket, chan_websocket /media
ARI_URL = f"http://{HOST}:{ARI_PORT}"
ARI_USER = "agi_bridge"
ARI_TEST_PASSWORD = "agi-bridge-e2e-ari"
ARI_PASSWORD_FILE = "ari_agi_bridge_password.conf"
EXT_ARI_DEFAULT = "200"  # Stasis(agi-bridge,default,...)
ASTERISK_RTP_PORTS = (10000, 10099)  # rtp.conf
PHONE_RTP_PORTS = (10100, 10199)  # the softphones' own range (kept apart from Asterisk's)
PHONES = {"6001": "agi-bridge-6001", "6002": "agi-bridge-6002"}
EXT_AGENT_DEFAULT = "100"
EXT_AGENT_IVR = "101"
EXT_ECHO = "600"
EXT_HELLO = "601"  # plays hello-world, then Asterisk hangs up
AGI_PORT = 4573
AUDIOSOCKET_PORT = 9092
SAMPLE_RATE = 8000

# Directory keys of asterisk.conf that the harness points into the per-test run directory.
RUN_DIRECTORIES = {
    "astetcdir": "etc",
    "astrundir": "run",
    "astlogdir": "log",
    "astspooldir": "spool",
    "astdbdir": "db",
    "astcachedir": "cache",
}

REQUIRED_TOOLS = ("chroot", "baresip", "stdbuf", "tshark", "espeak-ng", "sox")


class HarnessError(RuntimeError):
    """A harness step failed (the message says which and how to look)."""


# --- environment checks -----------------------------------------------------------------


def expected_root() -> Path:
    """The chroot the provisioning script builds for the current package list."""
    digest = hashlib.sha256()
    for name in ("asterisk-packages.txt", "install-asterisk.sh"):
        digest.update((SCRIPTS_DIR / name).read_bytes())
    return CACHE_DIR / f"asterisk-root-{digest.hexdigest()[:16]}"


def asterisk_root() -> Path:
    """The provisioned chroot; fails the test (never skips) when it is missing."""
    if os.geteuid() != 0:
        pytest.fail("e2e tests run Asterisk in a chroot and need root", pytrace=False)
    root = expected_root()
    if not (root / ROOT_MARKER).is_file():
        pytest.fail(
            f"Asterisk chroot not provisioned: {root} has no {ROOT_MARKER}.\n"
            f"Provision it with: {PROVISION_COMMAND}",
            pytrace=False,
        )
    return root


def require_tools(tools: Iterable[str] = REQUIRED_TOOLS) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"e2e tools missing: {', '.join(missing)}. Install them with: "
            f"scripts/install-system-deps.sh (as root)",
            pytrace=False,
        )


# Ports handed to test processes come from a range outside the kernel's ephemeral range
# (32768-60999), so they never collide with an outgoing connection or a TIME_WAIT left by
# one: baresip listens on its SIP port with both UDP and TCP, without SO_REUSEADDR.
TEST_PORT_RANGE = (20000, 29999)
_handed_out: set[int] = set()


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 free for both TCP and UDP, not handed out before in this run."""
    for _ in range(500):
        port = random.randint(*TEST_PORT_RANGE)
        if port in _handed_out:
            continue
        if _bindable(port, socket.SOCK_STREAM) and _bindable(port, socket.SOCK_DGRAM):
            _handed_out.add(port)
            return port
    raise HarnessError(f"no free port in {TEST_PORT_RANGE}")


def busy_ports_message(busy: list[str]) -> str:
    """Which fixed ports of asterisk-config/ are taken, by whom, and what to do about it."""
    from agi_bridge.cli.ports import describe_holders

    held = "; ".join(
        f"{HOST} {spec} {describe_holders(int(spec.split('/')[1]), spec.split('/')[0])}"
        for spec in busy
    )
    return (
        f"the e2e Asterisk needs the fixed ports of asterisk-config/ (SIP udp/{SIP_PORT}, "
        f"AMI tcp/{AMI_PORT}), but {held}. Another e2e run or the Docker stack (`make up`, "
        "docker-proxy) holds them: run e2e tests under `flock /tmp/agi-e2e.lock`, "
        "`make down` a running stack, or stop the process named"
    )


def port_in_use(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from the kernel's table)."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                found.append(mp)
    return found


def pids_inside(root: Path) -> list[int]:
    """Processes whose root directory is ``root`` (running inside the chroot)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            r = os.readlink(entry / "root")
        except OSError:
            continue
        if r == str(root) or r.startswith(str(root) + "/"):
            pids.append(int(entry.name))
    return pids


def stop_process(proc: subprocess.Popen[Any], timeout: float, sig: int = signal.SIGTERM) -> None:
    """Stop one process we started, by its pid: ``sig``, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)


def _safe_rmtree(path: Path) -> None:
    if not path.exists():
        return
    live = mounts_under(path)
    if live:
        raise HarnessError(f"not deleting {path}: still mounted below it: {live}")
    shutil.rmtree(path)


# --- Asterisk ---------------------------------------------------------------------------


class Asterisk:
    """The chroot's Asterisk with the shipped configuration, one instance per test.

    ``workdir`` (a host directory, e.g. pytest's tmp_path) receives a copy of Asterisk's logs
    when it stops. ``env`` is added to Asterisk's environment (e.g. ``AGI_BRIDGE_AGI_PORT``,
    read by the dialplan). ``extra_config`` maps file names to contents written into the
    config directory after the shipped files (to add or replace a file in one test).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        ami_secret: str | None = AMI_TEST_SECRET,
        extra_config: dict[str, str] | None = None,
        mount_proc: bool = False,
        root: Path | None = None,
        ari_password: str | None = ARI_TEST_PASSWORD,
    ) -> None:
        self.root = root or asterisk_root()
        self.ari_password = ari_password
        self.workdir = Path(workdir)
        self.env = dict(env or {})
        self.ami_secret = ami_secret
        self.extra_config = dict(extra_config or {})
        self.mount_proc = mount_proc
        self.run_in_root = RUNS_IN_ROOT / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.run_dir = self.root / self.run_in_root.relative_to("/")
        self.etc_dir = self.run_dir / "etc"
        self.log_dir = self.run_dir / "log"
        self.conf_in_root = str(self.run_in_root / "etc" / "asterisk.conf")
        self.console_log = self.workdir / "asterisk-console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._mounted_proc = False
        self._console: Any = None

    # lifecycle

    def prepare(self) -> None:
        """Render the configuration into the run directory (start() calls it)."""
        if self.run_dir.exists():
            return
        for sub in RUN_DIRECTORIES.values():
            (self.run_dir / sub).mkdir(parents=True)
        for conf in sorted(CONFIG_DIR.glob("*.conf")):
            shutil.copy2(conf, self.etc_dir / conf.name)
        text = (CONFIG_DIR / "asterisk.conf").read_text()
        for key, sub in RUN_DIRECTORIES.items():
            text, n = re.subn(rf"(?m)^{key}\s*=>.*$", f"{key} => {self.run_in_root / sub}", text)
            if n != 1:
                raise HarnessError(f"asterisk-config/asterisk.conf: expected one '{key} =>' line")
        (self.etc_dir / "asterisk.conf").write_text(text)
        if self.ami_secret is not None:
            (self.etc_dir / AMI_SECRET_FILE).write_text(f"secret = {self.ami_secret}\n")
        if self.ari_password is not None:
            (self.etc_dir / ARI_PASSWORD_FILE).write_text(f"password = {self.ari_password}\n")
        for name, content in self.extra_config.items():
            (self.etc_dir / name).write_text(content)

    def start(self, timeout: float = 30.0) -> Asterisk:
        if self.proc is not None:
            raise HarnessError("Asterisk already started")
        busy = [f"udp/{SIP_PORT}"] if port_in_use(SIP_PORT, socket.SOCK_DGRAM) else []
        busy += [f"tcp/{AMI_PORT}"] if port_in_use(AMI_PORT) else []
        busy += [f"tcp/{ARI_PORT}"] if port_in_use(ARI_PORT) else []
        if busy:
            raise HarnessError(busy_ports_message(busy))
        self.prepare()
        if self.mount_proc and not mounts_under(self.root / "proc"):
            subprocess.run(["mount", "-t", "proc", "proc", str(self.root / "proc")], check=True)
            self._mounted_proc = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._console = open(self.console_log, "wb")  # noqa: SIM115 - closed in stop()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        env.update(self.env)
        self.proc = subprocess.Popen(
            ["chroot", str(self.root), ASTERISK_BIN, "-C", self.conf_in_root, "-f", "-n"],
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out = self.console_log.read_text(errors="replace")
                self.stop()
                raise HarnessError(f"Asterisk exited with {self.proc.returncode}:\n{out[-3000:]}")
            try:
                out = self.cli("core waitfullybooted", timeout=5)
                if "fully booted" in out:
                    return self
            except (HarnessError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                out = self.console_log.read_text(errors="replace")
                self.stop()
                raise HarnessError(f"Asterisk did not boot within {timeout} s:\n{out[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop our Asterisk by pid, keep its logs in workdir, delete the run directory."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
        if self._console is not None:
            self._console.close()
            self._console = None
        if self._mounted_proc and not pids_inside(self.root):
            subprocess.run(["umount", str(self.root / "proc")], check=True)
            self._mounted_proc = False
        if self.log_dir.exists():
            dest = self.workdir / "asterisk-logs"
            shutil.copytree(self.log_dir, dest, dirs_exist_ok=True)
        _safe_rmtree(self.run_dir)

    def __enter__(self) -> Asterisk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # inspection

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command (``asterisk -rx``) against this instance; return its output."""
        res = subprocess.run(
            ["chroot", str(self.root), ASTERISK_BIN, "-C", self.conf_in_root, "-rx", command],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        out = res.stdout.decode(errors="replace")
        if res.returncode != 0:
            raise HarnessError(
                f"asterisk -rx {command!r} failed ({res.returncode}): "
                f"{out}{res.stderr.decode(errors='replace')}"
            )
        return out

    async def acli(self, command: str, timeout: float = 10.0) -> str:
        """:meth:`cli` without blocking the event loop."""
        return await asyncio.to_thread(self.cli, command, timeout)

    def log_text(self, name: str = "full") -> str:
        """Asterisk's log file ``name`` (logger.conf: "full" has every dialplan step)."""
        path = self.log_dir / name
        if not path.exists():
            path = self.workdir / "asterisk-logs" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(
        self, pattern: str, timeout: float = 10.0, name: str = "full"
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.log_text(name))
            if m:
                return m
            if time.monotonic() > deadline:
                raise HarnessError(f"{pattern!r} not in Asterisk's {name} log after {timeout} s")
            time.sleep(0.1)

    async def await_log(
        self, pattern: str, timeout: float = 10.0, name: str = "full"
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.log_text(name))
            if m:
                return m
            if time.monotonic() > deadline:
                raise HarnessError(f"{pattern!r} not in Asterisk's {name} log after {timeout} s")
            await asyncio.sleep(0.1)

    def channels(self) -> list[str]:
        """Names of the live channels (``core show channels concise``)."""
        out = self.cli("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]

    def wait_for_channel(self, prefix: str = "PJSIP/6001-", timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for name in self.channels():
                if name.startswith(prefix):
                    return name
            if time.monotonic() > deadline:
                raise HarnessError(f"no channel starting with {prefix!r} after {timeout} s")
            time.sleep(0.1)

    def wait_for_no_channels(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.channels():
            if time.monotonic() > deadline:
                raise HarnessError(f"channels still up after {timeout} s: {self.channels()}")
            time.sleep(0.1)


# --- audio --------------------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM; ``samples`` are int16 or floats in [-1, 1]."""
    data = np.asarray(samples)
    if data.dtype != np.int16:
        data = np.clip(np.round(data * 32767.0), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono 16-bit wav -> (float samples in [-1, 1], sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise HarnessError(
                f"{path}: need mono 16-bit PCM, got {w.getnchannels()} ch "
                f"{8 * w.getsampwidth()} bit"
            )
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0, rate


def window_dbfs(samples: np.ndarray, rate: int = SAMPLE_RATE, window_ms: int = 20) -> np.ndarray:
    """RMS level in dBFS of each ``window_ms`` window (a full-scale square wave is 0 dBFS)."""
    n = int(rate * window_ms / 1000)
    count = len(samples) // n
    if count == 0:
        return np.zeros(0)
    frames = np.asarray(samples[: count * n], dtype=np.float64).reshape(count, n)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.asarray(20.0 * np.log10(np.maximum(rms, 1e-9)))


def active_seconds(
    path: Path,
    t1: float = 0.0,
    t2: float | None = None,
    threshold_dbfs: float = -40.0,
    window_ms: int = 20,
) -> float:
    """Seconds of windows louder than ``threshold_dbfs`` between t1 and t2 (file time)."""
    samples, rate = read_wav(path)
    levels = window_dbfs(samples, rate, window_ms)
    first = int(t1 * 1000 / window_ms)
    last = len(levels) if t2 is None else int(t2 * 1000 / window_ms)
    return float(np.count_nonzero(levels[first:last] > threshold_dbfs) * window_ms / 1000.0)


def speech_present(
    path: Path,
    t1: float = 0.0,
    t2: float | None = None,
    threshold_dbfs: float = -40.0,
    min_active: float = 0.3,
) -> bool:
    """True when at least ``min_active`` s of 20 ms windows between t1 and t2 are above
    ``threshold_dbfs`` (speech through G.711 sits around -30..-15 dBFS; silence far below)."""
    return active_seconds(path, t1, t2, threshold_dbfs) >= min_active


def wav_duration(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def espeak_wav(
    text: str,
    path: Path,
    *,
    lead_silence: float = 0.0,
    trail_silence: float = 0.0,
    voice: str = "en-us",
    words_per_minute: int = 160,
) -> Path:
    """Speak ``text`` into ``path`` as 8 kHz mono 16-bit, padded with silence if asked."""
    path = Path(path)
    raw = path.with_name(path.stem + ".espeak.wav")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    cmd = ["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path)]
    if lead_silence or trail_silence:
        cmd += ["pad", f"{lead_silence:.3f}", f"{trail_silence:.3f}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    raw.unlink()
    return path


def fit_wav(src: Path | None, dest: Path, seconds: float) -> Path:
    """Copy ``src`` (8 kHz mono 16-bit) to ``dest`` cut or padded with silence to ``seconds``;
    ``src`` None gives silence."""
    n = round(seconds * SAMPLE_RATE)
    out = np.zeros(n, dtype=np.int16)
    if src is not None:
        with wave.open(str(src), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise HarnessError(f"{src}: the softphone needs 8 kHz mono 16-bit PCM")
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        out[: min(n, len(data))] = data[:n]
    return write_wav(dest, out)


# --- Softphone (baresip) ------------------------------------------------------------------


@dataclasses.dataclass
class CallResult:
    """What a softphone saw. Times are seconds since the phone process started."""

    established: bool
    established_at: float | None
    ended: bool
    ended_at: float | None
    ended_by_remote: bool  # the far side (Asterisk) hung up or refused the call
    close_reason: str | None  # e.g. "Connection reset by peer" (any BYE) or "404 Not Found"
    recording: Path | None  # what the phone heard (baresip sndfile *-dec.wav)
    sent: Path | None  # what the phone sent (*-enc.wav)
    log: str

    @property
    def duration(self) -> float | None:
        if self.established_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.established_at


class Softphone:
    """baresip 1.0 as a SIP endpoint of pjsip.conf (6001 by default).

    ``start(dial="600", input_wav=..., duration=8)`` dials ``sip:600@127.0.0.1:5060``; the
    input wav is the microphone, cut or padded with silence to ``duration`` seconds, and the
    phone hangs up by itself when it has been played (baresip ends the call at the end of its
    audio file). Far-side hang-ups are reported in :class:`CallResult`. ``start()`` without
    ``dial`` just runs the phone (auto-answer) for incoming calls; pass ``register=True`` to
    register it with Asterisk.
    """

    def __init__(
        self,
        workdir: Path,
        user: str = "6001",
        password: str | None = None,
        *,
        register: bool = False,
        sip_port: int | None = None,
        answer_timeout: float = 15.0,
    ) -> None:
        self.user = user
        self.answer_timeout = answer_timeout
        self.password = password if password is not None else PHONES[user]
        self.register = register
        self.dir = Path(workdir) / f"baresip-{user}-{uuid.uuid4().hex[:6]}"
        self.sip_port = sip_port or free_port()
        self.ctrl_port = free_port()  # baresip ctrl_tcp: send_dtmf(), hangup()
        self._local_hangup = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._t0 = 0.0
        self._established = threading.Event()
        self._ended = threading.Event()
        self._registered = threading.Event()
        self._established_at: float | None = None
        self._ended_at: float | None = None
        self._close_reason: str | None = None

    def _write_config(self, input_wav: Path) -> None:
        rec = self.dir / "rec"
        rec.mkdir(parents=True, exist_ok=True)
        config = f"""\
poll_method\t\tepoll
sip_listen\t\t{HOST}:{self.sip_port}
call_local_timeout\t120
call_max_calls\t\t4
audio_player\t\talsa,null
audio_source\t\taufile,{input_wav}
audio_alert\t\talsa,null
audio_level\t\tno
ausrc_format\t\ts16
auplay_format\t\ts16
auenc_format\t\ts16
audec_format\t\ts16
audio_buffer\t\t20-160
ausrc_srate\t\t{SAMPLE_RATE}
auplay_srate\t\t{SAMPLE_RATE}
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t{PHONE_RTP_PORTS[0]}-{PHONE_RTP_PORTS[1]}
rtp_timeout\t\t0
jitter_buffer_delay\t5-10
rtcp_mux\t\tno
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\talsa.so
module\t\t\tsndfile.so
module_tmp\t\tuuid.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t{HOST}:{self.ctrl_port}
snd_path\t\t{rec}
"""
        (self.dir / "config").write_text(config)
        regint = 60 if self.register else 0
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@{HOST}:{SIP_PORT}>;auth_pass={self.password};regint={regint};"
            f"audio_codecs=PCMU;answermode=auto;ptime=20\n"
        )
        (self.dir / "contacts").write_text("")

    def start(
        self,
        dial: str | None = None,
        input_wav: Path | None = None,
        duration: float = 10.0,
        max_runtime: float | None = None,
    ) -> Softphone:
        """Start baresip; dial ``dial`` (an extension or a full sip: URI) if given."""
        if self.proc is not None:
            raise HarnessError("softphone already started")
        self.dir.mkdir(parents=True, exist_ok=True)
        mic = fit_wav(input_wav, self.dir / "input.wav", duration)
        self._write_config(mic)
        cmd = ["stdbuf", "-oL", "-eL", "baresip", "-f", str(self.dir)]
        if dial is not None:
            uri = dial if dial.startswith("sip:") else f"sip:{dial}@{HOST}:{SIP_PORT}"
            cmd += ["-e", f"/dial {uri}"]
        runtime = max_runtime if max_runtime is not None else duration + 20.0
        cmd += ["-t", str(max(1, int(runtime)))]
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"baresip-{self.user}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        try:
            while True:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                pending += chunk.replace(b"\r", b"\n")
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(raw.decode(errors="replace"))
            if pending:
                self._line(pending.decode(errors="replace"))
        except (OSError, ValueError):  # pipe closed under us during stop()
            pass

    def _line(self, line: str) -> None:
        line = line.strip()
        if not line or re.fullmatch(r"\[\d+:\d\d:\d\d\] audio=.*", line):
            return
        now = time.monotonic() - self._t0
        with self._lock:
            self._lines.append((now, line))
        if "Call established" in line and not self._established.is_set():
            self._established_at = now
            self._established.set()
        elif "session closed:" in line and self._close_reason is None:
            self._close_reason = line.split("session closed:", 1)[1].strip()
        elif (
            re.search(r"terminated \(duration|Call with .* terminated|call: terminate call", line)
            and not self._ended.is_set()
        ):
            self._ended_at = now
            self._ended.set()
        elif re.search(r"\b200 OK\b.*binding", line):
            self._registered.set()

    # control while running (baresip ctrl_tcp)

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run one baresip command (e.g. "sndcode", "hangup") through ctrl_tcp."""
        body = json.dumps({"command": command, "params": params, "token": "e2e"}).encode()
        with socket.create_connection((HOST, self.ctrl_port), timeout=timeout) as s:
            s.sendall(str(len(body)).encode() + b":" + body + b",")
            buf = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
                while b":" in buf:  # netstrings: LEN:JSON,
                    size, _, rest = buf.partition(b":")
                    if len(rest) < int(size) + 1:
                        break
                    msg = json.loads(rest[: int(size)])
                    buf = rest[int(size) + 1 :]
                    if msg.get("response"):
                        if not msg.get("ok"):
                            raise HarnessError(f"baresip {command} {params!r} failed: {msg}")
                        return dict(msg)
        raise HarnessError(f"baresip gave no answer to {command} {params!r}")

    def send_dtmf(self, digits: str, gap: float = 0.25) -> None:
        """Send DTMF (RFC 4733) to Asterisk in the current call, one digit per ``gap`` s."""
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(gap)

    def hangup(self) -> None:
        """Hang up the current call from the phone side."""
        self._local_hangup = True
        self.command("hangup")

    async def asend_dtmf(self, digits: str, gap: float = 0.25) -> None:
        await asyncio.to_thread(self.send_dtmf, digits, gap)

    async def ahangup(self) -> None:
        await asyncio.to_thread(self.hangup)

    @property
    def received_dtmf(self) -> str:
        """RFC 4733 digits the phone received (baresip logs "received event: 'X' (end=N)")."""
        digits = ""
        active: str | None = None
        with self._lock:
            lines = [line for _, line in self._lines]
        for line in lines:
            m = re.search(r"received event: '(.)' \(end=(\d)\)", line)
            if not m:
                continue
            digit, end = m[1], m[2] == "1"
            if active != digit:
                digits += digit
            active = None if end else digit
        return digits

    # waiting (sync and async)

    def wait_established(self, timeout: float = 10.0) -> bool:
        return self._established.wait(timeout)

    def wait_registered(self, timeout: float = 10.0) -> bool:
        return self._registered.wait(timeout)

    def wait_ended(self, timeout: float = 30.0) -> bool:
        return self._ended.wait(timeout)

    async def await_established(self, timeout: float = 10.0) -> bool:
        return await _await_event(self._established, timeout)

    async def await_ended(self, timeout: float = 30.0) -> bool:
        return await _await_event(self._ended, timeout)

    @property
    def log(self) -> str:
        with self._lock:
            return "\n".join(f"{t:7.3f} {line}" for t, line in self._lines)

    def result(self) -> CallResult:
        rec = self.dir / "rec"
        dec = sorted(rec.glob("*-dec.wav"))
        enc = sorted(rec.glob("*-enc.wav"))
        ended = self._ended.is_set()
        # baresip ends the call itself at the end of its audio file ("audio error ... end
        # of file)") or when told to (hangup()); any other end came from the far side.
        local_eof = any("end of file)" in line for _, line in self._lines)
        local = local_eof or self._local_hangup
        return CallResult(
            established=self._established.is_set(),
            established_at=self._established_at,
            ended=ended,
            ended_at=self._ended_at,
            ended_by_remote=ended and not local,
            close_reason=self._close_reason,
            recording=dec[-1] if dec else None,
            sent=enc[-1] if enc else None,
            log=self.log,
        )

    def stop(self, timeout: float = 5.0) -> CallResult:
        """Stop baresip by pid (SIGTERM: it hangs up and closes its recordings)."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
            if self._reader is not None:
                self._reader.join(5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return self.result()

    def call(
        self,
        dial: str,
        input_wav: Path | None = None,
        duration: float = 8.0,
        timeout: float | None = None,
    ) -> CallResult:
        """Dial, stay up ``duration`` s or until the far side hangs up, return the result.
        Gives up after ``answer_timeout`` s if the call was neither answered nor ended."""
        self.start(dial, input_wav, duration)
        deadline = time.monotonic() + self.answer_timeout
        while not (self._established.is_set() or self._ended.is_set()):
            if time.monotonic() > deadline or (
                self.proc is not None and self.proc.poll() is not None
            ):
                return self.stop()
            time.sleep(0.02)
        self.wait_ended(timeout if timeout is not None else duration + 15.0)
        return self.stop()

    async def acall(
        self,
        dial: str,
        input_wav: Path | None = None,
        duration: float = 8.0,
        timeout: float | None = None,
    ) -> CallResult:
        self.start(dial, input_wav, duration)
        deadline = time.monotonic() + self.answer_timeout
        while not (self._established.is_set() or self._ended.is_set()):
            if time.monotonic() > deadline or (
                self.proc is not None and self.proc.poll() is not None
            ):
                return await asyncio.to_thread(self.stop)
            await asyncio.sleep(0.02)
        await self.await_ended(timeout if timeout is not None else duration + 15.0)
        return await asyncio.to_thread(self.stop)


async def _await_event(event: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# --- RTP capture (tshark) -----------------------------------------------------------------

DTMF_EVENTS = "0123456789*#ABCD"


@dataclasses.dataclass(frozen=True)
class RtpPacket:
    time: float  # capture time, seconds since the epoch
    src_port: int
    dst_port: int
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    event_id: int | None  # RFC 4733 event (payload type 101): 0-9, 10 = '*', 11 = '#'
    event_end: bool | None
    payload: bytes = b""  # the RTP payload (audio packets)


class RtpCapture:
    """tshark on ``lo`` for UDP ports ``ports`` (Asterisk's and the phones' RTP ranges).

    ``start()`` returns once tshark reports "Capturing on"; ``stop()`` returns the packets
    decoded as RTP.
    """

    def __init__(
        self,
        workdir: Path,
        ports: tuple[int, int] = (ASTERISK_RTP_PORTS[0], PHONE_RTP_PORTS[1]),
        interface: str = "lo",
    ) -> None:
        self.ports = ports
        self.interface = interface
        self.pcap = Path(workdir) / f"rtp-{uuid.uuid4().hex[:6]}.pcapng"
        self.stderr_path = self.pcap.with_suffix(".tshark.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.packets: list[RtpPacket] = []
        self._stderr: Any = None

    def start(self, timeout: float = 15.0) -> RtpCapture:
        self.pcap.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                "tshark",
                "-q",
                "-n",
                "-i",
                self.interface,
                "-f",
                f"udp portrange {self.ports[0]}-{self.ports[1]}",
                "-w",
                str(self.pcap),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while "Capturing on" not in self.stderr_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.stderr_path.read_text(errors="replace")
                self.stop()
                raise HarnessError(f"tshark did not start capturing: {err}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> list[RtpPacket]:
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(0.3)  # let the last packets reach the capture file
            stop_process(self.proc, timeout, signal.SIGINT)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self.proc is not None and self.pcap.exists():
            self.packets = self._decode()
        return self.packets

    def _decode(self) -> list[RtpPacket]:
        fields = [
            "frame.time_epoch",
            "udp.srcport",
            "udp.dstport",
            "rtp.p_type",
            "rtp.seq",
            "rtp.timestamp",
            "rtp.ssrc",
            "rtp.marker",
            "rtpevent.event_id",
            "rtpevent.end_of_event",
            "rtp.payload",
        ]
        cmd = [
            "tshark",
            "-n",
            "-r",
            str(self.pcap),
            "-d",
            f"udp.port=={self.ports[0]}-{self.ports[1]},rtp",
            "-Y",
            "rtp",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ]
        for f in fields:
            cmd += ["-e", f]
        res = subprocess.run(cmd, capture_output=True, timeout=60, check=True)
        packets = []
        for line in res.stdout.decode().splitlines():
            v = line.split("|")
            if len(v) < len(fields) or not v[3]:
                continue
            packets.append(
                RtpPacket(
                    time=float(v[0]),
                    src_port=int(v[1]),
                    dst_port=int(v[2]),
                    payload_type=int(v[3]),
                    seq=int(v[4]),
                    timestamp=int(v[5]),
                    ssrc=int(v[6], 0),
                    marker=_flag(v[7]) or False,
                    event_id=int(v[8]) if v[8] else None,
                    event_end=_flag(v[9]),
                    payload=bytes.fromhex(v[10].replace(":", "")) if len(v) > 10 else b"",
                )
            )
        return packets

    def __enter__(self) -> RtpCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _flag(value: str) -> bool | None:
    if value == "":
        return None
    return value.strip().lower() in ("1", "true")


def from_asterisk(packets: Iterable[RtpPacket]) -> list[RtpPacket]:
    """Packets sent from Asterisk's RTP ports to a phone (not to the bridge: ARI's
    externalMedia RTP also leaves Asterisk's range, towards the bridge's own port)."""
    lo, hi = ASTERISK_RTP_PORTS
    plo, phi = PHONE_RTP_PORTS
    return [p for p in packets if lo <= p.src_port <= hi and plo <= p.dst_port <= phi]


ULAW_SILENCE = frozenset(b"\xff\x7f")  # µ-law +0 and -0


def first_voiced_run_frames(packets: Iterable[RtpPacket], max_gap: int = 3) -> int:
    """Length, in 20 ms packets, of the first stretch of non-silent µ-law audio: from the
    first packet with a non-zero sample to the last one before ``max_gap`` silent packets.
    Counted on sequence numbers (modulo 2**16), so a lost packet does not shorten it."""
    audio = sorted((p for p in packets if p.payload_type == 0 and p.payload), key=lambda p: p.time)
    voiced = [p.seq for p in audio if not set(p.payload) <= ULAW_SILENCE]
    if not voiced:
        return 0
    length = 1
    last = voiced[0]
    for seq in voiced[1:]:
        step = (seq - last) % 2**16
        if step > max_gap + 1:
            break
        length += step
        last = seq
    return length


def dtmf_digits(packets: Iterable[RtpPacket], payload_type: int = 101) -> list[str]:
    """RFC 4733 events as digits, one per event (packets grouped by stream and timestamp)."""
    seen: dict[tuple[int, int, int, int], int] = {}
    for p in packets:
        if p.payload_type == payload_type and p.event_id is not None:
            seen.setdefault((p.ssrc, p.src_port, p.dst_port, p.timestamp), p.event_id)
    return [DTMF_EVENTS[e] if 0 <= e < len(DTMF_EVENTS) else f"?{e}" for e in seen.values()]


def audio_intervals_ms(packets: Iterable[RtpPacket], payload_type: int = 0) -> np.ndarray:
    """Inter-arrival times (ms) of one stream's audio packets (payload type 0 = PCMU)."""
    times = [p.time for p in packets if p.payload_type == payload_type]
    return np.diff(np.asarray(times)) * 1000.0


# --- ARI ------------------------------------------------------------------------------------


def ari_request(
    method: str, path: str, password: str = ARI_TEST_PASSWORD, timeout: float = 5.0
) -> Any:
    """One ARI REST request (``path`` after /ari), as the agi_bridge user; JSON or None."""
    token = base64.b64encode(f"{ARI_USER}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{ARI_URL}/ari{path}", method=method, headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise HarnessError(f"ARI {method} {path}: {exc.code} {exc.read()[:200]!r}") from exc
    return json.loads(body) if body else None


# --- AMI ------------------------------------------------------------------------------------


class AmiError(HarnessError):
    pass


class AmiClient:
    """Minimal asyncio AMI client: login, actions by ActionID, collected events."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.banner = ""
        self.events: list[dict[str, str]] = []
        self._pending: dict[str, asyncio.Future[dict[str, str]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._ids = 0

    @classmethod
    async def connect(
        cls,
        user: str = AMI_USER,
        secret: str = AMI_TEST_SECRET,
        host: str = HOST,
        port: int = AMI_PORT,
        timeout: float = 5.0,
        events: bool = True,
    ) -> AmiClient:
        self = cls()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        self.reader, self.writer = reader, writer
        self.banner = (await asyncio.wait_for(reader.readline(), timeout)).decode().strip()
        self._task = asyncio.create_task(self._read())
        try:
            await self.action(
                "Login",
                Username=user,
                Secret=secret,
                Events="on" if events else "off",
                timeout=timeout,
            )
        except BaseException:
            await self.close()
            raise
        return self

    async def _read(self) -> None:
        assert self.reader is not None
        block: dict[str, str] = {}
        try:
            while True:
                raw = await self.reader.readline()
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line:
                    key, _, value = line.partition(":")
                    block[key.strip()] = value.strip()
                    continue
                if "Event" in block:
                    self.events.append(block)
                    self._changed.set()
                elif "Response" in block:
                    fut = self._pending.pop(block.get("ActionID", ""), None)
                    if fut is not None and not fut.done():
                        fut.set_result(block)
                block = {}
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(AmiError("AMI connection closed"))
            self._changed.set()

    async def action(
        self, name: str, timeout: float = 5.0, check: bool = True, **fields: str
    ) -> dict[str, str]:
        """Send action ``name``; return its response (raises AmiError on Response: Error)."""
        assert self.writer is not None
        self._ids += 1
        action_id = f"e2e-{self._ids}"
        fut: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = fut
        text = f"Action: {name}\r\nActionID: {action_id}\r\n"
        text += "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.writer.write(text.encode())
        await self.writer.drain()
        resp = await asyncio.wait_for(fut, timeout)
        if check and resp.get("Response") != "Success":
            raise AmiError(f"AMI {name} failed: {resp}")
        return resp

    async def wait_event(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float = 10.0
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for ev in self.events[checked:]:
                if predicate(ev):
                    return ev
            checked = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AmiError(f"no matching AMI event within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            with contextlib.suppress(Exception):
                if self._task is not None and not self._task.done():
                    await self.action("Logoff", timeout=2, check=False)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- a stand-in for agi_bridge (tests the dialplan contract) ---------------------------------


@dataclasses.dataclass
class FakeSession:
    agi_env: dict[str, str]
    uuid: str | None = None
    audiosocket_uuid: str | None = None
    received_audio_bytes: int = 0
    received_dtmf: str = ""
    sent_frames: int = 0
    ended: str = ""


class FakeBridge:
    """Minimal agi_bridge stand-in running in its own thread and event loop.

    FastAGI on ``agi_port``: answers ``SET VARIABLE AGI_BRIDGE_UUID "<uuid>"`` (or nothing
    with ``set_uuid=False``). AudioSocket on ``audiosocket_port`` (``None``: no listener, so
    connections are refused): sends ``play`` (slin 8 kHz) paced at 20 ms, then silence up to
    ``hold`` seconds, then, when ``status`` is given, sets AGI_BRIDGE_STATUS on the caller's
    channel with AMI Setvar, and sends the AudioSocket hangup frame.
    """

    def __init__(
        self,
        agi_port: int,
        audiosocket_port: int | None,
        *,
        set_uuid: bool = True,
        play: bytes = b"",
        hold: float = 0.0,
        status: str | None = "completed",
        ami_secret: str = AMI_TEST_SECRET,
    ) -> None:
        self.agi_port = agi_port
        self.audiosocket_port = audiosocket_port
        self.set_uuid = set_uuid
        self.play = play
        self.hold = hold
        self.status = status
        self.ami_secret = ami_secret
        self.sessions: list[FakeSession] = []
        self.status_requests: list[dict[str, str]] = []  # AGI(agi://.../status,UUID)
        self.errors: list[str] = []
        self._by_uuid: dict[str, FakeSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def start(self) -> FakeBridge:
        self._thread = threading.Thread(target=self._run, name="fake-bridge", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise HarnessError(f"fake bridge did not start: {self.errors}")
        if self.errors:
            raise HarnessError(f"fake bridge failed to start: {self.errors}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> FakeBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = []
        try:
            servers.append(await asyncio.start_server(self._agi, HOST, self.agi_port))
            if self.audiosocket_port is not None:
                servers.append(
                    await asyncio.start_server(self._audiosocket, HOST, self.audiosocket_port)
                )
        except OSError as exc:
            self.errors.append(f"listen: {exc}")
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for s in servers:
                s.close()
                await s.wait_closed()

    async def _agi(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            env: dict[str, str] = {}
            while True:
                line = (await asyncio.wait_for(reader.readline(), 5)).decode().rstrip("\r\n")
                if not line:
                    break
                key, _, value = line.partition(": ")
                env[key] = value
            if env.get("agi_network_script", "").startswith("status"):
                # the dialplan's status question after AudioSocket(): the fake sets the
                # status over AMI only, so it has nothing to add here
                self.status_requests.append(env)
                return
            session = FakeSession(agi_env=env)
            self.sessions.append(session)
            if self.set_uuid:
                session.uuid = str(uuid.uuid4())
                self._by_uuid[session.uuid] = session
                writer.write(f'SET VARIABLE AGI_BRIDGE_UUID "{session.uuid}"\n'.encode())
                await writer.drain()
                reply = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
                if not reply.startswith("200 result=1"):
                    self.errors.append(f"SET VARIABLE answered {reply!r}")
        except Exception as exc:
            self.errors.append(f"agi: {exc!r}")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _audiosocket(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session: FakeSession | None = None
        recv: asyncio.Task[None] | None = None
        try:
            kind, payload = await _read_frame(reader)
            if kind != 0x01 or len(payload) != 16:
                raise HarnessError(f"first AudioSocket frame: type {kind:#x}, {len(payload)} bytes")
            as_uuid = str(uuid.UUID(bytes=payload))
            session = self._by_uuid.get(as_uuid) or FakeSession(agi_env={})
            session.audiosocket_uuid = as_uuid
            recv = asyncio.create_task(self._receive(reader, session))
            silence = b"\x00" * 320
            audio = self.play + b"\x00" * (-len(self.play) % 320)
            frames = [audio[i : i + 320] for i in range(0, len(audio), 320)]
            frames += [silence] * max(0, int(self.hold * 50) - len(frames))
            t0 = time.monotonic()
            for n, frame in enumerate(frames):  # one 20 ms frame per 20 ms, on deadlines
                await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
                writer.write(b"\x10" + struct.pack(">H", len(frame)) + frame)
                await writer.drain()
                session.sent_frames += 1
            if self.status is not None:
                await self._set_status(session)
            writer.write(b"\x00\x00\x00")  # hangup frame: AudioSocket() returns
            await writer.drain()
            session.ended = "hangup-frame"
            await asyncio.sleep(0.2)
        except Exception as exc:
            self.errors.append(f"audiosocket: {exc!r}")
        finally:
            if recv is not None:
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recv
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _receive(self, reader: asyncio.StreamReader, session: FakeSession) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind, payload = await _read_frame(reader)
                if kind == 0x10:
                    session.received_audio_bytes += len(payload)
                elif kind == 0x03:
                    session.received_dtmf += payload.decode(errors="replace")
                elif kind == 0x00:
                    return

    async def _set_status(self, session: FakeSession) -> None:
        channel = session.agi_env.get("agi_channel")
        if not channel:
            raise HarnessError("no agi_channel to set AGI_BRIDGE_STATUS on")
        ami = await AmiClient.connect(secret=self.ami_secret, events=False)
        try:
            await ami.action(
                "Setvar", Channel=channel, Variable="AGI_BRIDGE_STATUS", Value=self.status or ""
            )
        finally:
            await ami.close()


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(3)
    length = struct.unpack(">H", header[1:])[0]
    return header[0], await reader.readexactly(length) if length else b""


def wav_to_slin(path: Path) -> bytes:
    """8 kHz mono 16-bit wav -> raw signed-linear little-endian bytes (AudioSocket 0x10)."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise HarnessError(f"{path}: need 8 kHz mono 16-bit PCM")
        return w.readframes(w.getnframes())
