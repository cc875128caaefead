"""The configuration schema: frozen dataclasses, one per YAML section, every key with its
default. Loading and validation live in load.py."""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from agi_bridge.models import DEFAULT_REALTIME_MODEL, DEFAULT_TRANSCRIPTION_MODEL, DEFAULT_VOICE

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant answering a phone call. Keep answers short and "
    "conversational; this is a phone line, so never use lists, markdown or emoji."
)
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."

# Tools the bridge implements itself; webhook tools (top-level ``tools:``) may not reuse
# these names. transfer and switch_agent are offered when the agent has targets for them.
BUILTIN_TOOLS = ("send_dtmf", "hangup", "transfer", "switch_agent", "collect_digits")
# Function names the Realtime API accepts; also used for transfer target names.
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _Raw:
    """Marks a str field whose YAML scalar is taken as written (``0123`` stays ``0123``)."""


# Dial strings (numbers, extensions, contexts): unquoted digits in YAML are accepted and
# kept verbatim, so ``dnid: 0123`` is not read as an octal integer.
DialString = Annotated[str, _Raw]


@dataclass(frozen=True)
class Listen:
    audiosocket: str = "127.0.0.1:9092"
    fastagi: str = "127.0.0.1:4573"
    # /metrics, /healthz, /admin; "" = off. Not 8088: that is Asterisk's own HTTP (ARI)
    http: str = "127.0.0.1:9091"
    # An AudioSocket UUID that no FastAGI request registered: "refuse" (hangup frame, the
    # dialplan falls back; nobody who merely reaches the port gets a model session) or
    # "default_agent" (trust the port: the demo's virtual caller, tests, a firewalled lab).
    audiosocket_unregistered: Literal["refuse", "default_agent"] = "refuse"
    # The host Asterisk must use for this process's AudioSocket listener, told with each
    # FastAGI answer (AGI_BRIDGE_AUDIOSOCKET, with the port of this worker): "" = the
    # address Asterisk's FastAGI connection arrived at (or the listen host if it is not a
    # wildcard); a host name/IP behind NAT; "off" = not told (the dialplan's settings).
    audiosocket_advertise: str = ""


@dataclass(frozen=True)
class Ami:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "agi_bridge"
    secret_env: str = "AGI_BRIDGE_AMI_SECRET"
    secret_file: str = ""
    action_timeout_s: float = 5.0


@dataclass(frozen=True)
class Ari:
    """The ARI transport: a Stasis application, media over externalMedia (RTP or
    chan_websocket). Off by default; AudioSocket runs either way."""

    enabled: bool = False
    url: str = "http://127.0.0.1:8088"  # Asterisk's HTTP server (http.conf); /ari is added
    app: str = "agi-bridge"  # Stasis(agi-bridge,AGENT[,key=value...])
    username: str = "agi_bridge"  # ari.conf user
    password_env: str = "AGI_BRIDGE_ARI_PASSWORD"
    password_file: str = ""  # wins over password_env when set
    media: Literal["rtp", "websocket"] = "rtp"
    # rtp: externalMedia sends µ-law RTP to a UDP port of the bridge on this address,
    # one port per call from this range.
    rtp_host: str = "127.0.0.1"
    rtp_port_min: int = 20000
    rtp_port_max: int = 20199
    # websocket: the bridge connects to chan_websocket at this URL + /CONNECTION_ID
    # ("" = the url above with ws:// and /media); control messages in this format.
    websocket_url: str = ""
    websocket_control_format: Literal["plain-text", "json"] = "plain-text"
    request_timeout_s: float = 5.0
    reconnect_max_s: float = 5.0  # cap of the events websocket's reconnect backoff


@dataclass(frozen=True)
class Asterisk:
    """Who may reach the FastAGI and AudioSocket listeners: only Asterisk."""

    # Peer addresses or networks (IPv4/IPv6, CIDR) allowed to connect; others are dropped.
    addresses: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # Shared secret of the FastAGI URL, agi://HOST:4573/agent?secret=VALUE; read from this
    # environment variable or file (the file wins); "" = no secret required.
    agi_secret_env: str = "AGI_BRIDGE_AGI_SECRET"
    agi_secret_file: str = ""


