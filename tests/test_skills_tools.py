"""The skills as OpenAI tools: definitions, calls that never raise, streamed-call assembly."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from pipeline.skills import Skills, TimerBook
from pipeline.skills.tools import (
    TOOLS,
    SkillTools,
    ToolCall,
    ToolCallAssembler,
    assistant_message,
    tool_message,
)

EVENING = datetime(2026, 12, 3, 22, 42, tzinfo=timezone.utc)


def tools() -> SkillTools:
    return SkillTools(Skills(clock=lambda: EVENING, timers=TimerBook(clock=lambda: 0.0)))


def test_definitions_are_openai_function_tools() -> None:
    names = [t["function"]["name"] for t in TOOLS]
    assert names == ["get_time", "get_date", "set_timer", "timers_left", "cancel_timer", "calculate",
                     "convert_units"]
    for tool in TOOLS:
        assert tool["type"] == "function"
        params = tool["function"]["parameters"]
        assert params["type"] == "object"
        assert set(params["required"]) <= set(params["properties"])
        json.dumps(tool)  # sendable as is
    calculate = TOOLS[5]["function"]["parameters"]["properties"]
    assert "expression" not in calculate and "enum" in calculate["operation"]


@pytest.mark.parametrize(
    ("name", "arguments", "content"),
    [
        ("get_time", "", "It's 10:42 PM."),
        ("get_time", "{}", "It's 10:42 PM."),
        ("get_date", "{}", "Today is Thursday, December 3rd."),
        ("set_timer", '{"seconds": 90}', "Timer set for 1 minute and 30 seconds."),
        ("set_timer", '{"seconds": 480, "name": "Pasta timer"}', "Pasta timer set for 8 minutes."),
        ("set_timer", '{"seconds": "600"}', "Timer set for 10 minutes."),
        ("timers_left", "{}", "You don't have any timers."),
        ("cancel_timer", '{"all": true}', "You don't have any timers."),
        ("calculate", '{"operation": "multiply", "a": 14, "b": 12}', "14 times 12 is 168."),
        ("calculate", '{"operation": "add", "a": 0.1, "b": 0.2}', "0.1 plus 0.2 is 0.3."),
        ("calculate", '{"operation": "divide", "a": 12, "b": 5}', "12 divided by 5 is 2.4."),
        ("calculate", '{"operation": "percent_of", "a": 15, "b": 80}', "15 percent of 80 is 12."),
        ("calculate", '{"operation": "square_root", "a": 144}', "the square root of 144 is 12."),
        ("calculate", '{"operation": "power", "a": 2, "b": 10}', "2 to the power of 10 is 1024."),
        (
            "calculate",
            '{"operation": "divide", "a": 1, "b": 0}',
            "Dividing by zero has no answer, so I can't work that out.",
        ),
        ("convert_units", '{"value": 5, "from_unit": "mile", "to_unit": "kilometer"}',
         "5 miles is about 8.05 kilometers."),
        ("convert_units", '{"value": 100, "from_unit": "degree fahrenheit", "to_unit": "degree celsius"}',
         "100 degrees Fahrenheit is about 37.78 degrees Celsius."),
        ("convert_units", '{"value": 1, "from_unit": "Miles", "to_unit": "ft"}', "1 mile is 5280 feet."),
    ],
)
def test_calls(name: str, arguments: str, content: str) -> None:
    result = tools().call_tool(name, arguments)
    assert (result.ok, result.content) == (True, content)


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        ("calculate", '{"operation": "add", "a": 1', "not valid JSON"),
        ("calculate", "[[[[", "not valid JSON"),
        ("calculate", '{"operation": "add", "a": 1}', "'b' must be a number"),
        ("calculate", '{"operation": "eval", "a": 1, "b": 2}', "'operation' must be one of"),
        ("calculate", '{"operation": "add", "a": "1+1", "b": 2}', "'a' must be a number"),
        ("calculate", '{"operation": "add", "a": true, "b": 2}', "'a' must be a number"),
        ("calculate", '{"operation": "add", "a": NaN, "b": 2}', "'a' must be a number"),
        ("calculate", '{"operation": "add", "a": 1' + "0" * 5000 + ', "b": 2}', "Error"),
        ("set_timer", "{}", "'seconds' must be a number"),
        ("set_timer", '{"seconds": null}', "'seconds' must be a number"),
        ("set_timer", '{"seconds": 60, "name": 7}', "'name' must be a string"),
        ("set_timer", "[60]", "must be a JSON object"),
        ("launch_rocket", "{}", "unknown tool 'launch_rocket'"),
        ("convert_units", '{"value": 1, "from_unit": "meter", "to_unit": "gram"}', "measure different things"),
        ("convert_units", '{"value": 1, "from_unit": "furlong", "to_unit": "meter"}', "'from_unit' must be one of"),
        ("convert_units", '{"value": "x", "from_unit": "mile", "to_unit": "meter"}', "'value' must be a number"),
        ("__init__", "{}", "unknown tool"),
        ("get_time", None, None),
    ],
)
def test_bad_calls_give_an_error_result_and_never_raise(
    name: str, arguments: str | None, reason: str | None
) -> None:
    result = tools().call_tool(name, arguments)
    if reason is None:  # None arguments are "no arguments"
        assert result.ok
        return
    assert not result.ok and reason in result.content
    assert result.spoken == "Sorry, that request went wrong."


def test_timer_tools_share_the_skills_timers() -> None:
    t = tools()
    t.call_tool("set_timer", '{"seconds": 300, "name": "tea"}')
    assert t.skills.timers.remaining("tea") == "Your tea timer has 5 minutes left."
    left = t.call_tool("timers_left", '{"name": "tea"}')
    assert left.content == "Your tea timer has 5 minutes left."
    assert t.call_tool("cancel_timer", '{"name": "tea"}').content == "Your tea timer is cancelled."


def chunk(tool_calls: list[dict[str, Any]]) -> ChatCompletionChunk:
    """A chunk as the openai SDK parses it from the stream."""
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": tool_calls}, "finish_reason": None}],
        }
    )


def delta(index: int, args: str = "", call_id: str | None = None, name: str | None = None) -> dict:
    item: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        item["id"], item["type"] = call_id, "function"
    if name:
        item["function"]["name"] = name
    return item


def test_assembles_arguments_split_at_awkward_places() -> None:
    arguments = '{"operation": "multiply", "a": 14.5, "b": 12, "note": "caf\\u00e9"}'
    # Cut inside a key, inside the escape, inside a number and between ':' and the value.
    cuts = [0, 3, 14, 27, 33, 35, 49, 58, 61, len(arguments)]
    pieces = [arguments[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    assembler = ToolCallAssembler()
    assembler.add(chunk([delta(0, "", "call_abc", "calculate")]).choices[0].delta.tool_calls)
    for piece in pieces:
        assembler.add(chunk([delta(0, piece)]).choices[0].delta.tool_calls)
    assembler.add(None)  # the closing chunk has no tool_calls
    assert assembler.calls() == [ToolCall("call_abc", "calculate", arguments)]
    assert json.loads(assembler.calls()[0].arguments)["note"] == "café"


def test_assembles_two_parallel_interleaved_calls() -> None:
    stream = [
        [delta(0, "", "call_1", "set_timer")],
        [delta(0, '{"seco')],
        [delta(1, "", "call_2", "get_time")],
        [delta(0, 'nds": 4'), delta(1, "{")],
        [delta(1, "}")],
        [delta(0, '80, "name": "pa')],
        [delta(0, 'sta"}')],
    ]
    assembler = ToolCallAssembler()
    for items in stream:
        assembler.add(chunk(items).choices[0].delta.tool_calls)
    calls = assembler.calls()
    assert calls == [
        ToolCall("call_1", "set_timer", '{"seconds": 480, "name": "pasta"}'),
        ToolCall("call_2", "get_time", "{}"),
    ]
    t = tools()
    results = [t.call_tool(c.name, c.arguments) for c in calls]
    assert results[0].content == "Pasta timer set for 8 minutes."
    assert results[1].content == "It's 10:42 PM."
    message = assistant_message(calls)
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["set_timer", "get_time"]
    assert tool_message(calls[1], results[1]) == {
        "role": "tool",
        "tool_call_id": "call_2",
        "content": "It's 10:42 PM.",
    }


def test_dict_deltas_without_index_or_id_and_a_repeated_name() -> None:
    assembler = ToolCallAssembler()
    assembler.add([{"function": {"name": "get_date", "arguments": "{"}}])
    assembler.add([{"function": {"name": "get_date", "arguments": "}"}}])
    assembler.add([{"id": "c9", "function": {"name": "get_time", "arguments": "{}"}}])
    assert assembler.calls() == [ToolCall("call_0", "get_date", "{}"), ToolCall("c9", "get_time", "{}")]
    assert not ToolCallAssembler()


def test_whole_calls_to_one_tool_without_index_stay_apart() -> None:
    assembler = ToolCallAssembler()
    assembler.add([{"function": {"name": "set_timer", "arguments": '{"seconds": 60}'}}])
    assembler.add([{"function": {"name": "set_timer", "arguments": '{"seconds": 120}'}}])
    assert [c.arguments for c in assembler.calls()] == ['{"seconds": 60}', '{"seconds": 120}']


@given(st.data())
def test_any_split_assembles_the_same_arguments(data: st.DataObject) -> None:
    arguments = json.dumps({"operation": "percent_of", "a": 17.5, "b": 200, "name": "ünï"})
    cuts = sorted(data.draw(st.sets(st.integers(1, len(arguments) - 1), max_size=12)))
    bounds = [0, *cuts, len(arguments)]
    assembler = ToolCallAssembler()
    assembler.add([delta(0, "", "c", "calculate")])
    for a, b in zip(bounds, bounds[1:], strict=False):
        assembler.add([delta(0, arguments[a:b])])
    (call,) = assembler.calls()
    assert call.arguments == arguments
    assert tools().call_tool(call.name, call.arguments).content == "17.5 percent of 200 is 35."
