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

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant answering a phone call. Keep answers short and "
    "conversational; this is a phone line, so never use lists, markdown or emoji."
)
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."

# Tools the bridge implements itself; webhook tools (top-level ``tools:``) may not reuse
# these names. transfer and switch_agent are offered when the agent has targets for them.
BUILTIN_TOOLS = ("send_dtmf", "hangup", "transfer", "switch_agent")
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
    http: str = "127.0.0.1:8088"  # /metrics and /healthz; "" = off
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
class Realtime:
    # openai: wss://api.openai.com/v1/realtime (Bearer); azure: RESOURCE url + api-key header;
    # url: any compatible server (Bearer); simulator: the bundled test double, in-process.
    provider: Literal["openai", "azure", "url", "simulator"] = "openai"
    url: str = ""
    model: str = "gpt-realtime"
    api_key_env: str = "OPENAI_API_KEY"
    # With provider openai and no key in api_key_env, run against the bundled simulator
    # (the offline demo) instead of failing every call.
    simulator_without_key: bool = True
    connect_timeout_s: float = 10.0
    # A session ends after 60 minutes (session_expired) or when the connection drops; the
    # call then goes on with a new session that gets the transcript so far, this many
    # times per call (0: end the call, the dialplan falls back).
    max_reconnects: int = 3


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
    voice: str = "marin"
    speed: float = 1.0
    model: str = ""  # empty: realtime.model
    turn_detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    transcription_model: str = "gpt-4o-mini-transcribe"
    language: str = ""
    noise_reduction: str = ""
    max_output_tokens: int | Literal["inf"] = "inf"
    tools: tuple[str, ...] = ("send_dtmf", "hangup")
    ivr_guidance: bool = True  # append the IVR-navigation prompt when send_dtmf is enabled
    caller_dtmf_to_model: bool = True
    # Destinations of the transfer tool (offered when not empty): name -> dialplan target.
    transfer_targets: Mapping[str, TransferTarget] = field(default_factory=dict)
    # Agents switch_agent may hand the conversation to (offered when not empty).
    handoff_agents: tuple[str, ...] = ()


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
    # Bearer token for /admin; required when the HTTP listener is not on a loopback address.
    token_env: str = "AGI_BRIDGE_ADMIN_TOKEN"


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
    """USD per 1M tokens. ``audio_in``/``text_in`` are for uncached input tokens."""

    audio_in: float = 0.0
    cached_audio_in: float = 0.0
    audio_out: float = 0.0
    text_in: float = 0.0
    cached_text_in: float = 0.0
    text_out: float = 0.0


# Published prices (REFERENCE §5). A `prices:` section in the file adds models or
# overrides these entries; a model is matched exactly, else by its longest known prefix
# (gpt-realtime-2025-08-28 -> gpt-realtime).
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
        "gpt-realtime-mini": Price(
            audio_in=10.0,
            cached_audio_in=0.30,
            audio_out=20.0,
            text_in=0.60,
            cached_text_in=0.06,
            text_out=2.40,
        ),
    }
)


@dataclass(frozen=True)
class Config:
    listen: Listen = field(default_factory=Listen)
    ami: Ami = field(default_factory=Ami)
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

    def model_for(self, agent: Agent) -> str:
        """The model an agent's calls use: its own, else ``realtime.model`` (one source)."""
        return agent.model or self.realtime.model

    def ami_secret(self) -> str:
        if self.ami.secret_file:
            return Path(self.ami.secret_file).read_text().strip()
        return os.environ.get(self.ami.secret_env, "")
