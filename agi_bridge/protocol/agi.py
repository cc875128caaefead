"""FastAGI, sans-I/O: the request environment, command lines and reply lines.

Wire format (res/res_agi.c):

* Asterisk connects and sends ``agi_network: yes``, ``agi_network_script: SCRIPT?QUERY``
  (only when the URL has a path), then ``setup_env()``: ``agi_request``, ``agi_channel``,
  ... ``agi_arg_1`` ... one ``key: value\\n`` line each, and a blank line.
* Then it reads one command per line. It strips the trailing ``\\n`` but not ``\\r``,
  so commands end with a bare ``\\n``. Arguments are split by ``parse_args()``:
  whitespace separates, ``"`` toggles quoting, ``\\`` escapes the next character.
* Each command gets ``200 result=N [(data)]``, ``510``/``511`` errors, or a 520 usage
  error, multi-line as ``520-...`` up to ``520 End of proper usage.``. When the channel
  hangs up Asterisk may also send an unsolicited ``HANGUP`` line.
* Closing the connection returns the channel to the dialplan.

Nothing here does I/O: parsers take bytes and return values, builders return bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from agi_bridge.errors import AgiError

__all__ = [
    "MAX_REPLY_LINE",
    "MAX_REQUEST_SIZE",
    "AgiEvent",
    "AgiHangup",
    "AgiReply",
    "AgiReplyParser",
    "AgiRequest",
    "AgiRequestParser",
    "command",
    "get_variable",
    "hangup",
    "quote",
    "set_variable",
    "verbose",
]

# A real environment is well under 2 KiB; 16 KiB leaves room for long caller names and
# arguments while stopping a peer that streams garbage from growing our buffer.
MAX_REQUEST_SIZE = 16 * 1024
# res_agi's own command buffer (AGI_BUF_LEN) is 2 KiB; replies are short, except
# GET VARIABLE data. 8 KiB per line and 64 KiB for a 520 usage block are generous.
MAX_REPLY_LINE = 8 * 1024
MAX_USAGE_SIZE = 64 * 1024

_ENV_KEY = re.compile(r"agi_[a-z0-9_]+\Z")
# Asterisk prints "unknown" for caller number/name, DNID and RDNIS that are not set.
_UNKNOWN = "unknown"


def _decode(raw: bytes) -> str:
    # Caller names are not guaranteed UTF-8 (some trunks send Latin-1); a wrong byte must
    # not cost the call, so replace rather than fail.
    return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class AgiRequest:
    """The environment Asterisk sends at the start of a FastAGI session."""

    env: dict[str, str]

    def get(self, key: str, default: str = "") -> str:
        """``env["agi_" + key]``, or *default*."""
        return self.env.get(f"agi_{key}", default)

    def _known(self, key: str) -> str:
        value = self.get(key)
        return "" if value == _UNKNOWN else value

    @property
    def network_script(self) -> str:
        """The path after ``agi://host:port/``, without the query (``agent``)."""
        script = self.get("network_script")
        if not script:
            # agi_network_script is only sent when the URL has a path; fall back to the
            # path of agi_request so a request is still classified the same way.
            request = self.get("request")
            if request.startswith("agi://"):
                _, _, script = request[len("agi://") :].partition("/")
        return script.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """``?a=b&c=d`` of the script URL as a dict (last value wins)."""
        script = self.get("network_script")
        _, sep, query = script.partition("?")
        if not sep:
            _, sep, query = self.get("request").partition("?")
        return dict(parse_qsl(query, keep_blank_values=True)) if sep else {}

    @property
    def args(self) -> list[str]:
        """``agi_arg_1``..``agi_arg_N`` in order: the AGI() application arguments."""
        out: list[str] = []
        while (value := self.env.get(f"agi_arg_{len(out) + 1}")) is not None:
            out.append(value)
        return out

    @property
    def request(self) -> str:
        return self.get("request")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def callerid(self) -> str:
        """Caller number; ``""`` when Asterisk reports ``unknown``."""
        return self._known("callerid")

    @property
    def calleridname(self) -> str:
        """Caller name; ``""`` when Asterisk reports ``unknown``."""
        return self._known("calleridname")

    @property
    def dnid(self) -> str:
        """Dialed number; ``""`` when Asterisk reports ``unknown``."""
        return self._known("dnid")

    @property
    def rdnis(self) -> str:
        return self._known("rdnis")

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def context(self) -> str:
        return self.get("context")

    @property
    def priority(self) -> str:
        return self.get("priority")

    @property
    def language(self) -> str:
        return self.get("language")

    @property
    def type(self) -> str:
        """Channel technology, e.g. ``PJSIP``."""
        return self.get("type")


