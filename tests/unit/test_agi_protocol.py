"""Byte-literal tests of the sans-I/O FastAGI module (no event loop, no sockets)."""

from __future__ import annotations

import pytest

from agi_bridge.errors import AgiError, ProtocolError
from agi_bridge.protocol import agi
from agi_bridge.protocol.agi import (
    AgiHangup,
    AgiReply,
    AgiReplyParser,
    AgiRequest,
    AgiRequestParser,
)

# What res_agi sends for AGI(agi://127.0.0.1:4573/agent?name=sales,support,x y) from a
# PJSIP call: launch_netscript() lines first, then setup_env(), then the blank line.
ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: agent?name=sales&lang=fr\n"
    b"agi_request: agi://127.0.0.1:4573/agent?name=sales&lang=fr\n"
    b"agi_channel: PJSIP/alice-00000001\n"
    b"agi_language: en\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1700000000.1\n"
    b"agi_version: 22.10.1\n"
    b"agi_callerid: 5551234\n"
    b"agi_calleridname: Alice: Smith\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: 100\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: agents\n"
    b"agi_extension: 100\n"
    b"agi_priority: 2\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140000000000000\n"
    b"agi_arg_1: support\n"
    b"agi_arg_2: x y\n"
    b"\n"
)


def parse(data: bytes) -> AgiRequest:
    request = AgiRequestParser().feed(data)
    assert request is not None
    return request


# ------------------------------------------------------------------- request parser


def test_request_fields() -> None:
    r = parse(ENV)
    assert r.network_script == "agent"
    assert r.query == {"name": "sales", "lang": "fr"}
    assert r.args == ["support", "x y"]
    assert r.channel == "PJSIP/alice-00000001"
    assert r.uniqueid == "1700000000.1"
    assert r.callerid == "5551234"
    assert r.calleridname == "Alice: Smith"  # a ':' inside the value is kept
    assert r.dnid == "100"
    assert r.rdnis == ""  # "unknown" means not set
    assert r.extension == "100"
    assert r.context == "agents"
    assert r.language == "en"
    assert r.priority == "2"
    assert r.type == "PJSIP"
    assert r.request == "agi://127.0.0.1:4573/agent?name=sales&lang=fr"
    assert r.env["agi_accountcode"] == ""
    assert r.env["agi_network"] == "yes"


def test_request_split_at_every_byte_boundary() -> None:
    expected = parse(ENV)
    for cut in range(1, len(ENV)):
        parser = AgiRequestParser()
        assert parser.feed(ENV[:cut]) is None, cut
        assert parser.feed(ENV[cut:]) == expected, cut


def test_request_byte_by_byte() -> None:
    parser = AgiRequestParser()
    results = [parser.feed(ENV[i : i + 1]) for i in range(len(ENV))]
    assert results[:-1] == [None] * (len(ENV) - 1)
    assert results[-1] == parse(ENV)


def test_request_crlf_lines() -> None:
    assert parse(ENV.replace(b"\n", b"\r\n")) == parse(ENV)


def test_request_unknown_caller_is_empty() -> None:
    r = parse(
        b"agi_network: yes\nagi_network_script: agent\nagi_channel: Local/x@y-1;2\n"
        b"agi_callerid: unknown\nagi_calleridname: unknown\nagi_dnid: unknown\n\n"
    )
    assert (r.callerid, r.calleridname, r.dnid) == ("", "", "")
    assert r.env["agi_callerid"] == "unknown"  # the raw value stays available
    assert r.args == []
    assert r.query == {}


def test_request_script_falls_back_to_agi_request() -> None:
    # agi_network_script is only sent when the URL has a path; with none the script is "".
    r = parse(b"agi_network: yes\nagi_request: agi://10.0.0.1\n\n")
    assert r.network_script == ""
    r = parse(b"agi_request: agi://10.0.0.1:4573/agent?name=a\n\n")
    assert r.network_script == "agent"
    assert r.query == {"name": "a"}


def test_request_args_stop_at_gap() -> None:
    r = parse(b"agi_network_script: agent\nagi_arg_1: a\nagi_arg_3: c\n\n")
    assert r.args == ["a"]


