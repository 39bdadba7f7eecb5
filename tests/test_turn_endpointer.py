"""The end-of-turn policy inside the Endpointer and the VadStage (scripted probabilities)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline import messages as m
from pipeline.stages.vad import VadStage, VadStageConfig
from pipeline.turn.policy import EndOfTurn, PolicyConfig
from pipeline.vad import EndpointConfig, Endpointer, SpeechStarted, Utterance

FRAME = 512
FRAME_S = FRAME / 16000
T0 = 1_700_000_000.0
SPEC = EndpointConfig(speculate_ms=64)
POLICY = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984)

# 1 s of speech, a 1.28 s pause ("What is the capital of ... "), 0.6 s of speech, silence.
HALF, PAUSE, REST = 31, 40, 19
PROBS = [0.0] * 5 + [0.9] * HALF + [0.0] * PAUSE + [0.9] * REST + [0.0] * 80
RESUME = 5 + HALF + PAUSE  # index of the first frame of the second half


class ScriptedProbs:
    """A VAD whose speech probabilities are PROBS, one per frame."""

    def __init__(self) -> None:
        self.k = 0

    def prob(self, frame: np.ndarray) -> float:
        self.k += 1
        return PROBS[self.k - 1]

    def reset(self) -> None:
        self.k = 0


class Scripted:
    """A turn model that answers from a list, one probability per call."""

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)
        self.audio_sizes: list[int] = []

    def __call__(self, audio: np.ndarray) -> float:
        self.audio_sizes.append(audio.size)
        return self.answers.pop(0)


def run(ep: Endpointer, transcripts: dict[int, str] | None = None) -> list[tuple[int, object]]:
    """Feed PROBS; at frame k, hand in transcripts[k] for the current turn."""
    out: list[tuple[int, object]] = []
    for k, p in enumerate(PROBS):
        if transcripts and k in transcripts:
            ep.transcript(ep.turn_id, transcripts[k])
        frame = np.full(FRAME, 0.1, dtype=np.float32)
        out.extend((k, e) for e in ep.process(frame, p, T0 + k * FRAME_S))
    return out


def finals(events: list[tuple[int, object]]) -> list[tuple[int, Utterance]]:
    return [(k, e) for k, e in events if isinstance(e, Utterance) and e.final]


def test_fixed_silence_answers_half_the_question() -> None:
    events = run(Endpointer(SPEC))
    assert [k for k, _ in finals(events)][0] < RESUME  # the baseline's premature endpoint


def test_an_incomplete_verdict_waits_out_the_pause() -> None:
    model = Scripted(0.1, 0.9)
    model_only = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984, use_cues=False)
    events = run(Endpointer(SPEC, end_of_turn=EndOfTurn(model_only, model)))
    (k, utt), = finals(events)
    assert k > RESUME
    assert utt.duration_s > (HALF + PAUSE + REST) * FRAME_S  # the whole question
    started = [e for _, e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 2  # the pause's tentative answer is dropped with its turn
    assert utt.turn_id == started[1].turn_id
    # ended at check_ms after the second half: 8 frames of silence
    assert k == RESUME + REST + 8 - 1
    assert len(model.audio_sizes) == 2


def test_an_incomplete_transcript_outweighs_a_complete_model() -> None:
    tentative_at = 5 + HALF + 2  # speculate_ms=64: the tentative utterance's frame
    events = run(Endpointer(SPEC, end_of_turn=EndOfTurn(POLICY, Scripted(0.9, 0.9))),
                 transcripts={tentative_at + 4: "What is the capital of?"})
    (k, _), = finals(events)
    assert k > RESUME


def test_a_stale_transcript_is_ignored() -> None:
    ep = Endpointer(SPEC, end_of_turn=EndOfTurn(POLICY, Scripted(0.9, 0.9)))
    ep.transcript(m.user_turn(1), "Tell me a joke.")  # no turn in progress
    events = run(ep)
    # not taken for the pause's transcript, which is waited for: the half does not end it
    assert [k for k, _ in finals(events)][0] > RESUME


def test_a_slow_transcript_of_the_pause_is_waited_for() -> None:
    """Whisper takes 640 ms (busy cores), more than the 512 ms end silence: the endpointer
    told the policy a transcript is coming, so the half question does not end the turn."""
    tentative_at = 5 + HALF + 2
    cues = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984, use_model=False)
    events = run(Endpointer(SPEC, end_of_turn=EndOfTurn(cues)),
                 transcripts={tentative_at + 20: "What is the capital of"})
    (k, utt), = finals(events)
    assert k > RESUME and utt.duration_s > (HALF + PAUSE + REST) * FRAME_S
    # without speculation no transcript comes: the end silence ends the pause as before
    events = run(Endpointer(EndpointConfig(), end_of_turn=EndOfTurn(cues)))
    assert [k for k, _ in finals(events)][0] < RESUME


def whole_turns_through(stage: VadStage,
                        heard: Callable[[int, int], list[m.Message]]) -> list[bool]:
    """PROBS through `stage`, handing it before frame k what `heard(k, current turn id)`
    gives (the asr's messages); per final utterance, whether it holds both halves."""
    out: list[m.Message] = []
    for k in range(len(PROBS)):
        for msg in heard(k, stage.vad.endpointer.turn_id):
            out += stage.handle(msg)
        out += stage.handle(m.MicAudio(samples=np.zeros(FRAME, np.float32), sample_rate=16000,
                                       capture_time=T0 + k * FRAME_S, seq=k))
    return [u.duration_s > (HALF + PAUSE) * FRAME_S for u in out
            if isinstance(u, Utterance) and u.final]


IN_PAUSE = 5 + HALF + 6  # a frame in the pause, after the check


def test_the_stage_feeds_tentative_transcripts_to_the_policy() -> None:
    config = VadStageConfig(endpoint=SPEC, end_of_turn=POLICY)
    stage = VadStage(config, ScriptedProbs(), turn_model=Scripted(0.9, 0.9))
    assert whole_turns_through(stage, lambda k, turn: [
        m.Transcript(turn_id=turn, text="What is the capital of", final=False)
    ] if k == IN_PAUSE else []) == [True]


def test_settings_choose_the_policy() -> None:
    from pipeline.settings import load

    config = VadStageConfig.from_settings(load({}))  # the default: the transcript cues alone
    assert config.end_of_turn is not None and not config.end_of_turn.use_model
    model = VadStageConfig.from_settings(load({"TURN_MODEL": "true"}))
    assert model.end_of_turn is not None and model.end_of_turn.use_model
    off = VadStageConfig.from_settings(load({"TURN_MODEL": "false", "TURN_CUES": "false"}))
    assert off.end_of_turn is None
    cues = VadStageConfig.from_settings(load({"TURN_MODEL": "false", "TURN_DISAGREE_MS": "9999"}))
    assert cues.end_of_turn is not None and not cues.end_of_turn.use_model
    assert cues.end_of_turn.disagree_ms == cues.end_of_turn.max_pause_ms


def test_the_stage_hands_whisper_s_doubt_about_the_ending_to_the_policy() -> None:
    """"Can you tell me about the" heard as "...about that?" (last word unlikely): the pause
    waits as an unsure one instead of ending at the check, and the user's second half joins
    the turn; the same transcript heard with confidence ends it at once."""
    def whole_turns(word_p: float) -> list[bool]:
        cues = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984, use_model=False,
                            unsure_ms=1984, min_word_p=0.8)
        stage = VadStage(VadStageConfig(endpoint=SPEC, end_of_turn=cues), ScriptedProbs())
        return whole_turns_through(stage, lambda k, turn: [
            m.Transcript(turn, "Can you tell me about that?", False, last_word_p=word_p,
                         end_mark_p=0.9)
        ] if k == IN_PAUSE else [])

    assert whole_turns(0.41) == [True]
    assert whole_turns(0.99)[0] is False  # confident: the half ends the turn at the check