@dataclass(frozen=True)
class Realtime:
    # openai: wss://api.openai.com/v1/realtime (Bearer); azure: RESOURCE url + api-key header;
    # url: any compatible server (Bearer); simulator: the bundled test double, in-process;
    # gpt-live: OpenAI's GPT-Live API (url default wss://api.openai.com/v1/live/sessions;
    # model e.g. gpt-live-1; tools run on backend_model through "responses" delegation).
    provider: Literal["openai", "azure", "url", "simulator", "gpt-live"] = "openai"
    url: str = ""
    model: str = DEFAULT_REALTIME_MODEL
    api_key_env: str = "OPENAI_API_KEY"
    # With provider openai and no key in api_key_env, run against the bundled simulator
    # (the offline demo). Off by default: a production bridge whose key went missing must
    # not answer real callers with the test double; `serve` refuses to start instead.
    simulator_without_key: bool = False
    connect_timeout_s: float = 10.0
    # gpt-live only: the Responses model that runs the agents' tools (required with tools)
    backend_model: str = ""
    # A session ends after 60 minutes (session_expired) or when the connection drops; the
    # call then goes on with a new session that gets the transcript so far, this many
    # times per call (0: end the call, the dialplan falls back).
    max_reconnects: int = 3
    # A session that sends nothing this long while the bridge waits for it (a response
    # requested or under way, the caller just stopped talking) is stalled: it is resumed
    # (a new session with the transcript so far, answering at once), as after a drop.
    stall_timeout_s: float = 4.0
    # Sessions end after 60 minutes (session_expired): after this long the bridge moves
    # the call to a new session at the next pause (nobody talking, nothing playing),
    # with the transcript, tool results and caller DTMF so far; 0 = never.
    rollover_after_s: float = 3300.0


@dataclass(frozen=True)
class TurnDetectionConfig:
    type: Literal["semantic_vad", "server_vad", "none"] = "semantic_vad"
    eagerness: str = "auto"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    interrupt_response: bool = True


@dataclass(frozen=True)
class TransferTarget:
    """A dialplan destination the ``transfer`` tool may move the caller to (AMI Redirect)."""

    context: DialString = ""  # required
    exten: DialString = ""  # required
    priority: int = 1
    description: str = ""  # shown to the model with the name


@dataclass(frozen=True)
class Agent:
    # What the agent does; shown to other agents whose switch_agent tool can hand off to it.
    description: str = ""
    instructions: str = DEFAULT_INSTRUCTIONS
    # What the agent is told to say when the call connects; empty = wait for the caller.
    greeting: str = DEFAULT_GREETING
    # A built-in voice, or any other plausible name (a new voice: a warning, not an error)
    voice: str = DEFAULT_VOICE
    speed: float = 1.0
    model: str = ""  # empty: realtime.model
    turn_detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL  # "" = no caller transcript
    language: str = ""
    noise_reduction: str = ""
    max_output_tokens: int | Literal["inf"] = "inf"
    # Reasoning Realtime models (gpt-realtime-2): session.reasoning.effort, "" = not sent
    reasoning_effort: str = ""
    # session.parallel_tool_calls (reasoning models only); unset = not sent
    parallel_tool_calls: bool | None = None
    # session.truncation: "auto" | "disabled" | "" (not sent); or keep this fraction of
    # the conversation when it overflows (retention_ratio 0..1, with truncation unset)
    truncation: str = ""
    truncation_retention_ratio: float | None = None
    tools: tuple[str, ...] = ("send_dtmf", "hangup")
    ivr_guidance: bool = True  # append the IVR-navigation prompt when send_dtmf is enabled
    caller_dtmf_to_model: bool = True
    # Destinations of the transfer tool (offered when not empty): name -> dialplan target.
    transfer_targets: Mapping[str, TransferTarget] = field(default_factory=dict)
    # Agents switch_agent may hand the conversation to (offered when not empty).
    handoff_agents: tuple[str, ...] = ()
    # The webhook tool (a name in `tools:`) that receives what collect_digits collects;
    # the model only learns how many digits there were.
    collect_digits_webhook: str = ""
    # After send_dtmf, stay quiet until the callee has spoken or this long has passed
    # (agi_bridge/keypress_quiet.py); 0 = off.
    quiet_after_dtmf_s: float = 4.0
    # A webhook (a name in `tools:`) asked about an outbound call (`agi-bridge call`) before
    # dialing; its answer is {lookup} / {lookup_KEY} in the prompts (agi_bridge/lookup.py).
    lookup_webhook: str = ""


