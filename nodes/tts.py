"""tts node: speakable segments in, audio out (Piper, loaded and warmed once).

Its `ready` output (sent once the voice is loaded, `restart` = this process was restarted by
dora after a crash) goes to the segmenter, which then sends again what the crash lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipeline import messages as m
from pipeline.models import ModelNotFound
from pipeline.runtime import STOP, Outbox, fail, inputs, is_restart, release_memory, start
from pipeline.settings import Settings
from pipeline.tts import Synthesizer, TtsConfig
from pipeline.turns import TurnGate

NAME = "tts"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings, synth: Synthesizer) -> None:
    out = Outbox(node)
    gate = TurnGate()
    restarted = is_restart(node)
    if restarted:
        log.warning("tts node restarted by dora: asking the segmenter for the unplayed segments")
    # Segments sent to a restarting node before this point were lost: `ready` tells the
    # segmenter that it may send again, and, after a restart, what to send again.
    out.send(m.TTS_READY, m.text_array(NAME), {"restart": restarted})
    for input_id, value, meta in inputs(node, primary=frozenset({"segment"})):
        if input_id == STOP:
            continue
        turn = m.turn_of(meta)
        if input_id == "speech_started":
            gate.advance(turn)
            continue
        if input_id != "segment" or not gate.accept(turn):
            continue
        base = {**m.times(meta), "turn_id": turn, "segment_index": int(meta.get("segment_index", 0)),
                "sample_rate": synth.sample_rate, "last": bool(meta.get("last", False))}
        if meta.get("event") == m.END:
            # end of the answer: the speaker needs to know so it can report turn_end
            out.send(m.TTS_AUDIO, m.audio_array(_EMPTY), {**base, "event": m.END, "t_tts_done": time.time()})
            continue
        speak(out, synth, m.text_of(value), base)
        # With 2 onnxruntime threads glibc keeps per-thread arenas, and the memory of the
        # longest segment so far stayed resident: RSS grew 183 -> 198 MB over 40 segments of
        # 3-30 words (+10.6 % in the 10-turn soak); trimmed after every segment, 135 MB.
        # After the audio was sent, so it delays nothing.
        release_memory()


_EMPTY = np.zeros(0, dtype=np.float32)


def speak(out: Outbox, synth: Synthesizer, text: str, base: dict[str, Any]) -> None:
    """Send a segment's audio chunk by chunk as Piper makes it (see pipeline/tts.py).

    Every chunk carries `chunk_index` and `end_of_segment`; the last one also the segment's
    synthesis time and length (`tts_s`, `tts_audio_s`). A segment Piper makes no sound of is
    still sent (one empty chunk): the speaker reports it played, which frees its place in
    the segmenter's backpressure window.
    """
    started = time.perf_counter()
    samples = 0
    index = -1
    for index, chunk in enumerate(synth.stream(text, awaited=base["segment_index"] == 0)):
        samples += chunk.audio.size
        meta = {**base, "event": m.SEGMENT, "text": text, "chunk_index": index,
                "end_of_segment": chunk.last}
        if chunk.last:
            meta.update(tts_s=round(time.perf_counter() - started, 4),
                        tts_audio_s=round(samples / synth.sample_rate, 4))
        if index == 0 and base["segment_index"] == 0 and chunk.audio.size:
            meta["t_first_audio"] = time.time()
        out.send(m.TTS_AUDIO, m.audio_array(chunk.audio), meta)
    if index < 0:
        out.send(m.TTS_AUDIO, m.audio_array(_EMPTY), {
            **base, "event": m.SEGMENT, "text": text, "chunk_index": 0, "end_of_segment": True,
            "tts_s": round(time.perf_counter() - started, 4), "tts_audio_s": 0.0})


def main() -> None:
    from dora import Node

    s = start(NAME)
    try:
        synth = Synthesizer(TtsConfig.from_settings(s))
    except ModelNotFound as exc:
        fail(NAME, str(exc))
    synth.warm_up()
    release_memory()
    log.info("Piper voice ready (%d Hz)", synth.sample_rate)
    run(Node(), s, synth)


if __name__ == "__main__":
    main()