def test_request_non_utf8_is_replaced() -> None:
    r = parse(b"agi_calleridname: Jos\xe9\n\n")
    assert r.calleridname == "Jos\ufffd"


def test_request_unparsed_tail_kept() -> None:
    parser = AgiRequestParser()
    assert parser.feed(b"agi_network: yes\n\nHANGUP\n") is not None
    assert parser.unparsed == b"HANGUP\n"
    with pytest.raises(AgiError, match="already complete"):
        parser.feed(b"x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", r"line 1 has no ':'"),
        (b"agi_network: yes\nHost: example\n\n", r"line 2 is not an agi_ variable"),
        (b"agi_network: yes\nno colon here\n", r"line 2 has no ':'"),
        (b"\n", r"empty"),
        (b"AGI_NETWORK: yes\n", r"not an agi_ variable"),
    ],
)
def test_request_garbage(data: bytes, message: str) -> None:
    parser = AgiRequestParser()
    with pytest.raises(AgiError, match=message):
        parser.feed(data)
    # A failed parser stays failed.
    with pytest.raises(AgiError):
        parser.feed(b"agi_network: yes\n\n")


def test_request_too_large_without_newline() -> None:
    parser = AgiRequestParser(max_size=64)
    assert parser.feed(b"agi_x: " + b"a" * 50) is None
    with pytest.raises(AgiError, match=r"too large: 67 bytes .* > 64"):
        parser.feed(b"a" * 10)


def test_request_too_large_many_lines() -> None:
    parser = AgiRequestParser(max_size=1024)
    with pytest.raises(AgiError, match="too large"):
        for i in range(200):
            parser.feed(b"agi_arg_%d: value\n" % i)


def test_request_at_default_limit() -> None:
    assert agi.MAX_REQUEST_SIZE == 16 * 1024
    with pytest.raises(AgiError, match="too large"):
        AgiRequestParser().feed(b"agi_arg_1: " + b"x" * 20_000 + b"\n\n")


def test_agi_error_is_protocol_error() -> None:
    assert issubclass(AgiError, ProtocolError)


# ----------------------------------------------------------------- command builders


def test_set_variable() -> None:
    assert agi.set_variable("AGI_BRIDGE_UUID", "0b6c9d3e-2f7a-4c1e-9a51-3d2b8e7f6a10") == (
        b'SET VARIABLE AGI_BRIDGE_UUID "0b6c9d3e-2f7a-4c1e-9a51-3d2b8e7f6a10"\n'
    )


def test_set_variable_escapes_quotes_and_backslashes() -> None:
    assert agi.set_variable("X", 'say "hi" \\o/') == b'SET VARIABLE X "say \\"hi\\" \\\\o/"\n'
    assert agi.set_variable("X", "") == b'SET VARIABLE X ""\n'
    assert agi.set_variable("X", "caf\u00e9") == 'SET VARIABLE X "caf\u00e9"\n'.encode()


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_set_variable_rejects_line_breaks_in_value(value: str) -> None:
    with pytest.raises(AgiError, match="line break"):
        agi.set_variable("X", value)


@pytest.mark.parametrize("name", ["", "A B", "A\nB", 'A"B', "A\\B", "A\tB", "A\x01"])
def test_set_variable_rejects_bad_names(name: str) -> None:
    with pytest.raises(AgiError, match="variable name"):
        agi.set_variable(name, "v")


def test_other_commands() -> None:
    assert agi.verbose("hello") == b'VERBOSE "hello" 1\n'
    assert agi.verbose('a "b"', 3) == b'VERBOSE "a \\"b\\"" 3\n'
    assert agi.hangup() == b"HANGUP\n"
    assert agi.get_variable("CHANNEL(name)") == b"GET VARIABLE CHANNEL(name)\n"
    assert agi.command("ANSWER") == b"ANSWER\n"
    with pytest.raises(AgiError):
        agi.verbose("x", 5)
    for bad in ["", " ANSWER", "ANSWER\nHANGUP", "ANSWER\r"]:
        with pytest.raises(AgiError):
            agi.command(bad)


# -------------------------------------------------------------------- reply parser


def replies(parser: AgiReplyParser, data: bytes) -> list[AgiReply]:
    events = parser.feed(data)
    out = [e for e in events if isinstance(e, AgiReply)]
    assert out == events
    return out


