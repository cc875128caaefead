"""AmiClient against a small fake AMI server over a real TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from agi_bridge.asterisk.ami import AmiClient, AmiMessage
from agi_bridge.errors import AmiError

USER = "bridge"
SECRET = "s3cr3t-Pa55w0rd-xyzzy"

Headers = list[tuple[str, str]]


class FakeAmi:
    """Speaks enough AMI: banner, Login, one response per action with its ActionID."""

    def __init__(self) -> None:
        self.refuse_login = False
        self.silent: set[str] = set()  # lower-case action names never answered
        self.responses: dict[str, Callable[[Headers], Headers]] = {}
        self.actions: list[Headers] = []  # every block received, Login included
        self.logins = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop()
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0.01)

    def drop(self) -> None:
        """Close every client connection (Asterisk restarting, network cut)."""
        for writer in list(self._writers):
            writer.close()

    def event(self, *headers: tuple[str, str]) -> None:
        for writer in list(self._writers):
            writer.write(_block(list(headers)))

    def received(self, action: str) -> list[dict[str, str | list[str]]]:
        out = []
        for block in self.actions:
            fields: dict[str, str | list[str]] = {}
            for key, value in block:
                if key in fields:
                    prev = fields[key]
                    fields[key] = [*(prev if isinstance(prev, list) else [prev]), value]
                else:
                    fields[key] = value
            if fields.get("Action") == action:
                out.append(fields)
        return out

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            writer.write(b"Asterisk Call Manager/11.0.0\r\n")
            buffer = b""
            while data := await reader.read(4096):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    raw, buffer = buffer.split(b"\r\n\r\n", 1)
                    block = [
                        (k, v)
                        for k, _, v in (line.partition(": ") for line in raw.decode().split("\r\n"))
                    ]
                    self.actions.append(block)
                    if not self._answer(block, writer):
                        return
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, block: Headers, writer: asyncio.StreamWriter) -> bool:
        fields = dict(block)
        name = fields.get("Action", "")
        action_id = ("ActionID", fields.get("ActionID", ""))
        if name.lower() == "login":
            self.logins += 1
            if self.refuse_login or fields.get("Secret") != SECRET:
                # Asterisk answers, waits a little, and ends the session.
                writer.write(
                    _block([("Response", "Error"), action_id, ("Message", "Authentication failed")])
                )
                return False
            writer.write(
                _block([("Response", "Success"), action_id, ("Message", "Authentication accepted")])
                + _block([("Event", "FullyBooted"), ("Privilege", "system,all")])
            )
            return True
        if name.lower() in self.silent:
            return True
        make = self.responses.get(name.lower())
        headers = make(block) if make else [("Response", "Success"), ("Message", "ok")]
        writer.write(_block([headers[0], action_id, *headers[1:]]))
        return True


def _block(headers: Headers) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


async def until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    """Poll *condition* (state changes come from socket callbacks, not an Event we own)."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def make_client(port: int, **kwargs: object) -> AmiClient:
    options: dict[str, object] = {
        "action_timeout": 0.3,
        "reconnect_backoff": (0.01, 0.05),
        "connect_timeout": 0.5,
    }
    options.update(kwargs)
    return AmiClient("127.0.0.1", port, USER, SECRET, **options)  # type: ignore[arg-type]


@pytest.fixture
async def client(fake: FakeAmi) -> AsyncIterator[AmiClient]:
    ami = make_client(fake.port)
    await ami.start()
    try:
        yield ami
    finally:
        await ami.close()


async def test_login(fake: FakeAmi, client: AmiClient) -> None:
    assert client.connected
    [login] = fake.received("Login")
    assert login["Username"] == USER
    assert login["Secret"] == SECRET
    assert login["Events"] == "on"


async def test_play_dtmf_fields(fake: FakeAmi, client: AmiClient) -> None:
    # The real answer; panoramisk 1.4 raises KeyError('async') in data_received on it
    # unless the action is sent with as_list=False.
    fake.responses["playdtmf"] = lambda _: [
        ("Response", "Success"),
        ("Message", "DTMF successfully queued"),
    ]
    await client.play_dtmf("PJSIP/alice-00000001", "#", 120)
    [sent] = fake.received("PlayDTMF")
    assert {k: sent[k] for k in ("Channel", "Digit", "Duration")} == {
        "Channel": "PJSIP/alice-00000001",
        "Digit": "#",
        "Duration": "120",
    }
    assert "Receive" not in sent  # unset: the digit goes to the phone
    assert sent["ActionID"]
    # The connection is still healthy afterwards.
    await client.play_dtmf("PJSIP/alice-00000001", "1")
    assert client.connected


async def test_play_dtmf_validates_digit(fake: FakeAmi, client: AmiClient) -> None:
    for bad in ["", "12", "x", "\n"]:
        with pytest.raises(AmiError, match="invalid DTMF digit"):
            await client.play_dtmf("PJSIP/a-1", bad)
    assert fake.received("PlayDTMF") == []