@dataclass(frozen=True)
class WebhookTool:
    """A tool the model can call that the bridge carries out as one HTTP request."""

    description: str = ""
    # JSON schema of the arguments: an object schema (any mapping, passed to the model).
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    url: str = ""  # required, http:// or https://; the only URL this tool ever calls
    method: Literal["POST", "GET"] = "POST"
    # Header name -> environment variable holding its value (read at call time, never logged)
    headers_env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0
    max_response_chars: int = 4000  # longer bodies are cut before they reach the model


@dataclass(frozen=True)
class Route:
    """Which agent answers a call: every match key given must match (first route wins).

    A value is matched exactly, or as a regular expression against the whole value when it
    starts with ``re:`` (``caller_id: "re:\\+4420.*"``); a list matches when any item does.
    """

    agent: str = ""  # required
    dnid: DialString | tuple[DialString, ...] = ""  # the dialed number
    extension: DialString | tuple[DialString, ...] = ""
    context: DialString | tuple[DialString, ...] = ""
    agi_arg: DialString | tuple[DialString, ...] = ""  # AGI(agi://HOST/agent,ARG)
    caller_id: DialString | tuple[DialString, ...] = ""

    def matches(self, values: Mapping[str, str]) -> bool:
        for key in ROUTE_MATCH_KEYS:
            wanted: str | tuple[str, ...] = getattr(self, key)
            if not wanted:
                continue
            patterns = (wanted,) if isinstance(wanted, str) else wanted
            value = values.get(key, "")
            if not any(_match_one(p, value) for p in patterns):
                return False
        return True


ROUTE_MATCH_KEYS = ("dnid", "extension", "context", "agi_arg", "caller_id")


def _match_one(pattern: str, value: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], value) is not None
    return pattern == value


@dataclass(frozen=True)
class Admin:
    """The operator interface (HTTP JSON under /admin on the HTTP listener)."""

    enabled: bool = True
    # Bearer token for /admin, always required: from this environment variable, else from
    # token_file; when neither has one, the bridge generates it into token_file (0600).
    token_env: str = "AGI_BRIDGE_ADMIN_TOKEN"
    token_file: str = "~/.config/agi-bridge/admin.token"  # `agi-bridge admin` reads it too
    # Host names (besides IP literals and localhost) the admin API answers to; a request
    # for any other Host, or with a foreign Origin, is refused (DNS rebinding, CSRF).
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dtmf:
    duration_ms: int = 100
    gap_ms: int = 100
    pause_ms: int = 500  # what a 'w' in a digit string waits


@dataclass(frozen=True)
class Limits:
    max_calls: int = 200
    max_call_s: float = 3600.0
    playout_buffer_ms: int = 120_000
    hangup_drain_timeout_s: float = 15.0
    registration_ttl_s: float = 30.0
    first_frame_timeout_s: float = 10.0  # AudioSocket: UUID must arrive by then
    # Before its first bytes (FastAGI environment, AudioSocket UUID) a connection is idle:
    # closed after this long, and evicted first when a listener is full.
    header_timeout_s: float = 2.0
    max_connections_per_source: int = 100  # FastAGI and AudioSocket, each
    max_fastagi_connections: int = 100
    max_pending_registrations: int = 1000  # FastAGI calls waiting for their AudioSocket
    max_pending_per_source: int = 500  # a flood from one peer evicts only its own
    max_http_connections: int = 256  # listen.http: a new connection closes the oldest
    http_idle_timeout_s: float = 10.0  # listen.http: no complete request by then: closed
    # SIGTERM: new calls are refused at once; live calls may finish for this long, then
    # go to the dialplan's fallback (a second SIGTERM ends the wait)
    drain_timeout_s: float = 30.0
    # /healthz reports unhealthy after this many calls in a row failed at Realtime
    unhealthy_after_realtime_failures: int = 3
    transfer_drain_timeout_s: float = 10.0  # transfer: wait this long for the sentence to play
    transfer_close_timeout_s: float = 5.0  # after Redirect: wait for Asterisk to close the socket