def test_reply_200() -> None:
    p = AgiReplyParser()
    assert p.feed(b"200 result=1\n") == [AgiReply(code=200, text="result=1", result="1")]
    [reply] = replies(p, b"200 result=1 (PJSIP/alice-00000001)\n")
    assert (reply.code, reply.result, reply.data, reply.ok) == (
        200,
        "1",
        "PJSIP/alice-00000001",
        True,
    )
    [reply] = replies(p, b"200 result=0\n")
    assert (reply.result, reply.data) == ("0", None)
    [reply] = replies(p, b"200 result= (timeout)\n")
    assert (reply.result, reply.data) == ("", "timeout")
    [reply] = replies(p, b"200 result=-1 endpos=1234\n")
    assert reply.result == "-1"


def test_reply_errors() -> None:
    p = AgiReplyParser()
    [r510, r511] = replies(
        p,
        b"510 Invalid or unknown command\n"
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
    )
    assert (r510.code, r510.text, r510.ok, r510.result) == (
        510,
        "Invalid or unknown command",
        False,
        None,
    )
    assert r511.code == 511
    [r520] = replies(p, b"520 Invalid command syntax.  Proper usage not available.\n")
    assert (r520.code, r520.usage) == (520, "")


def test_reply_520_multiline() -> None:
    data = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b" Usage: SET VARIABLE <variablename> <value>\n"
        b"\n"
        b"Sets a variable to the current channel.\n"
        b"520 End of proper usage.\n"
        b"200 result=1\n"
    )
    for cut in range(len(data) + 1):
        p = AgiReplyParser()
        events = p.feed(data[:cut]) + p.feed(data[cut:])
        assert [e.code for e in events if isinstance(e, AgiReply)] == [520, 200], cut
        usage = events[0]
        assert isinstance(usage, AgiReply)
        assert usage.text == "Invalid command syntax.  Proper usage follows:"
        assert usage.usage == (
            " Usage: SET VARIABLE <variablename> <value>\n\nSets a variable to the current channel."
        )


def test_reply_520_end_marker_glued_to_usage() -> None:
    # res_agi prints the usage with "%s": without a trailing newline the marker is glued on.
    p = AgiReplyParser()
    [reply] = replies(
        p, b"520-Invalid command syntax.  Proper usage follows:\nUsage: X520 End of proper usage.\n"
    )
    assert isinstance(reply, AgiReply)
    assert (reply.code, reply.usage) == (520, "Usage: X")


def test_reply_hangup_in_band() -> None:
    p = AgiReplyParser()
    assert p.feed(b"HANGUP\n200 result=1\n") == [
        AgiHangup(),
        AgiReply(code=200, text="result=1", result="1"),
    ]
    assert p.feed(b"HANG") == []
    assert p.feed(b"UP\r\n") == [AgiHangup()]


def test_reply_split_at_every_byte_boundary() -> None:
    data = b"200 result=1 (x)\nHANGUP\n510 Invalid or unknown command\n"
    expected = AgiReplyParser().feed(data)
    assert len(expected) == 3
    for cut in range(len(data) + 1):
        p = AgiReplyParser()
        assert p.feed(data[:cut]) + p.feed(data[cut:]) == expected


@pytest.mark.parametrize("line", [b"hello\n", b"20 result=1\n", b"200-x\n", b"abc result=1\n"])
def test_reply_garbage(line: bytes) -> None:
    with pytest.raises(AgiError, match="AGI reply"):
        AgiReplyParser().feed(line)


def test_reply_line_bounded() -> None:
    p = AgiReplyParser(max_line=100)
    assert p.feed(b"200 result=1 (" + b"x" * 80) == []
    with pytest.raises(AgiError, match="too long"):
        p.feed(b"x" * 20)
    with pytest.raises(AgiError, match="too long"):
        AgiReplyParser(max_line=100).feed(b"200 result=1 (" + b"x" * 100 + b")\n")


def test_reply_usage_bounded() -> None:
    p = AgiReplyParser(max_usage=100)
    p.feed(b"520-Invalid command syntax.  Proper usage follows:\n")
    with pytest.raises(AgiError, match="usage text too long"):
        for _ in range(20):
            p.feed(b"0123456789\n")
