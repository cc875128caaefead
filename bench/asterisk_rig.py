"""The pieces of ``bench_asterisk.py`` that are not the run itself: the Asterisk
configuration of the SIP loop, the bridge's config file, the RTP capture and its parser,
and /proc sampling of process trees.

The SIP loop: the chroot Asterisk (tests/e2e/harness.py) with the shipped configuration
plus a second UDP transport on 127.0.0.1:5070. AMI Originate dials
``PJSIP/100@bench-loop-out``, an endpoint whose contact is that second transport, so the
INVITE comes back into the same Asterisk, is identified as ``bench-loop-in`` and runs the
shipped agent path (``agi-bridge-agent``: FastAGI, then AudioSocket to the bridge). The
originating leg is the phone: it plays an espeak-ng utterance followed by silence, over
and over, as a phone's RTP never stops. The RTP that the agent leg sends to the phone leg
is what a phone would receive from Asterisk: its pacing is measured from a capture.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e import harness

LOOP_PORT = 5070
RTP_RANGE = (10000, 19999)  # 200 calls x 2 legs x 2 ports (RTP + RTCP) fit with room
PHONE_CONTEXT = "bench-phone"
KEY_ENV = "AGI_BRIDGE_BENCH_KEY"  # the simulator wants a bearer key, any key
LOG_TAG = "bench-loop agent-leg rtp-dest"

PJSIP_LOOP = f"""
; ---- bench_asterisk.py: the SIP loop -------------------------------------------------
[transport-bench-loop]
type = transport
protocol = udp
bind = 127.0.0.1:{LOOP_PORT}

[bench-loop-out]
type = aor
contact = sip:127.0.0.1:{LOOP_PORT}

[bench-loop-out]
type = endpoint
transport = transport-udp
aors = bench-loop-out
context = {PHONE_CONTEXT}
disallow = all
allow = ulaw
direct_media = no
rtp_symmetric = yes
media_address = 127.0.0.1
bind_rtp_to_media_address = yes

[bench-loop-in]
type = endpoint
transport = transport-bench-loop
context = bench-loop-in
disallow = all
allow = ulaw
direct_media = no
rtp_symmetric = yes
media_address = 127.0.0.1
bind_rtp_to_media_address = yes

[bench-loop-in]
type = identify
endpoint = bench-loop-in
match = 127.0.0.1
"""

# The agent leg logs where its RTP goes (the phone leg's port): the capture keeps only
# the packets to those ports. Then the shipped agent path, unchanged.
EXTENSIONS_BENCH = f"""
; ---- bench_asterisk.py ------------------------------------------------------------------
[bench-loop-in]
exten => _X.,1,Answer()
 same => n,Log(NOTICE,{LOG_TAG} ${{CHANNEL(rtp,dest)}})
 same => n,Goto(agi-bridge-agent,default,1)

[{PHONE_CONTEXT}]
; the phone: a random first pause, then the utterance and its silence, again and again
exten => s,1,Answer()
 same => n,Playback(${{BENCH_LEAD}})
 same => n(talk),Playback(${{BENCH_TALK}})
 same => n,Goto(talk)