def test_the_stage_hands_the_sentence_end_score_to_the_policy() -> None:
    """"Who discovered ... penicillin?" heard in the pause as "Who discovered?" with a low
    sentence-end score (the asr's language model, a TextEnd after the transcript, or before
    it): the pause waits and the second half joins the turn; scored high, or not scored
    (-1), the "?" ends the turn at the check."""
    def whole_turns(text_end_p: float | None, score_first: bool = False,
                    text: str = "Who discovered?") -> list[bool]:
        cues = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984, use_model=False,
                            unsure_ms=1984, text_end_p=0.05)
        stage = VadStage(VadStageConfig(endpoint=SPEC, end_of_turn=cues, text_end=True),
                         ScriptedProbs())

        def heard(k: int, turn: int) -> list[m.Message]:
            said = m.Transcript(turn, text, False)
            score = m.TextEnd(turn, text, text_end_p) if text_end_p is not None else said
            first, second = (score, said) if score_first else (said, score)
            return [first] if k == IN_PAUSE else [second] if k == IN_PAUSE + 1 else []

        return whole_turns_through(stage, heard)

    assert whole_turns(0.004) == [True]
    assert whole_turns(0.004, score_first=True) == [True]
    assert whole_turns(0.4)[0] is False
    assert whole_turns(-1.0)[0] is False
    # the transcript alone (its score never comes) does not end the pause at the check:
    # it is held for its score, and the policy waits for it as for a transcript on its way
    assert whole_turns(None, text="What time is it?") == [True]
    assert whole_turns(0.9, text="What time is it?")[0] is False


def test_settings_turn_the_score_wait_on_with_the_text_model() -> None:
    from pipeline.settings import load

    assert VadStageConfig.from_settings(load({})).text_end is True
    assert VadStageConfig.from_settings(load({"TURN_TEXT_MODEL": "false"})).text_end is False
    assert VadStageConfig.from_settings(load({"TURN_CUES": "false"})).text_end is False


def test_a_question_over_the_answer_ends_its_turn_on_the_probe_s_text() -> None:
    """Speech over the answer goes to ASR as a probe, not as a tentative utterance: its text
    is the pause's transcript, so "What time is it?" ends the turn at the check instead of
    waiting (up to TURN_UNSURE_MS) for a transcript that never comes."""
    from pipeline.turn.backchannel import GateConfig
    from tests.test_vad_stage import FakeCanceller, LoudIsSpeech, blocks, speech

    cues = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984, use_model=False)
    config = VadStageConfig(endpoint=SPEC, backchannels=GateConfig(max_ms=700), end_of_turn=cues)
    stage = VadStage(config, LoudIsSpeech(), FakeCanceller(playing=True))
    mic = blocks(speech(voice_s=0.4, tail_s=2.5))
    ended = None
    for block in mic:
        for msg in stage.handle(block):
            if isinstance(msg, m.Probe):
                stage.handle(m.ProbeText(msg.turn_id, "What time is it?"))
            if isinstance(msg, Utterance) and msg.final:
                ended = block.capture_time - msg.t_speech_end
    assert ended is not None and ended < 0.5
