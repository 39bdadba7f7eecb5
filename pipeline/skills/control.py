"""Control words: "stop" silences the assistant, "say that again" repeats its last answer.

Only an utterance that is *just* the command counts (perhaps doubled, perhaps with
"please", "okay" or "thanks" around it, which :mod:`.normalize` removes): "stop the
music", "never mind the weather, what about Spain?" or "what did you say about Spain"
are questions for the LLM. "cancel the timer" is a timer request, not a stop.
"""

from __future__ import annotations

import re
from enum import Enum


class Control(Enum):
    STOP = "stop"
    REPEAT = "repeat"


_STOP_PHRASES = (
    r"stop(?: it| talking| that| now| there)?", r"never ?mind", r"cancel(?: that)?",
    r"be quiet", r"quiet", r"shut up", r"hush", r"shh+", r"silence", r"enough",
    r"that is enough", r"that will do", r"forget it", r"forget about it", r"stop stop",
    r"no stop", r"okay stop", r"that is all", r"you can stop(?: now)?",
)  # fmt: skip
_REPEAT_PHRASES = (
    r"(?:can you |could you |would you )?(?:please )?(?:say|repeat) that(?: again)?",
    r"(?:can you |could you )?say (?:it |that )?again", r"repeat(?: it| yourself| please)?",
    r"(?:can you |could you )?repeat (?:what you said|the last answer|your answer)",
    r"what did you (?:just )?say", r"what was that", r"come again", r"pardon(?: me)?",
    r"i beg your pardon", r"sorry what", r"i did not (?:catch|hear|get) (?:that|you|it)",
    r"(?:say it )?one more time", r"again",
)  # fmt: skip
_FILLER = r"(?:(?:oh|hey|no|okay|ok|alright|sorry|please|just|so) )*"
_STOP = re.compile(rf"{_FILLER}(?:{'|'.join(_STOP_PHRASES)})(?: (?:{'|'.join(_STOP_PHRASES)}))*")
# Whisper (tiny.en) sometimes writes a short command twice ("Say that again. Say that again."
# for one 1 s "say that again"): a doubled command is still the command.
_REPEAT = re.compile(rf"{_FILLER}(?:{'|'.join(_REPEAT_PHRASES)})(?: (?:{'|'.join(_REPEAT_PHRASES)}))?")


def control(text: str) -> Control | None:
    """STOP or REPEAT for a normalised utterance that is only that command, else None."""
    if _STOP.fullmatch(text):
        return Control.STOP
    if _REPEAT.fullmatch(text):
        return Control.REPEAT
    return None
