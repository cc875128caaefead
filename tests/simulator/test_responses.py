"""Responses: event order, paced audio, truncate, cancel, function calls, usage."""

from __future__ import annotations

import base64
import itertools
import json
import math
import time

from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn, plan_ms
from tests.simulator.helpers import PCMU_SESSION, fast, open_client

GREETING = "Hello, this is the simulator speaking to you."


async def test_response_event_order_and_audio_total() -> None:
    async with Simulator(fast(greeting=GREETING)) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION)
        await client.send("response.create")
        events = await client.until("rate_limits.updated")
        kinds = [e["type"] for e in events if e["type"] != "response.output_audio.delta"]
        assert kinds[:4] == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
        ]
        assert kinds[-7:] == [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
            "rate_limits.updated",
        ]
        deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
        audio = b"".join(base64.b64decode(e["delta"]) for e in deltas)
        assert len(audio) == plan_ms(GREETING, 65) * 8  # µ-law: 8 bytes per ms
        assert all(len(base64.b64decode(e["delta"])) <= 800 for e in deltas)  # 100 ms chunks
        item_id = events[1]["item"]["id"]
        assert {e["item_id"] for e in deltas} == {item_id}
        assert {e["response_id"] for e in deltas} == {events[0]["response"]["id"]}
        transcript = "".join(
            e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
        )
        assert (
            transcript
            == GREETING
            == client.find("response.output_audio_transcript.done")["transcript"]
        )
        done = client.find("response.done")["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": GREETING}
        record = sim.sessions[0].responses[0]
        assert (record.script, record.trigger, record.status) == ("greeting", "client", "completed")
        assert record.audio_ms == plan_ms(GREETING, 65)
        assert record.item_ids == [item_id]


async def test_audio_is_faster_than_real_time_and_bursty() -> None:
    text = "One two three four five six seven eight nine ten."  # ~3.3 s of audio
    async with Simulator(Scenario(greeting=text, speed=4.0, response_latency_ms=0)) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION)
        start = time.monotonic()
        await client.send("response.create")
        arrivals = []
        while (event := await client.recv())["type"] != "response.done":
            if event["type"] == "response.output_audio.delta":
                arrivals.append(time.monotonic() - start)
        elapsed = time.monotonic() - start
        audio_s = plan_ms(text, 65) / 1000
        assert audio_s / 6 < elapsed < audio_s / 2  # about 4x real time
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert sum(g < 0.01 for g in gaps) >= len(gaps) // 2  # bursts: back-to-back chunks


async def test_pcm24k_and_text_only_outputs(sim: Simulator) -> None:
    client = await open_client(sim.url)  # default output: audio/pcm 24 kHz
    await client.send("response.create")
    events = await client.until("response.done")
    pcm = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(pcm) == plan_ms("I heard you.", 65) * 48  # 24 kHz, 2 bytes per sample
    await client.send("response.create", response={"output_modalities": ["text"]})
    events = await client.until("response.done")
    assert "response.output_audio.delta" not in {e["type"] for e in events}
    assert client.find("response.output_text.done")["text"] == "I heard you."


async def test_turns_then_default_reply() -> None:
    scenario = fast(greeting="Hi.", turns=[Turn("First."), Turn("Second.")], default_reply="Again.")
    async with Simulator(scenario) as sim:
        client = await open_client(sim.url)
        texts = []
        for _ in range(4):
            await client.send("response.create")
            texts.append(
                (await client.expect("response.output_audio_transcript.done"))["transcript"]
            )
            await client.expect("response.done")
        assert texts == ["Hi.", "First.", "Second.", "Again."]
        assert [r.script for r in sim.sessions[0].responses] == [
            "greeting",
            "turn 0",
            "turn 1",
            "default",
        ]


async def test_usage_formula() -> None:
    async with Simulator(fast(greeting=GREETING)) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION | {"instructions": "x" * 40})
        await client.send("response.create")
        usage = (await client.expect("response.done"))["response"]["usage"]
        out_audio = math.ceil(plan_ms(GREETING, 65) / 50)
        out_text = math.ceil(len(GREETING) / 4)
        assert usage["output_token_details"] == {"audio_tokens": out_audio, "text_tokens": out_text}
        assert usage["input_token_details"]["text_tokens"] == 10  # 40 chars of instructions
        assert usage["input_token_details"]["audio_tokens"] == 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        await client.send("response.create")
        usage = (await client.expect("response.done"))["response"]["usage"]
        # The greeting's audio is now context, at 20 tokens per second; the prefix is cached.
        assert usage["input_token_details"]["audio_tokens"] == out_audio
        assert usage["input_token_details"]["cached_tokens"] == 10
        assert sim.sessions[0].responses[1].usage == usage