"""


def asterisk_config(agi_port: int, audiosocket_port: int) -> dict[str, str]:
    """Files that replace the shipped ones (the shipped text plus the bench's sections)."""
    conf = harness.CONFIG_DIR
    rtp = f"[general]\nrtpstart = {RTP_RANGE[0]}\nrtpend = {RTP_RANGE[1]}\nicesupport = no\n"
    return {
        "pjsip.conf": (conf / "pjsip.conf").read_text() + PJSIP_LOOP,
        "extensions.conf": (conf / "extensions.conf").read_text() + EXTENSIONS_BENCH,
        "rtp.conf": rtp,
    }


def bridge_config(
    path: Path,
    *,
    sim_url: str,
    fastagi: str,
    audiosocket: str,
    http: str,
    secret_file: Path,
    max_calls: int,
) -> Path:
    path.write_text(
        f"""# written by bench/bench_asterisk.py
listen: {{audiosocket: "{audiosocket}", fastagi: "{fastagi}", http: "{http}"}}
ami: {{host: 127.0.0.1, port: {harness.AMI_PORT}, username: {harness.AMI_USER},
      secret_file: "{secret_file}"}}
realtime: {{provider: url, url: "{sim_url}", connect_timeout_s: 20,
           api_key_env: {KEY_ENV}}}
records: {{enabled: false}}
limits: {{max_calls: {max_calls}, max_call_s: 3600}}
agents:
  default:
    greeting: Greet the caller.
    turn_detection: {{type: server_vad, silence_duration_ms: 500}}
"""
    )
    return path


# ------------------------------------------------------------------------ /proc sampling


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads' children files)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            out.extend(int(c) for c in text.split())
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children(p))
    return seen


@dataclass
class ProcSample:
    cpu_s: float
    rss_kib: int
    fds: int
    threads: int
    pids: int


def sample_tree(pid: int) -> ProcSample:
    """CPU seconds, RSS, open fds and threads of a process and its descendants."""
    tck = os.sysconf("SC_CLK_TCK")
    cpu, rss, fds, threads, pids = 0.0, 0, 0, 0, 0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{p}/status").read_text()
            nfd = len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
        cpu += (int(stat[11]) + int(stat[12])) / tck
        threads += int(stat[17])
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        fds += nfd
        pids += 1
    return ProcSample(cpu, rss, fds, threads, pids)


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


# ----------------------------------------------------------------------------- capture


class Capture:
    """dumpcap on ``lo``, classic pcap, UDP in the RTP range; packets parsed here (no
    tshark decode pass: at 200 calls a 30 s window holds ~600,000 packets)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = path.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Capture:
        lo, hi = RTP_RANGE
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    "dumpcap",
                    "-q",
                    "-i",
                    "lo",
                    "-P",
                    "-B",
                    "64",
                    "-f",
                    f"udp portrange {lo}-{hi}",
                    "-w",
                    str(self.path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.path.exists() or self.path.stat().st_size < 24:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dumpcap did not start: {self.log.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(0.2)  # the last packets
            self.proc.send_signal(2)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def udp_packets(path: Path) -> list[tuple[float, int, int]]:
    """(time, src port, dst port) of each IPv4/UDP packet of a classic pcap file from
    ``lo`` (link type Ethernet: 14-byte header)."""
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian, nano = "<", False
    elif magic == b"\x4d\x3c\xb2\xa1":
        endian, nano = "<", True
    else:
        raise RuntimeError(f"{path}: not a little-endian classic pcap file")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != 1:
        raise RuntimeError(f"{path}: link type {linktype}, expected Ethernet (1)")
    div = 1e9 if nano else 1e6
    rec = struct.Struct(endian + "IIII")
    ports = struct.Struct("!HH")
    out: list[tuple[float, int, int]] = []
    off = 24
    end = len(data)
    while off + 16 <= end:
        sec, frac, incl, _ = rec.unpack_from(data, off)
        body = off + 16
        off = body + incl
        if incl < 14 + 20 + 8 or data[body + 12 : body + 14] != b"\x08\x00":
            continue
        ihl = (data[body + 14] & 0x0F) * 4
        if data[body + 14 + 9] != 17:  # not UDP
            continue
        src, dst = ports.unpack_from(data, body + 14 + ihl)
        out.append((sec + frac / div, src, dst))
    return out


def streams_to(
    packets: list[tuple[float, int, int]], dst_ports: set[int]
) -> dict[Any, list[float]]:
    """Arrival times per (src, dst) stream, for the streams to ``dst_ports`` (RTP only:
    RTCP uses the odd port above)."""
    out: dict[Any, list[float]] = {}
    for t, src, dst in packets:
        if dst in dst_ports:
            out.setdefault((src, dst), []).append(t)
    return out
