"""Per-turn latency: timestamps carried in message metadata, summed up where a turn ends.

Every node stamps `t_<stage>` (UNIX seconds) on what it sends and copies the stamps it got,
so the speaker, the last node, sees the whole history of a turn without a separate metrics
bus. At the end of a turn it logs one line of stage durations and, with METRICS_FILE set,
appends the raw timestamps as one JSON line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("metrics")

# (name in the log line, from, to)
STAGES: tuple[tuple[str, str, str], ...] = (
    ("endpoint", "t_speech_end", "t_utterance"),
    ("asr", "t_utterance", "t_transcript"),
    ("llm_request", "t_transcript", "t_llm_request"),
    ("first_token", "t_llm_request", "t_first_token"),
    ("first_segment", "t_first_token", "t_first_segment"),
    ("tts_first", "t_first_segment", "t_first_audio"),
    ("to_speaker", "t_first_audio", "t_first_played"),
    ("voice_to_voice", "t_speech_end", "t_first_played"),
    ("synth_total", "t_speech_end", "t_tts_done"),
    ("answer_total", "t_speech_end", "t_answer_done"),
    ("llm_error", "t_speech_end", "t_llm_error"),
)


@dataclass
class TurnRecord:
    turn_id: int
    transcript: str = ""
    answer: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def stamp(self, meta: dict[str, Any]) -> None:
        """Keep the first value of each timestamp and duration seen for this turn."""
        for key, value in meta.items():
            if (key.startswith("t_") or key.endswith("_s")) and isinstance(value, (int, float)):
                self.times.setdefault(key, float(value))

    def durations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, a, b in STAGES:
            if a in self.times and b in self.times:
                out[name] = round(self.times[b] - self.times[a], 4)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "turn_id": self.turn_id,
            "transcript": self.transcript,
            "answer": " ".join(self.answer),
            "interrupted": self.interrupted,
            "durations": self.durations(),
            "times": self.times,
            **self.extra,
        }

    def line(self) -> str:
        parts = " ".join(f"{k}={v * 1000:.0f}ms" for k, v in self.durations().items())
        state = " (interrupted)" if self.interrupted else ""
        return f"turn {self.turn_id}{state}: {parts} | heard {self.transcript!r} | said {' '.join(self.answer)!r}"


class TurnMetrics:
    def __init__(self, path: str = "") -> None:
        self.path = path
        self.turns: dict[int, TurnRecord] = {}
        self.finished: list[TurnRecord] = []

    def record(self, turn_id: int) -> TurnRecord:
        rec = self.turns.get(turn_id)
        if rec is None:
            rec = self.turns[turn_id] = TurnRecord(turn_id)
        return rec

    def transcript(self, turn_id: int, text: str, meta: dict[str, Any]) -> None:
        rec = self.record(turn_id)
        rec.transcript = text
        rec.stamp(meta)

    def drop(self, turn_id: int) -> None:
        """Forget a turn that will never be heard nor logged (a speculative answer dropped
        before its endpoint, because the user went on talking)."""
        self.turns.pop(turn_id, None)

    def finish(self, turn_id: int, interrupted: bool = False, **extra: Any) -> TurnRecord | None:
        rec = self.turns.pop(turn_id, None)
        if rec is None:
            return None
        rec.interrupted = interrupted
        rec.extra.update(extra)
        self.finished.append(rec)
        del self.finished[:-100]
        log.info("%s", rec.line())
        if self.path:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec.as_json()) + "\n")
            except OSError as exc:
                log.warning("cannot write METRICS_FILE=%s: %s", self.path, exc)
        return rec