@dataclass(frozen=True)
class Outbound:
    """``agi-bridge call``: outbound calls placed with AMI Originate (see outbound.py)."""

    # A plain number (no "/" in it) is dialed as Local/NUMBER@dial_context.
    dial_context: DialString = "agi-bridge-outbound"
    # Once answered, the call runs extension <agent> of this context: the agent path.
    agent_context: DialString = "agi-bridge-agent"
    caller_id: str = ""  # e.g. '"Support bot" <5551000>'; "" = Asterisk's default
    ring_timeout_s: float = 30.0  # how long it may ring before "no answer"
    timeout_s: float = 300.0  # the whole call, dialing included
    # The address Asterisk reaches `agi-bridge call` at (its FastAGI and AudioSocket
    # listeners, ephemeral ports); "" = the host of listen.fastagi (127.0.0.1 if wildcard).
    bridge_host: str = ""


@dataclass(frozen=True)
class Records:
    """Per-call records: DIR/YYYY/MM/DD/HHMMSS_<call_id>/{events.jsonl,summary.json,call.wav}."""

    enabled: bool = True
    dir: str = "records"  # relative to the working directory
    retention_days: int = 30  # day directories older than this are deleted; 0 = keep all
    wav: bool = False  # stereo recording: caller left, agent right


@dataclass(frozen=True)
class Webhook:
    """POST the call summary (JSON) to ``url`` when a call ends; never delays a call."""

    url: str = ""  # "" = off
    timeout_s: float = 5.0
    retries: int = 3  # further attempts after the first one failed
    retry_delay_s: float = 1.0  # doubled after each failed attempt
    queue_size: int = 100  # summaries waiting beyond this are dropped (and counted)
    token_env: str = ""  # env variable holding a bearer token for the Authorization header


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens (``audio_in``/``text_in``: uncached input tokens), and USD per
    minute of audio for what is billed by duration (``audio_minute``: a transcription
    reported as ``{"type": "duration"}``, a GPT-Live session). ``same_as`` makes this
    name use another entry's prices (a dated snapshot -> its model)."""

    audio_in: float = 0.0
    cached_audio_in: float = 0.0
    audio_out: float = 0.0
    text_in: float = 0.0
    cached_text_in: float = 0.0
    text_out: float = 0.0
    audio_minute: float = 0.0
    same_as: str = ""


# Published prices (REFERENCE §5). A `prices:` section in the file adds models or
# overrides these entries. A model is priced by its exact name only (gpt-realtime-2.1-mini
# is not gpt-realtime); a model without an entry has no cost, and the summary says so.
DEFAULT_PRICES: Mapping[str, Price] = types.MappingProxyType(
    {
        "gpt-realtime": Price(
            audio_in=32.0,
            cached_audio_in=0.40,
            audio_out=64.0,
            text_in=4.0,
            cached_text_in=0.40,
            text_out=16.0,
        ),
        # the dated snapshot of gpt-realtime (openai-python realtime/calls.py model list)
        "gpt-realtime-2025-08-28": Price(same_as="gpt-realtime"),
        "gpt-realtime-mini": Price(
            audio_in=10.0,
            cached_audio_in=0.30,
            audio_out=20.0,
            text_in=0.60,
            cached_text_in=0.06,
            text_out=2.40,
        ),
        # developers.openai.com/api/docs/models/gpt-realtime-1.5, -2, -2.1-mini (Dec 2026)
        "gpt-realtime-1.5": Price(
            audio_in=32.0,
            cached_audio_in=0.40,
            audio_out=64.0,
            text_in=4.0,
            cached_text_in=0.40,
            text_out=16.0,
        ),
        "gpt-realtime-2": Price(
            audio_in=32.0,
            cached_audio_in=0.40,
            audio_out=64.0,
            text_in=4.0,
            cached_text_in=0.40,
            text_out=24.0,
        ),
        "gpt-realtime-2.1-mini": Price(
            audio_in=10.0,
            cached_audio_in=0.30,
            audio_out=20.0,
            text_in=0.60,
            cached_text_in=0.06,
            text_out=2.40,
        ),
        # input transcription, billed by audio duration (models/gpt-live-transcribe and
        # models/gpt-realtime-whisper: $0.017 per minute)
        "gpt-live-transcribe": Price(audio_minute=0.017),
        "gpt-realtime-whisper": Price(audio_minute=0.017),
        # GPT-Live sessions, billed per second of active session time at a per-minute
        # rate (models/gpt-live-1.1: active $0.05/minute; guides/voice-latency-cost works
        # its example at $0.05/minute; the gpt-live-1 page itself was not in the stored
        # references). Standby ($0.02) exists only for WebRTC sessions: not used here.
        "gpt-live-1.1": Price(audio_minute=0.05),
        "gpt-live-1": Price(audio_minute=0.05),
    }
)


