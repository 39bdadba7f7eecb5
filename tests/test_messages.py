"""The message contract as code: every output round-trips, and broken messages are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from pipeline import messages as m

TONE = np.linspace(-0.5, 0.5, 320, dtype=np.float32)

EXAMPLES: list[m.Message] = [
    m.MicAudio(samples=TONE, capture_time=12.5, seq=3),
    m.SpeechStarted(turn_id=m.user_turn(2), t_speech_start=1.0),
    m.Utterance(turn_id=2000, samples=TONE, t_speech_start=1.0, t_speech_end=2.0,
                t_utterance=2.1, final=False, same_as_tentative=False),
    m.Duck(turn_id=3000, on=True, t=4.5),
    m.Probe(turn_id=3000, samples=TONE, t_speech_start=4.4, t_speech_end=4.8),
    m.ProbeText(turn_id=3000, text="Yeah.", t_probe=4.9, asr_s=0.12),
    m.Transcript(turn_id=2000, text="what time is it", final=True,
                 times={"t_speech_end": 2.0, "t_transcript": 2.3, "asr_s": 0.2}),
    m.TextEnd(turn_id=2000, text="Who discovered?", p=0.0042, scorer_s=0.05),
    m.LlmText(turn_id=2000, event=m.DELTA, index=0, text="It is", times={"t_first_token": 2.5}),
    m.LlmText(turn_id=2000, event=m.END, index=4, reason=m.REASON_ERROR, error="timeout"),
    m.LlmReady(endpoint="embedded"),
    m.ServerReady(base_url="http://127.0.0.1:18080/v1", embedded=True),
    m.ServerAlive(t=7.5),
    m.Segment(turn_id=2000, event=m.SEGMENT, segment_index=1, text="Sure.", resent=True),
    m.TtsAudio(turn_id=2000, event=m.SEGMENT, segment_index=0, sample_rate=22050, samples=TONE,
               chunk_index=2, end_of_segment=False, text="Sure.", times={"tts_s": 0.05}),
    m.TtsReady(restart=True),
    m.Played(turn_id=2000, event=m.INTERRUPTED, segment_index=1, t=5.0, text="Sure.",
             played_s=0.4, times={"t_first_played": 4.0}),
    m.Reference(event=m.DELAY, t_start=3.0, delay_s=0.02),
    m.DeviceFault("failed: the stream stopped", active=True, t=8.0),
]


def _equal(a: m.Message, b: m.Message) -> bool:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda x: type(x).__name__)
def test_every_output_round_trips(msg: m.Message) -> None:
    value, meta = msg.to_dora()
    assert isinstance(value, pa.Array)
    assert all(isinstance(v, (bool, int, float, str)) for v in meta.values())
    back = type(msg).from_dora(value, meta)
    assert _equal(msg, back)


def test_every_class_is_an_example_and_has_an_output_id() -> None:
    assert {type(x) for x in EXAMPLES} == set(m.ALL)
    assert all(cls.OUTPUT for cls in m.ALL)


def test_a_missing_required_key_is_a_contract_error() -> None:
    value, meta = m.Segment(turn_id=1000, event=m.SEGMENT, segment_index=0, text="Hi.").to_dora()
    del meta["segment_index"]
    with pytest.raises(m.ContractError, match="segment_index"):
        m.Segment.from_dora(value, meta)


def test_a_mistyped_key_is_a_contract_error() -> None:
    value, meta = m.Played(turn_id=1000, event=m.STARTED, segment_index=0, t=1.0).to_dora()
    meta["t"] = "soon"
    with pytest.raises(m.ContractError, match="Played.t"):
        m.Played.from_dora(value, meta)


def test_times_are_flat_metadata_and_come_back_apart_from_fields() -> None:
    value, meta = m.Played(turn_id=1000, event=m.FINISHED, segment_index=0, t=9.0, played_s=1.5,
                           times={"t_speech_end": 1.0, "asr_s": 0.1}).to_dora()
    assert meta["t_speech_end"] == 1.0 and meta["asr_s"] == 0.1 and meta["played_s"] == 1.5
    back = m.Played.from_dora(value, meta)
    assert back.times == {"t_speech_end": 1.0, "asr_s": 0.1}  # played_s is a field, not a time


def test_int16_audio_is_read_as_float() -> None:
    pcm = pa.array(np.array([0, 16384, -32767], dtype=np.int16))
    msg = m.MicAudio.from_dora(pcm, {"capture_time": 1.0})
    assert msg.samples.dtype == np.float32
    np.testing.assert_allclose(msg.samples, [0.0, 0.5, -1.0], atol=1e-4)


def test_assistant_turns_sort_between_user_turns() -> None:
    first = m.user_turn(3)
    ring = m.assistant_turn(first)
    again = m.assistant_turn(ring)
    assert first < ring < again < m.user_turn(4)
    assert m.is_user_turn(first) and not m.is_user_turn(ring)
    with pytest.raises(ValueError):
        m.assistant_turn(m.user_turn(4) - 1)
