"""The skills as OpenAI function-calling tools, and the assembly of streamed tool calls.

:data:`TOOLS` is the ``tools=`` list for ``chat.completions.create``. The model never
sends an expression to evaluate: ``calculate`` takes an operation name and numbers, built
into the same tree :mod:`.arithmetic` evaluates. :meth:`SkillTools.call_tool` never raises:
bad JSON, missing or wrong arguments and unknown tools give a :class:`ToolResult` with
``ok=False`` and a short reason for the model (and a sentence to speak if it stalls).

:class:`ToolCallAssembler` rebuilds calls from ``chunk.choices[0].delta.tool_calls`` as the
openai SDK yields them: each item has an ``index``; ``id`` and ``function.name`` usually
come once, ``function.arguments`` arrives in fragments cut anywhere, and parallel calls
interleave by index. Plain dicts (a scripted server's JSON) are accepted as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from . import arithmetic, units
from .arithmetic import Binary, Lit, MathError, Unary
from .clock import say_date, say_time
from .numbers import say_number
from .router import Skills

_NAME = {"type": "string", "description": "The timer's name, e.g. 'pasta'. Omit if unnamed."}
_NUMBER = {"type": "number"}
_OPERATIONS = {
    "add": arithmetic.ADD, "subtract": arithmetic.SUB, "multiply": arithmetic.MUL,
    "divide": arithmetic.DIV, "power": arithmetic.POW, "percent_of": arithmetic.PERCENT_OF,
    "square_root": arithmetic.SQRT, "cube_root": arithmetic.CBRT,
}  # fmt: skip
_UNARY = {"square_root", "cube_root"}


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOLS: list[dict] = [
    _tool("get_time", "The current local time, as a sentence.", {}, []),
    _tool("get_date", "Today's local date and weekday, as a sentence.", {}, []),
    _tool(
        "set_timer",
        "Start a countdown timer; the user is told aloud when it ends.",
        {"seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}, "name": _NAME},
        ["seconds"],
    ),
    _tool("timers_left", "Time left on the user's timers (or on the named one).", {"name": _NAME}, []),
    _tool(
        "cancel_timer",
        "Cancel the named timer, the only timer, or all timers.",
        {"name": _NAME, "all": {"type": "boolean", "description": "Cancel every timer."}},
        [],
    ),
    _tool(
        "calculate",
        "Exact arithmetic on numbers: a OP b, or OP a for roots. percent_of: a percent of b.",
        {
            "operation": {"type": "string", "enum": sorted(_OPERATIONS)},
            "a": _NUMBER,
            "b": {"type": "number", "description": "Second operand; not for roots."},
        },
        ["operation", "a"],
    ),
    _tool(
        "convert_units",
        "Exact unit conversion (length, mass, volume, time, temperature), as a sentence.",
        {
            "value": _NUMBER,
            "from_unit": {"type": "string", "enum": units.unit_names()},
            "to_unit": {"type": "string", "enum": units.unit_names()},
        },
        ["value", "from_unit", "to_unit"],
    ),
]


@dataclass(frozen=True)
class ToolResult:
    """What a tool gave back: ``content`` goes to the model as the tool message."""

    name: str
    ok: bool
    content: str

    @property
    def spoken(self) -> str:
        """A short sentence to say if the model does not answer after this result."""
        return self.content if self.ok else "Sorry, that request went wrong."


class ToolError(ValueError):
    pass


def _number(arguments: dict, key: str) -> Fraction:
    value = arguments.get(key)
    if isinstance(value, bool) or value is None:
        raise ToolError(f"'{key}' must be a number")
    try:
        return value if isinstance(value, Fraction) else Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise ToolError(f"'{key}' must be a number") from exc


def _name(arguments: dict) -> str | None:
    name = arguments.get("name")
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise ToolError("'name' must be a string")
    name = " ".join(name.lower().removesuffix(" timer").split())
    return name or None


class SkillTools:
    """Runs tool calls against one :class:`Skills` (its clock and its timers)."""

    definitions = TOOLS

    def __init__(self, skills: Skills) -> None:
        self.skills = skills

    def call_tool(self, name: str, arguments_json: str | None) -> ToolResult:
        """Run one call; every failure becomes an ``ok=False`` result, never an exception."""
        try:
            text = (arguments_json or "").strip() or "{}"
            # parse_float keeps decimals exact: 0.1 stays 1/10, not 0.1000000000000000055.
            arguments = json.loads(text, parse_float=Fraction)
            if not isinstance(arguments, dict):
                raise ToolError("arguments must be a JSON object")
            handler = getattr(self, f"_tool_{name}", None)
            if handler is None:
                raise ToolError(f"unknown tool '{name}'")
            return ToolResult(name, True, handler(arguments))
        except ToolError as exc:
            return ToolResult(name, False, f"Error: {exc}.")
        except (json.JSONDecodeError, RecursionError):
            return ToolResult(name, False, "Error: the arguments are not valid JSON.")
        except (ValueError, TypeError, ArithmeticError) as exc:  # e.g. a 5000-digit integer
            return ToolResult(name, False, f"Error: {type(exc).__name__}.")

    def _tool_get_time(self, arguments: dict) -> str:
        return say_time(self.skills.clock())

    def _tool_get_date(self, arguments: dict) -> str:
        return say_date(self.skills.clock())

    def _tool_set_timer(self, arguments: dict) -> str:
        return self.skills.timers.set(_number(arguments, "seconds"), _name(arguments))

    def _tool_timers_left(self, arguments: dict) -> str:
        return self.skills.timers.remaining(_name(arguments))

    def _tool_cancel_timer(self, arguments: dict) -> str:
        if arguments.get("all") is True:
            return self.skills.timers.cancel_all()
        return self.skills.timers.cancel(_name(arguments))

    def _tool_calculate(self, arguments: dict) -> str:
        operation = arguments.get("operation")
        if operation not in _OPERATIONS:
            raise ToolError(f"'operation' must be one of {', '.join(sorted(_OPERATIONS))}")
        a = Lit(_number(arguments, "a"))
        op = _OPERATIONS[operation]
        node = Unary(op, a) if operation in _UNARY else Binary(op, a, Lit(_number(arguments, "b")))
        try:
            result = arithmetic.evaluate(node)
            spoken = say_number(result, exact=isinstance(result, Fraction))
        except MathError as exc:
            return str(exc)
        except (OverflowError, ValueError, ZeroDivisionError) as exc:
            raise ToolError("the result cannot be computed") from exc
        return f"{arithmetic.render(node)} is {'about ' if spoken.approximate else ''}{spoken.text}."

    def _tool_convert_units(self, arguments: dict) -> str:
        names = []
        for key in ("from_unit", "to_unit"):
            raw = arguments.get(key)
            unit = units.unit_key(raw) if isinstance(raw, str) else None
            if unit is None:
                raise ToolError(f"'{key}' must be one of {', '.join(units.unit_names())}")
            names.append(unit)
        said = units.say_conversion(_number(arguments, "value"), names[0], names[1])
        if said is None:
            raise ToolError(f"{names[0]} and {names[1]} measure different things")
        return said


@dataclass
class ToolCall:
    """One complete call: ``arguments`` is the JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str = ""


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


