"""How much of an answer is heard when the speaker's device comes back (PulseAudio card).

Each round: the speaker stream plays, its null sink is removed and its stream killed (an
unplugged card), the sink comes back, the speaker reopens it and at once queues a 2.5 s
tone; `parecord` on the sink's monitor says how much of the tone is heard. Rounds alternate
the underflow-storm guard of `SpeakerStream._callback` on and off, so both are measured side
by side under the same conditions.

    python -m tests.bench_speaker_reopen --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from pipeline.audio_io.sinks import SpeakerStream
from tests.live import REC_RATE, Recorder
from tests.pulse import kill_streams, remove_null_sink, restore_sound_card

RATE = 22050
TONE_S = 2.5


def heard_s(audio: np.ndarray) -> float:
    """Seconds of 20 ms frames of the recording (floats, as `Recorder.stop` gives them)
    above -26 dBFS (the tone is at -8 dBFS)."""
    frame = REC_RATE // 50
    n = audio.size // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    return float(np.count_nonzero(rms > 0.05)) * frame / REC_RATE


def one_round(guard: bool) -> tuple[float, int]:
    """(seconds of the tone heard, underflows reported) after one device comeback."""
    speaker = SpeakerStream().start()
    if not guard:
        speaker.UNDERFLOW_GRACE_S, speaker.UNDERFLOW_PACE = 0.0, float("inf")
    try:
        time.sleep(0.5)
        remove_null_sink("speaker")
        kill_streams("sink-input", {os.getpid()})
        restore_sound_card()
        rec = Recorder()
        rec.wait_started()
        speaker.reopen()  # what the speaker stage does when the next audio finds it gone
        t = np.arange(int(TONE_S * RATE)) / RATE
        speaker.add(1, 0, (0.4 * np.sin(2 * np.pi * 500.0 * t)).astype(np.float32), RATE,
                    "tone", last=True)
        time.sleep(TONE_S + 2.5)
        return heard_s(rec.stop()), speaker.underflows
    finally:
        speaker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds with each setting")
    args = parser.parse_args()
    restore_sound_card()
    results: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
    for k in range(2 * args.rounds):
        guard = k % 2 == 0
        got = one_round(guard)
        results[guard].append(got)
        print(f"round {k // 2 + 1} guard {'on ' if guard else 'off'}: heard {got[0]:.2f} of "
              f"{TONE_S} s, {got[1]} underflows", flush=True)
    restore_sound_card()
    print("\n| storm guard | tone heard, median (min-max) | rounds heard whole |")
    print("|---|---|---|")
    for guard in (False, True):
        heard = [h for h, _ in results[guard]]
        whole = sum(h >= TONE_S - 0.1 for h in heard)
        print(f"| {'on' if guard else 'off'} | {statistics.median(heard):.2f} s "
              f"({min(heard):.2f}-{max(heard):.2f}) | {whole}/{len(heard)} |")


if __name__ == "__main__":
    main()
