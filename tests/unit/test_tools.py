"""Tools: DTMF digit validation and ToolSet dispatch against a fake CallControls."""

from __future__ import annotations

import json
import logging

import pytest

from agi_bridge.errors import AmiError, ToolError
from agi_bridge.tools import (
    BUILTIN,
    HANGUP,
    MAX_DTMF_DIGITS,
    SEND_DTMF,
    ToolSet,
    parse_digits,
)


class FakeCall:
    """Records what the tools did, in order; optionally fails on the n-th key press."""

    def __init__(self, fail_on_press: int | None = None, exc: Exception | None = None) -> None:
        self.call_id = "call-test"
        self.actions: list[tuple[str, str]] = []
        self._fail_on = fail_on_press
        self._exc = exc or AmiError("PlayDTMF failed: channel gone")
        self._presses = 0

    async def play_dtmf(self, digit: str) -> None:
        self._presses += 1
        if self._presses == self._fail_on:
            raise self._exc
        self.actions.append(("dtmf", digit))

    async def dtmf_pause(self) -> None:
        self.actions.append(("pause", ""))

    async def end_call(self, reason: str) -> None:
        self.actions.append(("end", reason))

    # the rest of CallControls; the tools tested here must not use them
    async def transfer(self, name: str, target: object, summary: str) -> None:
        self.actions.append(("transfer", name))

    async def switch_agent(self, name: str) -> None:
        self.actions.append(("switch_agent", name))

    def call_info(self) -> dict[str, str]:
        return {"call_id": self.call_id}


ALL = ToolSet((SEND_DTMF, HANGUP))


# ------------------------------------------------------------------------ parse_digits


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "1"),
        ("1#", "1#"),
        ("12w3", "12w3"),
        ("*0#", "*0#"),
        ("abcd", "ABCD"),
        ("ABCD", "ABCD"),
        ("1 2-3", "123"),
        ("w", "w"),
        ("0123456789*#ABCDw", "0123456789*#ABCDw"),
    ],
)
def test_parse_digits_valid(value: str, expected: str) -> None:
    assert parse_digits(value) == expected


@pytest.mark.parametrize(
    ("value", "bad"),
    [("12x", "x"), ("1E", "E"), ("W", "W"), ("9+1", "+"), ("a.b!", "!.")],
)
def test_parse_digits_invalid_characters_are_named(value: str, bad: str) -> None:
    with pytest.raises(ToolError) as info:
        parse_digits(value)
    assert str(info.value) == f"invalid DTMF characters {bad!r}: use 0-9 * # A-D and w"


@pytest.mark.parametrize("value", ["1\n", "\n", "12\n"])
def test_parse_digits_rejects_trailing_newline(value: str) -> None:
    # "$" in a regex also matches before a final newline; a newline is not a DTMF key
    with pytest.raises(ToolError, match="invalid DTMF characters"):
        parse_digits(value)


def test_parse_digits_too_long() -> None:
    assert parse_digits("1" * MAX_DTMF_DIGITS) == "1" * MAX_DTMF_DIGITS
    with pytest.raises(ToolError, match=rf"too many digits \(65 > {MAX_DTMF_DIGITS}\)"):
        parse_digits("1" * (MAX_DTMF_DIGITS + 1))


def test_parse_digits_separators_do_not_count_towards_the_limit() -> None:
    assert parse_digits("1-" * MAX_DTMF_DIGITS) == "1" * MAX_DTMF_DIGITS


@pytest.mark.parametrize("value", ["", None, 5, 1.5, ["1"], {"d": "1"}, True])
def test_parse_digits_empty_or_not_a_string(value: object) -> None:
    with pytest.raises(ToolError, match="digits must be a non-empty string"):
        parse_digits(value)


@pytest.mark.parametrize("value", [" ", "-", " - "])
def test_parse_digits_only_separators(value: str) -> None:
    with pytest.raises(ToolError):
        parse_digits(value)


# ---------------------------------------------------------------------------- schemas


def test_schemas() -> None:
    schemas = ALL.schemas()
    assert [s["name"] for s in schemas] == ["send_dtmf", "hangup"]
    for s in schemas:
        assert s["type"] == "function"
        assert s["description"]
        assert s["parameters"]["type"] == "object"
        json.dumps(s)  # goes into session.update
    assert schemas[0]["parameters"]["required"] == ["digits"]
    assert schemas[1]["parameters"]["required"] == ["reason"]
    assert ToolSet((HANGUP,)).schemas() == (HANGUP.schema(),)
    assert set(BUILTIN) == {"send_dtmf", "hangup"}