async def test_other_action_fields(fake: FakeAmi, client: AmiClient) -> None:
    await client.hangup("PJSIP/a-1")
    await client.hangup("PJSIP/a-1", cause=17)
    await client.setvar("PJSIP/a-1", "FOO", "bar baz")
    await client.redirect("PJSIP/a-1", "transfer", "200")
    sent = [{k: v for k, v in a if k != "ActionID"} for a in fake.actions[1:]]
    assert sent == [
        {"Action": "Hangup", "Channel": "PJSIP/a-1", "Cause": "16"},
        {"Action": "Hangup", "Channel": "PJSIP/a-1", "Cause": "17"},
        {"Action": "Setvar", "Channel": "PJSIP/a-1", "Variable": "FOO", "Value": "bar baz"},
        {
            "Action": "Redirect",
            "Channel": "PJSIP/a-1",
            "Context": "transfer",
            "Exten": "200",
            "Priority": "1",
        },
    ]


async def test_getvar(fake: FakeAmi, client: AmiClient) -> None:
    values = iter(["hello", ""])
    fake.responses["getvar"] = lambda block: [
        ("Response", "Success"),
        ("Variable", dict(block)["Variable"]),
        ("Value", next(values)),
    ]
    assert await client.getvar("PJSIP/a-1", "GREETING") == "hello"
    assert await client.getvar("PJSIP/a-1", "EMPTY") is None
    assert [a["Variable"] for a in fake.received("Getvar")] == ["GREETING", "EMPTY"]


async def test_originate(fake: FakeAmi, client: AmiClient) -> None:
    fake.responses["originate"] = lambda _: [
        ("Response", "Success"),
        ("Message", "Originate successfully queued"),
    ]
    response = await client.originate(
        "PJSIP/100",
        exten="200",
        context="agents",
        timeout_ms=20000,
        caller_id='"Agent" <100>',
        variables={"AGENT": "sales", "X": "1"},
        channel_id="0b6c9d3e-2f7a-4c1e-9a51-3d2b8e7f6a10",
    )
    assert response.message == "Originate successfully queued"
    [sent] = fake.received("Originate")
    assert response.action_id == sent["ActionID"]  # to match the OriginateResponse event
    del sent["ActionID"]
    assert sent == {
        "Action": "Originate",
        "Channel": "PJSIP/100",
        "Async": "true",
        "Timeout": "20000",
        "Exten": "200",
        "Context": "agents",
        "Priority": "1",
        "CallerID": '"Agent" <100>',
        "ChannelId": "0b6c9d3e-2f7a-4c1e-9a51-3d2b8e7f6a10",
        "Variable": ["AGENT=sales", "X=1"],
    }
    await client.originate("Local/1@x", application="Playback", data="hello-world")
    sent = fake.received("Originate")[1]
    assert (sent["Application"], sent["Data"]) == ("Playback", "hello-world")
    assert "Exten" not in sent
    with pytest.raises(AmiError, match="exten and context, or application"):
        await client.originate("PJSIP/100", exten="1")


async def test_error_response(fake: FakeAmi, client: AmiClient) -> None:
    fake.responses["hangup"] = lambda _: [("Response", "Error"), ("Message", "No such channel")]
    with pytest.raises(AmiError, match="AMI Hangup failed: No such channel"):
        await client.hangup("PJSIP/gone-1")
    assert client.connected


async def test_timeout_is_bounded(fake: FakeAmi, client: AmiClient) -> None:
    fake.silent.add("playdtmf")
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(AmiError, match=r"PlayDTMF timed out after 0.3s"):
        await client.play_dtmf("PJSIP/a-1", "5")
    assert 0.25 < loop.time() - start < 1.0
    # The connection stays usable; a timed-out action is never replayed.
    await client.hangup("PJSIP/a-1")
    fake.drop()
    await until(lambda: fake.logins == 2 and client.connected)
    await asyncio.sleep(0.05)
    assert len(fake.received("PlayDTMF")) == 1


async def test_reconnect_after_drop(fake: FakeAmi, client: AmiClient) -> None:
    assert client.connected
    fake.drop()
    await until(lambda: not client.connected)
    await asyncio.wait_for(client.wait_connected(), 2.0)
    assert client.connected
    assert fake.logins == 2
    await client.hangup("PJSIP/a-1")


