"""Requests answered exactly without the LLM: time and date, timers, arithmetic, unit
conversions, control.

Pure Python (no dora, no network). :class:`Skills` is the entry point the dataflow calls
with each transcript; :mod:`.tools` offers the same skills as OpenAI function-calling tools.
"""

from .router import ReplyKind, SkillReply, Skills
from .timers import TimerBook

__all__ = ["ReplyKind", "SkillReply", "Skills", "TimerBook"]