@dataclass
class ToolCallAssembler:
    """Collects streamed tool-call deltas into complete :class:`ToolCall` s."""

    _calls: dict[int, ToolCall] = field(default_factory=dict)
    _by_id: dict[str, int] = field(default_factory=dict)
    _last: int | None = None

    def add(self, deltas: list[Any] | None) -> None:
        """Feed ``chunk.choices[0].delta.tool_calls`` (None and [] are fine)."""
        for delta in deltas or []:
            index, call_id = _get(delta, "index"), _get(delta, "id")
            function = _get(delta, "function")
            name = _get(function, "name") if function is not None else None
            fragment = _get(function, "arguments") if function is not None else None
            if index is None:  # some servers omit it: place by id, else a new call or the last
                if call_id and call_id in self._by_id:
                    index = self._by_id[call_id]
                elif self._last is not None and not call_id and self._continues(name):
                    index = self._last
                else:
                    index = max(self._calls, default=-1) + 1
            call = self._calls.setdefault(index, ToolCall("", ""))
            if call_id and not call.id:
                call.id = call_id
                self._by_id[call_id] = index
            if name and name != call.name:  # a name repeated whole in every chunk counts once
                call.name += name
            if fragment:
                call.arguments += fragment
            self._last = index

    def _continues(self, name: str | None) -> bool:
        """Whether an id-less, index-less delta belongs to the last call.

        It does when it names no tool or the same tool while that call's arguments are not
        yet a whole JSON value; a second whole call to the same tool starts a new one.
        """
        last = self._calls[self._last]
        if name and name != last.name:
            return False
        if not name:
            return True
        try:
            json.loads(last.arguments)
        except ValueError:
            return True
        return False

    def calls(self) -> list[ToolCall]:
        """The calls so far, in index order, each with an id (made up if none was sent)."""
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            out.append(ToolCall(call.id or f"call_{index}", call.name, call.arguments))
        return out

    def __bool__(self) -> bool:
        return bool(self._calls)


def assistant_message(calls: list[ToolCall]) -> dict:
    """The assistant turn that carried the calls, for the follow-up request's messages."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }


def tool_message(call: ToolCall, result: ToolResult) -> dict:
    """The tool turn answering ``call``."""
    return {"role": "tool", "tool_call_id": call.id, "content": result.content}