@dataclass(frozen=True)
class Config:
    listen: Listen = field(default_factory=Listen)
    ami: Ami = field(default_factory=Ami)
    ari: Ari = field(default_factory=Ari)
    asterisk: Asterisk = field(default_factory=Asterisk)
    realtime: Realtime = field(default_factory=Realtime)
    agents: Mapping[str, Agent] = field(
        default_factory=lambda: types.MappingProxyType({"default": Agent()})
    )
    default_agent: str = "default"
    # Values every agent inherits unless it sets them (merged into each agent at load).
    defaults: Agent = field(default_factory=Agent)
    routes: tuple[Route, ...] = ()  # first match wins; no match: AGI argument, default_agent
    tools: Mapping[str, WebhookTool] = field(default_factory=dict)  # HTTP webhook tools
    admin: Admin = field(default_factory=Admin)
    dtmf: Dtmf = field(default_factory=Dtmf)
    limits: Limits = field(default_factory=Limits)
    records: Records = field(default_factory=Records)
    outbound: Outbound = field(default_factory=Outbound)  # `agi-bridge call`
    webhook: Webhook = field(default_factory=Webhook)
    prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)
    source: str = ""  # the file it came from (not a YAML key)
    # Things that load but deserve a look, each "file:line key: why" (not a YAML key)
    warnings: tuple[str, ...] = ()

    def agent(self, name: str | None) -> tuple[str, Agent]:
        """The named agent, or the default one when the name is empty or unknown."""
        if name and name in self.agents:
            return name, self.agents[name]
        return self.default_agent, self.agents[self.default_agent]

    def route(
        self,
        *,
        dnid: str = "",
        extension: str = "",
        context: str = "",
        agi_arg: str = "",
        caller_id: str = "",
    ) -> tuple[str, str]:
        """The agent for a call and why: the first matching route, else the agent the AGI
        argument names (when configured), else ``default_agent``."""
        values = {
            "dnid": dnid,
            "extension": extension,
            "context": context,
            "agi_arg": agi_arg,
            "caller_id": caller_id,
        }
        for i, route in enumerate(self.routes):
            if route.matches(values):
                return route.agent, f"routes[{i}]"
        if agi_arg and agi_arg in self.agents:
            return agi_arg, "AGI argument"
        return self.default_agent, "default_agent"

    def agi_secret(self) -> str:
        """The FastAGI URL secret ("" = none); never logged."""
        if self.asterisk.agi_secret_file:
            return Path(self.asterisk.agi_secret_file).read_text().strip()
        return os.environ.get(self.asterisk.agi_secret_env, "")

    def model_for(self, agent: Agent) -> str:
        """The model an agent's calls use: its own, else ``realtime.model`` (one source)."""
        return agent.model or self.realtime.model

    def uses_simulator(self) -> bool:
        """True when calls go to the bundled simulator: asked for, or OpenAI without a key."""
        if self.realtime.provider == "simulator":
            return True
        return (
            self.realtime.provider == "openai"
            and self.realtime.simulator_without_key
            and not os.environ.get(self.realtime.api_key_env)
        )

    def ami_secret(self) -> str:
        if self.ami.secret_file:
            return Path(self.ami.secret_file).read_text().strip()
        return os.environ.get(self.ami.secret_env, "")

    def ari_password(self) -> str:
        if self.ari.password_file:
            return Path(self.ari.password_file).read_text().strip()
        return os.environ.get(self.ari.password_env, "")