async def test_shutdown_event_reconnects(
    fake: FakeAmi, client: AmiClient, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    client.add_event_listener("Shutdown", lambda e: seen.append(e["Restart"]))
    fake.event(("Event", "Shutdown"), ("Shutdown", "Cleanly"), ("Restart", "True"))
    await until(lambda: fake.logins == 2 and client.connected)
    assert seen == ["True"]
    assert "Asterisk shut down" in caplog.text


async def test_inflight_action_fails_when_connection_drops(
    fake: FakeAmi, client: AmiClient
) -> None:
    fake.silent.add("hangup")
    client.action_timeout = 5.0
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending = asyncio.create_task(client.hangup("PJSIP/a-1"))
    await until(lambda: bool(fake.received("Hangup")))
    fake.drop()
    with pytest.raises(AmiError, match="connection lost before the response to Hangup"):
        await pending
    assert loop.time() - start < 1.0
    # ... and it is not replayed after the reconnect.
    await asyncio.wait_for(client.wait_connected(), 2.0)
    await asyncio.sleep(0.05)
    assert len(fake.received("Hangup")) == 1


async def test_actions_fail_fast_while_disconnected(fake: FakeAmi, client: AmiClient) -> None:
    await fake.stop()
    await until(lambda: not client.connected)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for action in (
        client.play_dtmf("PJSIP/a-1", "1"),
        client.hangup("PJSIP/a-1"),
        client.getvar("PJSIP/a-1", "X"),
    ):
        with pytest.raises(AmiError, match="not connected"):
            await action
    assert loop.time() - start < 0.1
    # Asterisk comes back on the same port: the client finds it again.
    await fake.start(fake.port)
    await asyncio.wait_for(client.wait_connected(), 2.0)
    await client.hangup("PJSIP/a-1")


async def test_start_without_asterisk_then_it_appears() -> None:
    fake = FakeAmi()
    await fake.start()
    port = fake.port
    await fake.stop()
    ami = make_client(port)
    try:
        await asyncio.wait_for(ami.start(), 2.0)  # returns although nothing listens
        assert not ami.connected
        with pytest.raises(AmiError, match="not connected"):
            await ami.hangup("PJSIP/a-1")
        await fake.start(port)
        await asyncio.wait_for(ami.wait_connected(), 2.0)
    finally:
        await ami.close()
        await fake.stop()


async def test_login_refused_retries_with_backoff(
    fake: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    fake.refuse_login = True
    ami = make_client(fake.port, reconnect_backoff=(0.02, 0.08))
    try:
        await asyncio.wait_for(ami.start(), 2.0)
        assert not ami.connected
        await until(lambda: fake.logins >= 4)
        assert "Authentication failed" in caplog.text
        fake.refuse_login = False
        await asyncio.wait_for(ami.wait_connected(), 2.0)
    finally:
        await ami.close()


async def test_no_reconnect_after_close(fake: FakeAmi) -> None:
    ami = make_client(fake.port)
    await ami.start()
    assert ami.connected
    await ami.close()
    assert not ami.connected
    await asyncio.sleep(0.2)
    assert fake.logins == 1
    with pytest.raises(AmiError, match="not connected"):
        await ami.hangup("PJSIP/a-1")


async def test_silent_peer_detected_by_keepalive(
    fake: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    ami = make_client(fake.port, ping_interval=0.05, action_timeout=0.1)
    try:
        await ami.start()
        await until(lambda: len(fake.received("Ping")) >= 2)  # answered pings: stays up
        assert fake.logins == 1
        fake.silent.add("ping")
        await until(lambda: fake.logins >= 2)
        assert "keepalive failed" in caplog.text
    finally:
        await ami.close()


async def test_events_delivered_and_survive_reconnect(fake: FakeAmi, client: AmiClient) -> None:
    hangups: list[AmiMessage] = []
    dtmf: list[str] = []
    everything: list[str] = []

    def broken(event: AmiMessage) -> None:
        raise RuntimeError("listener bug")

    client.add_event_listener("Hangup", hangups.append)
    client.add_event_listener("dtmf*", lambda e: dtmf.append(e.event + e["Digit"]))
    client.add_event_listener("*", broken)
    remove = client.add_event_listener("*", lambda e: everything.append(e.event))

    fake.event(("Event", "DTMFBegin"), ("Channel", "PJSIP/a-1"), ("Digit", "5"))
    fake.event(("Event", "DTMFEnd"), ("Channel", "PJSIP/a-1"), ("Digit", "5"))
    fake.event(
        ("Event", "Hangup"),
        ("Channel", "PJSIP/a-1"),
        ("Uniqueid", "1700000000.7"),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    )
    await until(lambda: len(hangups) == 1)
    assert dtmf == ["DTMFBegin5", "DTMFEnd5"]
    assert hangups[0].event == "Hangup"
    assert hangups[0]["cause"] == "16"
    assert hangups[0].get("Cause-txt") == "Normal Clearing"
    assert client.connected  # the raising listener did not break the connection

    fake.drop()
    await until(lambda: fake.logins == 2 and client.connected)
    remove()
    count = len(everything)
    fake.event(("Event", "Hangup"), ("Channel", "PJSIP/b-2"), ("Cause", "17"))
    await until(lambda: len(hangups) == 2)
    assert hangups[1]["Channel"] == "PJSIP/b-2"
    assert len(everything) == count  # removed listener no longer called


async def test_originate_response_event_reaches_listeners(fake: FakeAmi, client: AmiClient) -> None:
    events: list[AmiMessage] = []
    client.add_event_listener("OriginateResponse", events.append)
    response = await client.originate("PJSIP/100", exten="200", context="agents")
    fake.event(
        ("Event", "OriginateResponse"),
        ("ActionID", response.action_id),
        ("Response", "Failure"),
        ("Reason", "5"),
    )
    await until(lambda: bool(events))
    assert events[0].action_id == response.action_id
    assert events[0]["Reason"] == "5"


async def test_header_injection_refused(fake: FakeAmi, client: AmiClient) -> None:
    with pytest.raises(AmiError, match="line break"):
        await client.setvar("PJSIP/a-1", "X", "1\r\nAction: Hangup")
    with pytest.raises(AmiError, match="line break"):
        await client.redirect("PJSIP/a-1\r\n", "c", "e")
    with pytest.raises(AmiError, match="must not be empty"):
        await client.setvar("", "X", "1")  # an empty Channel would set a global variable
    with pytest.raises(AmiError, match="invalid variable name"):
        await client.originate("PJSIP/1", exten="1", context="c", variables={"A=B": "1"})
    await asyncio.sleep(0.05)
    assert len(fake.actions) == 1  # only the Login


async def test_secret_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeAmi()
    await fake.start()
    ami = make_client(fake.port)
    try:
        await ami.start()
        await ami.hangup("PJSIP/a-1")
        fake.drop()
        await until(lambda: fake.logins == 2 and ami.connected)
        fake.refuse_login = True
        fake.drop()
        await until(lambda: fake.logins >= 4)
        assert SECRET not in repr(ami)
    finally:
        await ami.close()
        await fake.stop()
    assert "Authentication failed" in caplog.text  # logs were captured at all
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in str(record.args)


async def test_amimessage_lookup() -> None:
    message = AmiMessage((("Event", "VarSet"), ("ChanVariable", "A=1"), ("chanvariable", "B=2")))
    assert message["event"] == "VarSet"
    assert message.get_all("ChanVariable") == ["A=1", "B=2"]
    assert "EVENT" in message
    assert message.get("Missing", "x") == "x"
    with pytest.raises(KeyError):
        message["Missing"]
    with contextlib.suppress(AttributeError):
        message.headers = ()  # type: ignore[misc]
        raise AssertionError("AmiMessage must be frozen")


class FlappingAmi(FakeAmi):
    """Accepts the login, then drops the connection at once (issue 12: it used to be
    retried every reconnect_backoff minimum, forever)."""

    def __init__(self) -> None:
        super().__init__()
        self.login_times: list[float] = []

    def _answer(self, block: Headers, writer: asyncio.StreamWriter) -> bool:
        keep = super()._answer(block, writer)
        if dict(block).get("Action", "").lower() == "login":
            self.login_times.append(asyncio.get_running_loop().time())
            asyncio.get_running_loop().call_later(0.01, writer.close)
        return keep


async def test_login_then_drop_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agi_bridge.asterisk.ami")
    fake = FlappingAmi()
    await fake.start()
    ami = make_client(fake.port, reconnect_backoff=(0.02, 0.32), stable_after=5.0)
    try:
        await ami.start()
        await asyncio.sleep(2.0)
    finally:
        await ami.close()
        await fake.stop()
    # 0.02, 0.04, 0.08, 0.16, 0.32, 0.32 ...: about 8 in 2 s (no backoff: about 60)
    assert 4 <= fake.logins <= 10, fake.logins
    gaps = [b - a for a, b in zip(fake.login_times, fake.login_times[1:], strict=False)]
    assert gaps[-1] > 0.25 and gaps[-1] > 4 * gaps[0]
    lost = [r for r in caplog.records if "connection to" in r.getMessage() and "lost" in r.message]
    assert len(lost) >= 4
    assert len([r for r in lost if r.levelno == logging.WARNING]) <= 2  # the first, the 10th


async def test_repeated_login_failures_warn_every_tenth(
    fake: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agi_bridge.asterisk.ami")
    fake.refuse_login = True
    ami = make_client(fake.port, reconnect_backoff=(0.001, 0.002))
    try:
        await ami.start()
        await until(lambda: fake.logins >= 25, 10.0)
    finally:
        await ami.close()
    failed = [r for r in caplog.records if "AMI login" in r.getMessage()]
    warnings = [r for r in failed if r.levelno == logging.WARNING]
    assert len(failed) >= 25
    assert 1 <= len(warnings) <= len(failed) // 10 + 1
    assert SECRET not in caplog.text