async def test_max_output_tokens_makes_an_incomplete_response(sim: Simulator) -> None:
    client = await open_client(sim.url)
    await client.send("response.create", response={"max_output_tokens": 5})
    done = (await client.expect("response.done"))["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["usage"]["output_tokens"] <= 5


async def test_active_response_errors() -> None:
    async with Simulator(Scenario(greeting="A long greeting " * 5, speed=1.0)) as sim:
        client = await open_client(sim.url)
        await client.send("response.cancel")
        assert (await client.expect("error"))["error"]["code"] == "response_cancel_not_active"
        await client.send("response.create")
        await client.expect("response.created")
        await client.send("response.create", event_id="evt_again")
        error = (await client.expect("error"))["error"]
        assert error["code"] == "conversation_already_has_active_response"
        assert error["event_id"] == "evt_again"
        await client.send("response.cancel")
        done = (await client.expect("response.done"))["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "client_cancelled"
        assert len(sim.sessions[0].errors_sent) == 2


async def test_truncate() -> None:
    async with Simulator(fast(greeting=GREETING)) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION)
        await client.send("response.create")
        item_id = (await client.expect("response.output_item.added"))["item"]["id"]
        await client.expect("response.done")
        produced = plan_ms(GREETING, 65)

        await client.send(
            "conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=produced + 500,
        )
        error = (await client.expect("error"))["error"]
        assert error["code"] == "invalid_value" and error["param"] == "audio_end_ms"
        assert (
            error["message"]
            == f"Audio content of {produced}ms is already shorter than {produced + 500}ms"
        )

        await client.send(
            "conversation.item.truncate", item_id="item_nope", content_index=0, audio_end_ms=10
        )
        assert (await client.expect("error"))["error"]["code"] == "item_truncate_invalid_item_id"

        await client.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=1200
        )
        truncated = await client.expect("conversation.item.truncated")
        assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (
            item_id,
            0,
            1200,
        )
        assert sim.sessions[0].truncates == [
            {
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 1200,
                "produced_ms": produced,
                "while_streaming": False,
            },
        ]


async def test_truncate_user_item_is_refused(sim: Simulator) -> None:
    client = await open_client(sim.url)
    await client.send(
        "conversation.item.create",
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        },
    )
    item_id = (await client.expect("conversation.item.added"))["item"]["id"]
    await client.send(
        "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=0
    )
    assert (await client.expect("error"))["error"]["param"] == "item_id"


async def test_truncate_while_streaming_stops_the_item() -> None:
    async with Simulator(
        Scenario(greeting="A long greeting " * 5, speed=1.0, response_latency_ms=0)
    ) as sim:
        client = await open_client(sim.url)
        await client.send("response.create")
        delta = await client.expect("response.output_audio.delta")
        await client.send(
            "conversation.item.truncate", item_id=delta["item_id"], content_index=0, audio_end_ms=50
        )
        await client.expect("conversation.item.truncated")
        done = (await client.expect("response.done"))["response"]
        assert done["output"][0]["status"] == "incomplete"
        assert sim.sessions[0].responses[0].audio_ms < 1000
        assert sim.sessions[0].truncates[0]["while_streaming"] is True


async def test_function_call_round_trip() -> None:
    scenario = fast(
        turns=[
            Turn("Let me look that up.", (ToolCall("get_balance", {"account": "12345678"}),)),
            Turn("Your balance is {output.balance} euros."),
        ]
    )
    async with Simulator(scenario) as sim:
        client = await open_client(sim.url)
        await client.update(
            PCMU_SESSION
            | {
                "tools": [
                    {"type": "function", "name": "get_balance", "parameters": {"type": "object"}},
                ]
            }
        )
        await client.send("response.create")
        events = await client.until("response.done")
        done = events[-1]["response"]
        assert [o["type"] for o in done["output"]] == ["message", "function_call"]
        call = done["output"][1]
        assert call["name"] == "get_balance" and call["status"] == "completed"
        assert json.loads(call["arguments"]) == {"account": "12345678"}
        args_done = client.find("response.function_call_arguments.done")
        assert args_done["call_id"] == call["call_id"] and args_done["item_id"] == call["id"]
        assert args_done["output_index"] == 1 and args_done["response_id"] == done["id"]
        streamed = "".join(
            e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
        )
        assert streamed == call["arguments"]

        await client.send(
            "conversation.item.create",
            item={
                "type": "function_call_output",
                "call_id": "call_unknown",
                "output": "{}",
            },
        )
        assert (await client.expect("error"))["error"]["param"] == "item.call_id"

        output = json.dumps({"balance": 42})
        await client.send(
            "conversation.item.create",
            item={
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": output,
            },
        )
        added = await client.expect("conversation.item.added")
        assert added["item"]["type"] == "function_call_output"
        await client.send("response.create")
        transcript = (await client.expect("response.output_audio_transcript.done"))["transcript"]
        assert transcript == "Your balance is 42 euros."
        assert sim.sessions[0].function_outputs == [
            {
                "call_id": call["call_id"],
                "name": "get_balance",
                "output": output,
                "item_id": added["item"]["id"],
            }
        ]


async def test_user_text_then_response_consumes_a_turn() -> None:
    async with Simulator(fast(greeting="Hello.", turns=[Turn("You said something.")])) as sim:
        client = await open_client(sim.url)
        await client.send(
            "conversation.item.create",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            },
        )
        await client.expect("conversation.item.done")
        assert sim.sessions[0].responses == []  # a user message alone does not answer
        await client.send("response.create")
        transcript = (await client.expect("response.output_audio_transcript.done"))["transcript"]
        assert transcript == "You said something."  # no greeting: the caller spoke first
