"""The echo guard: transcripts that are the assistant's own words heard back are dropped."""

from __future__ import annotations

from pipeline.asr import normalise

# What users say to cut in. Any other single word heard while the assistant says it is taken
# for its echo (a residue such as "today" slipping past the canceller at a segment start).
INTERRUPTIONS = frozenset(
    ["stop", "wait", "no", "yes", "hey", "okay", "ok", "sorry", "pause", "quiet", "enough", "hold", "cancel", "hello", "what"]
)


class EchoGuard:
    """Drops transcripts that are the assistant's own words heard back through the microphone.

    The last line of defence after echo cancellation and the stricter VAD while playing: if
    the user's utterance overlaps in time with what the assistant was playing and is mostly
    made of that audio's words, it is an echo (people rarely repeat the assistant word for
    word while it speaks). Only segments audible during the utterance count, so a user who
    later repeats part of an answer ("what time is it?") is still heard.

    A segment still open (`started`, no `finished` or `interrupted` yet) counts as playing,
    but not for longer than `keep_s`: an open entry that never closed (its end lost, or
    reported before its start) would otherwise take its words for echo for good.
    """

    def __init__(self, keep_s: float = 30.0, min_share: float = 0.8) -> None:
        self.keep_s = keep_s
        self.min_share = min_share
        self._open: dict[tuple[int, int], tuple[float, str]] = {}
        self._played: list[tuple[float, float, set[str]]] = []

    def played(self, turn_id: int, segment_index: int, event: str, text: str, t: float) -> None:
        """A `played` event of the speaker (started / finished / interrupted)."""
        key = (turn_id, segment_index)
        if event == "started":
            self._open[key] = (t, text)
        elif event in ("finished", "interrupted"):
            start, said = self._open.pop(key, (t, text))
            words = set(normalise(said or text).split())
            if words:
                self._played.append((start, t, words))
            self._played = [p for p in self._played if p[1] > t - self.keep_s]
        self._expire(t)

    def _expire(self, now: float) -> None:
        """Forget open segments that started more than `keep_s` before `now`."""
        for key in [k for k, (start, _) in self._open.items() if start < now - self.keep_s]:
            del self._open[key]

    def is_echo(self, transcript: str, t_start: float, t_end: float) -> bool:
        self._expire(t_end)
        heard = normalise(transcript).split()
        if not heard or (len(heard) == 1 and heard[0] in INTERRUPTIONS):
            return False  # a lone "stop" is the user even if the answer says "stop" too
        audible: set[str] = set()
        spans = self._played + [(s, float("inf"), set(normalise(x).split())) for s, x in self._open.values()]
        for start, end, words in spans:
            if start < t_end and end > t_start - 0.3:
                audible |= words
        return sum(1 for w in heard if w in audible) / len(heard) >= self.min_share