class AgiRequestParser:
    """Accumulates the environment block; ``feed()`` returns the request once complete.

    Lines are checked as they complete, so garbage (an HTTP request, a port scanner)
    fails on its first line instead of after a timeout.
    """

    def __init__(self, max_size: int = MAX_REQUEST_SIZE) -> None:
        self._max_size = max_size
        self._buffer = bytearray()
        self._size = 0
        self._lines = 0
        self._env: dict[str, str] = {}
        self._done = False
        self._failed: AgiError | None = None
        self.unparsed = b""
        """Bytes received after the blank line (Asterisk sends none before a command)."""

    def feed(self, data: bytes) -> AgiRequest | None:
        if self._failed is not None:
            raise self._failed
        if self._done:
            raise AgiError("FastAGI request already complete; no more environment expected")
        try:
            return self._feed(data)
        except AgiError as exc:
            self._failed = exc
            raise

    def _feed(self, data: bytes) -> AgiRequest | None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._size += end + 1
            self._lines += 1
            self._check_size()
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                return self._finish()
            self._parse_line(raw)
        # No newline yet: the partial line counts against the bound too.
        self._check_size(len(self._buffer))
        return None

    def _check_size(self, pending: int = 0) -> None:
        if self._size + pending > self._max_size:
            raise AgiError(
                f"FastAGI request too large: {self._size + pending} bytes without the "
                f"terminating blank line > {self._max_size}"
            )

    def _parse_line(self, raw: bytes) -> None:
        line = _decode(raw)
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            raise AgiError(f"FastAGI request line {self._lines} has no ':': {_preview(line)}")
        if not _ENV_KEY.match(key):
            raise AgiError(
                f"FastAGI request line {self._lines} is not an agi_ variable: {_preview(line)}"
            )
        # res_agi writes "key: value"; strip exactly the one separator space so values
        # keep their own leading/trailing spaces.
        self._env[key] = value[1:] if value.startswith(" ") else value

    def _finish(self) -> AgiRequest:
        if not self._env:
            raise AgiError("FastAGI request is empty: blank line before any agi_ variable")
        self._done = True
        self.unparsed = bytes(self._buffer)
        self._buffer.clear()
        return AgiRequest(env=dict(self._env))


def _preview(text: str, limit: int = 60) -> str:
    # Error messages name the offending line, but never dump a whole hostile payload.
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---------------------------------------------------------------------------- commands


def command(text: str) -> bytes:
    """One raw AGI command line. ``text`` must not contain a line break."""
    if not text or text.strip() != text:
        raise AgiError(f"AGI command must be non-empty without surrounding spaces: {text!r}")
    if any(c in text for c in "\r\n\0"):
        raise AgiError(f"AGI command must be a single line: {_preview(text)}")
    # res_agi strips the trailing "\n" but not "\r": a CRLF would end up in the last argument.
    return text.encode("utf-8") + b"\n"


