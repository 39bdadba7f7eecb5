"""Benchmark: what the listener hears when the user talks over an answer (virtual sound card).

For each of N rounds the assistant speaks a long answer (scripted server) and the user says
a backchannel over it ("Yeah.", "Mm-hmm.", "Okay.", ...), then, in another round, a real
interruption ("Stop. What is the capital of Spain?"). Two recorders run side by side:
`uservoice.monitor` gives the wall time of the user's first voiced sample, `speaker.monitor`
what the assistant played. Reported per round: onset -> duck (the answer's level falls to a
third of what it was before the onset), for a backchannel onset -> back to full volume and
whether the answer went on, for an interruption onset -> silence.
Run: `.venv/bin/python -m tests.bench_backchannel [--n 3]` (with BACKCHANNELS=false for the old
behaviour).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.audio import write_wav
from tests.bench_bargein import onset_after
from tests.conftest import _speech_16k
from tests.live import REC_RATE, LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import answer_for, silence_after, wait_for_sound

BACKCHANNELS = ["Yeah.", "Mm-hmm.", "Okay.", "Uh-huh.", "Right.", "I see."]
INTERRUPTION = "Stop. What is the capital of Spain?"
WINDOW = REC_RATE // 20  # 50 ms


def levels(audio: np.ndarray) -> np.ndarray:
    """RMS of each 50 ms window."""
    n = audio.size // WINDOW * WINDOW
    return np.sqrt(np.mean(audio[:n].reshape(-1, WINDOW) ** 2, axis=1))


def duck_and_resume(audio: np.ndarray, t0: float, onset: float) -> tuple[float | None, float | None]:
    """When the level fell (and stayed 150 ms) under a third of the second before the onset,
    and when it came back above half of it."""
    lv = levels(audio)
    i0 = int((onset - t0) * 20)
    before = lv[max(0, i0 - 20):i0]
    ref = float(np.median(before[before > 0.005])) if np.any(before > 0.005) else 0.0
    if ref == 0.0:
        return None, None
    duck = next((i for i in range(i0, lv.size - 3) if np.all(lv[i:i + 3] < ref / 3)), None)
    if duck is None:
        return None, None
    back = next((i for i in range(duck + 3, lv.size) if lv[i] > ref / 2), None)
    return t0 + duck / 20, None if back is None else t0 + back / 20


def wav(folder: Path, text: str) -> Path:
    path = folder / f"{abs(hash(text))}.wav"
    write_wav(path, np.asarray(_speech_16k(text)), 16000)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["bash", str(Path(__file__).parent.parent / ".ci" / "pulse-setup.sh")], check=True)
    work = Path(tempfile.mkdtemp(prefix="backchannel-"))
    ask = work / "ask.wav"
    write_wav(ask, np.concatenate([np.zeros(3200, np.float32), _speech_16k("Tell me a long story about bread.")]), 16000)
    rounds = [(BACKCHANNELS[i % len(BACKCHANNELS)], True) for i in range(args.n)] + [(INTERRUPTION, False)] * args.n
    ducks, resumes, stops = [], [], []
    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(work, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        playing = False  # the story of the last round still plays (after a backchannel)
        for said, backchannel in rounds:
            spk, mic = Recorder("speaker.monitor"), Recorder("uservoice.monitor")
            n_turns = len(assistant.turns())
            play(ask)  # (interrupts the story still playing)
            if playing:
                assistant.wait_turns(n_turns + 1, timeout=60)
                time.sleep(1.5)
            wait_for_sound(spk)
            time.sleep(2.0)
            t_play = time.time()
            play(wav(work, said))
            time.sleep(3.0)
            a_spk, a_mic = spk.stop(), mic.stop()
            playing = backchannel
            onset = onset_after(a_mic, mic.first_t or t_play, t_play)
            if onset is None:
                continue
            t0 = spk.first_t or t_play
            duck, back = duck_and_resume(a_spk, t0, onset)
            if duck is not None:
                ducks.append(duck - onset)
            if backchannel:
                went_on = back is not None and silence_after(a_spk, t0, back) is None
                if back is not None:
                    resumes.append(back - onset)
                print(f"{said!r}: duck {_ms(duck, onset)}, full volume again {_ms(back, onset)}, "
                      f"answer went on: {went_on}", flush=True)
            else:
                quiet = silence_after(a_spk, t0, onset)
                if quiet is not None:
                    stops.append(quiet - onset)
                print(f"{said!r}: duck {_ms(duck, onset)}, silent {_ms(quiet, onset)}", flush=True)
                time.sleep(4.0)  # the short answer
        requests = [r["messages"][-1]["content"] for r in srv.script.requests]
    print(f"\nonset -> duck: {_summary(ducks)}; backchannel onset -> full volume: {_summary(resumes)}; "
          f"interruption onset -> silence: {_summary(stops)}")
    print(f"LLM requests for a backchannel: {sum(r.strip() in BACKCHANNELS for r in requests)}")


def _ms(t: float | None, onset: float) -> str:
    return "-" if t is None else f"{1000 * (t - onset):.0f} ms"


def _summary(xs: list[float]) -> str:
    if not xs:
        return "none"
    return f"median {1000 * statistics.median(xs):.0f} ms, max {1000 * max(xs):.0f} ms (n={len(xs)})"


if __name__ == "__main__":
    main()
