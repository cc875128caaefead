"""``agi-bridge check``: the config is valid; with ``--connect``, its peers answer.

Each check prints one line, ``OK`` or ``FAIL`` (or ``SKIP``, or ``WARN`` for something
that works today but deserves a look) and what it found::

    OK   config bridge.yaml: 2 agents (default, sales), 3 routes, 1 webhook tool
    OK   ami 127.0.0.1:5038: logged in as agi_bridge
    FAIL realtime agent 'sales': cannot connect to wss://...: HTTP 401

``--connect`` logs in to AMI and, for every agent, opens a Realtime session and sends the
agent's ``session.update``; the check passes on ``session.updated``. Webhook tools are not
called (a call could have effects). Exit code 0 when everything passed, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable

from agi_bridge.admin import check_admin_auth
from agi_bridge.app import uses_simulator
from agi_bridge.asterisk.ami import AmiClient
from agi_bridge.asterisk.ari import AriClient
from agi_bridge.call import build_session
from agi_bridge.config import Config
from agi_bridge.errors import AriError, BridgeError
from agi_bridge.protocol import realtime as rt
from agi_bridge.providers.base import Configure, ProviderSession
from agi_bridge.providers.gpt_live import live_provider
from agi_bridge.realtime import connector
from agi_bridge.tools import ToolSet

Print = Callable[[str], None]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def check_config(config: Config, out: Print = print) -> None:
    """Checks that need no network (ConfigError when the file is not usable).

    Warnings (a voice that is not built in, a model with an announced shutdown date) are
    printed as ``WARN`` lines and do not fail the check."""
    check_admin_auth(config)
    out(
        f"OK   config {config.source or '(built-in defaults)'}: "
        f"{_plural(len(config.agents), 'agent')} ({', '.join(config.agents)}), "
        f"{_plural(len(config.routes), 'route')}, {_plural(len(config.tools), 'webhook tool')}"
    )
    for line in config.warnings:
        out(f"WARN {line}")


async def check_connect(config: Config, out: Print = print) -> bool:
    """Log in to AMI and open a Realtime session per agent; True when all passed."""
    ok = await _check_ami(config, out)
    ok = await check_ari(config, out) and ok
    for name in config.agents:
        ok = await _check_realtime(config, name, out) and ok
        if uses_simulator(config):
            break  # one line says it all
    return ok


async def _check_ami(config: Config, out: Print) -> bool:
    ami = config.ami
    where = f"ami {ami.host}:{ami.port}"
    if not ami.enabled:
        out(f"SKIP {where}: disabled (ami.enabled: false)")
        return True
    try:
        secret = config.ami_secret()
    except OSError as exc:
        out(f"FAIL {where}: cannot read ami.secret_file: {exc.strerror}")
        return False
    client = AmiClient(
        ami.host,
        ami.port,
        ami.username,
        secret,
        action_timeout=ami.action_timeout_s,
        connect_timeout=ami.action_timeout_s,
    )
    try:
        await client.start()  # returns after the first attempt, logged in or not
        if client.connected:
            out(f"OK   {where}: logged in as {ami.username}")
            return True
        out(f"FAIL {where}: {client.last_error or 'not connected'}")
        return False
    finally:
        await client.close()


async def check_ari(config: Config, out: Print) -> bool:
    """GET /ari/asterisk/info with the configured user (only when ari.enabled)."""
    ari = config.ari
    where = f"ari {ari.url}"
    if not ari.enabled:
        return True  # AudioSocket only: nothing to say
    try:
        password = config.ari_password()
    except OSError as exc:
        out(f"FAIL {where}: cannot read ari.password_file: {exc.strerror}")
        return False
    client = AriClient(
        ari.url,
        ari.app,
        ari.username,
        password,
        on_event=lambda _event: None,
        request_timeout_s=ari.request_timeout_s,
    )
    try:
        await client.start_rest()
        info = await client.asterisk_info()
    except AriError as exc:
        out(f"FAIL {where}: {exc}")
        return False
    finally:
        await client.close()
    version = info.get("system", {}).get("version", "?") if isinstance(info, dict) else "?"
    out(f"OK   {where}: Asterisk {version}, user {ari.username}, application {ari.app}")
    return True


async def _check_realtime(config: Config, name: str, out: Print) -> bool:
    agent = config.agents[name]
    where = f"realtime agent {name!r}"
    if uses_simulator(config):
        why = (
            "provider: simulator"
            if config.realtime.provider == "simulator"
            else f"no {config.realtime.api_key_env} set"
        )
        out(f"SKIP realtime: {why}: calls go to the bundled simulator (a local test double)")
        return True
    model = config.model_for(agent)
    session = build_session(config, agent, ToolSet.for_agent(config, name), dt.date.today())
    if config.realtime.provider == "gpt-live":
        return await _check_live(config, session, where, out)
    timeout = config.realtime.connect_timeout_s
    try:
        conn = await connector(config.realtime)(model)
    except BridgeError as exc:
        out(f"FAIL {where}: {exc}")
        return False
    try:
        await conn.send(rt.session_update(session))
        async with asyncio.timeout(timeout):
            async for event in conn.events():
                if isinstance(event, rt.SessionUpdated):
                    out(f"OK   {where}: session.updated (model {model})")
                    return True
                if isinstance(event, rt.ErrorEvent):
                    out(f"FAIL {where}: session.update refused: {event.code}: {event.message}")
                    return False
        out(f"FAIL {where}: the server closed the session before session.updated")
        return False
    except TimeoutError:
        out(f"FAIL {where}: no session.updated within {timeout:g} s")
        return False
    except BridgeError as exc:
        out(f"FAIL {where}: {exc}")
        return False
    finally:
        with contextlib.suppress(TimeoutError, BridgeError, OSError):
            await asyncio.wait_for(conn.close(), 3)


async def _check_live(config: Config, session: rt.SessionConfig, where: str, out: Print) -> bool:
    """GPT-Live: the agent's ``session.start`` must get ``session.started``."""
    provider: ProviderSession | None = None
    try:
        provider = await live_provider(config)(session.model)
        await provider.send(Configure(session))  # session.start, waits for session.started
    except BridgeError as exc:
        out(f"FAIL {where}: {exc}")
        return False
    finally:
        if provider is not None:
            with contextlib.suppress(TimeoutError, BridgeError, OSError):
                await asyncio.wait_for(provider.close(), 5)
    out(f"OK   {where}: session.started (GPT-Live, model {session.model})")
    return True