def quote(value: str) -> str:
    """Quote *value* as one ``parse_args()`` argument: ``"`` and ``\\`` are escaped."""
    if any(c in value for c in "\r\n\0"):
        raise AgiError(f"AGI argument must not contain a line break or NUL: {_preview(value)}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_name(name: str) -> None:
    # A variable name is a bare word: no whitespace, quotes, escapes or control characters,
    # so it cannot split into more arguments or smuggle another command.
    if not name or any(c.isspace() or c in '"\\' or ord(c) < 0x20 for c in name):
        raise AgiError(f"invalid AGI variable name: {name!r}")


def set_variable(name: str, value: str) -> bytes:
    """``SET VARIABLE NAME "value"`` (reply ``200 result=1``)."""
    _check_name(name)
    return command(f"SET VARIABLE {name} {quote(value)}")


def get_variable(name: str) -> bytes:
    """``GET VARIABLE NAME`` (reply ``200 result=1 (value)`` or ``200 result=0``)."""
    _check_name(name)
    return command(f"GET VARIABLE {name}")


def verbose(message: str, level: int = 1) -> bytes:
    """``VERBOSE "message" level``: a line on the Asterisk console (levels 1-4)."""
    if not 1 <= level <= 4:
        raise AgiError(f"AGI VERBOSE level must be 1..4, got {level}")
    return command(f"VERBOSE {quote(message)} {level}")


def hangup() -> bytes:
    """``HANGUP``: hang up the current channel."""
    return command("HANGUP")


# ----------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class AgiReply:
    """One reply to a command.

    ``code`` is 200 for success, 510 unknown command, 511 not permitted on a dead channel,
    520 usage error (``usage`` holds the text of a multi-line 520). For 200 replies,
    ``result`` is the text after ``result=`` and ``data`` the text in parentheses, if any.
    """

    code: int
    text: str
    result: str | None = None
    data: str | None = None
    usage: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200


@dataclass(frozen=True)
class AgiHangup:
    """The in-band ``HANGUP`` line: the channel hung up (not a reply to a command)."""


AgiEvent = AgiReply | AgiHangup

_REPLY = re.compile(r"(\d{3})([ -])(.*)\Z", re.DOTALL)
_RESULT = re.compile(r"result=(\S*)")
_DATA = re.compile(r"\((.*)\)")
_USAGE_END = "520 End of proper usage."


class AgiReplyParser:
    """Turns reply bytes into :class:`AgiReply` / :class:`AgiHangup` events."""

    def __init__(self, max_line: int = MAX_REPLY_LINE, max_usage: int = MAX_USAGE_SIZE) -> None:
        self._max_line = max_line
        self._max_usage = max_usage
        self._buffer = bytearray()
        self._usage: list[str] | None = None  # inside a 520- block
        self._usage_head = ""
        self._usage_size = 0

    def feed(self, data: bytes) -> list[AgiEvent]:
        self._buffer += data
        events: list[AgiEvent] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if len(raw) > self._max_line:
                raise AgiError(f"AGI reply line too long: {len(raw)} bytes > {self._max_line}")
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            event = self._line(_decode(raw))
            if event is not None:
                events.append(event)
        if len(self._buffer) > self._max_line:
            raise AgiError(
                f"AGI reply line too long: {len(self._buffer)} bytes without newline "
                f"> {self._max_line}"
            )
        return events

    def _line(self, line: str) -> AgiEvent | None:
        if self._usage is not None:
            return self._usage_line(line)
        if line == "HANGUP":
            return AgiHangup()
        if not line:
            return None  # tolerate stray blank lines between replies
        match = _REPLY.match(line)
        if match is None:
            raise AgiError(f"malformed AGI reply line: {_preview(line)}")
        code, sep, text = int(match[1]), match[2], match[3]
        if sep == "-":
            if code != 520:
                raise AgiError(f"unexpected multi-line AGI reply {code}: {_preview(line)}")
            self._usage, self._usage_head, self._usage_size = [], text, 0
            return None
        result = data = None
        if code in (100, 200):
            if (m := _RESULT.search(text)) is not None:
                result = m[1]
            if (m := _DATA.search(text)) is not None:
                data = m[1]
        return AgiReply(code=code, text=text, result=result, data=data)

    def _usage_line(self, line: str) -> AgiEvent | None:
        assert self._usage is not None
        done = line.startswith("520 ")
        if not done and line.endswith(_USAGE_END):
            # res_agi prints the usage text with "%s" and no newline of its own, so when the
            # text lacks a final newline the end marker is glued to its last line.
            self._usage.append(line[: -len(_USAGE_END)])
            done, line = True, _USAGE_END
        if not done:
            self._usage_size += len(line) + 1
            if self._usage_size > self._max_usage:
                raise AgiError(f"AGI 520 usage text too long: > {self._max_usage} bytes")
            self._usage.append(line)
            return None
        usage = "\n".join(self._usage).strip("\n")
        text = self._usage_head
        self._usage = None
        return AgiReply(code=520, text=text, usage=usage)