def test_continues() -> None:
    assert ALL.continues("send_dtmf") is True
    assert ALL.continues("hangup") is False
    assert SEND_DTMF.continue_after and not HANGUP.continue_after


# ------------------------------------------------------------------------------ run


async def test_send_dtmf_plays_digits_and_pauses_in_order() -> None:
    call = FakeCall()
    result = await ALL.run(call, "send_dtmf", '{"digits": "1w#"}')
    assert result == {"ok": True, "digits_sent": "1w#"}
    assert call.actions == [("dtmf", "1"), ("pause", ""), ("dtmf", "#")]


async def test_send_dtmf_normalises_before_sending() -> None:
    call = FakeCall()
    result = await ALL.run(call, "send_dtmf", json.dumps({"digits": "1-2 b"}))
    assert result == {"ok": True, "digits_sent": "12B"}
    assert call.actions == [("dtmf", "1"), ("dtmf", "2"), ("dtmf", "B")]


async def test_send_dtmf_invalid_digits_sends_nothing() -> None:
    call = FakeCall()
    result = await ALL.run(call, "send_dtmf", '{"digits": "12x"}')
    assert result["ok"] is False
    assert "invalid DTMF characters 'x'" in result["error"]
    assert call.actions == []


async def test_send_dtmf_missing_digits() -> None:
    call = FakeCall()
    for args in ("{}", "", '{"digit": "1"}'):
        result = await ALL.run(call, "send_dtmf", args)
        assert result == {"ok": False, "error": "digits must be a non-empty string"}
    assert call.actions == []


async def test_ami_error_mid_way_reports_digits_sent_so_far() -> None:
    call = FakeCall(fail_on_press=3)
    result = await ALL.run(call, "send_dtmf", '{"digits": "12w34"}')
    assert result == {
        "ok": False,
        "error": "DTMF failed: PlayDTMF failed: channel gone",
        "digits_sent": "12w",
    }
    # stops at the failure: "4" is never pressed
    assert call.actions == [("dtmf", "1"), ("dtmf", "2"), ("pause", "")]


async def test_ami_error_on_first_digit() -> None:
    call = FakeCall(fail_on_press=1)
    result = await ALL.run(call, "send_dtmf", '{"digits": "9"}')
    assert result["ok"] is False
    assert result["digits_sent"] == ""


@pytest.mark.parametrize("arguments", ["{not json", '{"digits": "1"', "nan}"])
async def test_bad_json_arguments(arguments: str) -> None:
    call = FakeCall()
    result = await ALL.run(call, "send_dtmf", arguments)
    assert result["ok"] is False
    assert result["error"].startswith("arguments are not JSON: ")
    assert call.actions == []


@pytest.mark.parametrize("arguments", ["[]", '"1#"', "42", "null"])
async def test_arguments_must_be_an_object(arguments: str) -> None:
    call = FakeCall()
    result = await ALL.run(call, "send_dtmf", arguments)
    assert result == {"ok": False, "error": "arguments must be a JSON object"}
    assert call.actions == []


async def test_unknown_tool() -> None:
    call = FakeCall()
    result = await ALL.run(call, "fax_machine", '{"to": "100"}')
    assert result == {"ok": False, "error": "unknown tool 'fax_machine'"}
    assert call.actions == []


async def test_tool_not_enabled_for_this_agent_is_unknown() -> None:
    call = FakeCall()
    result = await ToolSet((HANGUP,)).run(call, "send_dtmf", '{"digits": "1"}')
    assert result == {"ok": False, "error": "unknown tool 'send_dtmf'"}
    assert call.actions == []


async def test_hangup_with_reason() -> None:
    call = FakeCall()
    result = await ALL.run(call, "hangup", '{"reason": "  caller said goodbye  "}')
    assert result == {"ok": True}
    assert call.actions == [("end", "caller said goodbye")]


@pytest.mark.parametrize(
    "arguments", ["{}", '{"reason": ""}', '{"reason": "   "}', '{"reason": 3}']
)
async def test_hangup_without_reason(arguments: str) -> None:
    call = FakeCall()
    result = await ALL.run(call, "hangup", arguments)
    assert result == {"ok": False, "error": "reason must be a non-empty string"}
    assert call.actions == []


async def test_unexpected_handler_exception_becomes_a_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = FakeCall(fail_on_press=1, exc=RuntimeError("boom"))
    with caplog.at_level(logging.ERROR, logger="agi_bridge.tools"):
        result = await ALL.run(call, "send_dtmf", '{"digits": "1"}')
    assert result == {"ok": False, "error": "RuntimeError: boom"}
    assert any(
        "call-test" in r.getMessage() and "send_dtmf" in r.getMessage() for r in caplog.records
    )
