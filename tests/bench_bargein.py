"""Benchmark: barge-in latency through the virtual sound card.

The assistant is made to speak a long answer (scripted server); the user interrupts N times.
Two recorders run side by side: `uservoice.monitor` (what the microphone hears) gives the
wall time of the interruption's first voiced sample, `speaker.monitor` gives the time the
assistant went quiet. Reported: median and max of (quiet - first voiced sample), and whether
each interruption was answered. Run: `.venv/bin/python -m tests.bench_bargein [--n 5]`.

`--at 0.3 --rest 6` interrupts 0.3 s into each answer instead of 1.5 s, after 6 s without
one, so that every answer starts with its echo path not yet judged (a short "Stop." in
the first second of an answer; see docs/echo-and-turn-taking.md). An interruption that is
not heard leaves the long answer playing, so the rounds after it do not start fresh.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.conftest import _speech_16k, words
from tests.live import LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import answer_for, loud_blocks, silence_after, wait_for_sound


def onset_after(audio: np.ndarray, t0: float, t: float) -> float | None:
    loud = loud_blocks(audio)
    start = max(0, int((t - t0) * 100))
    hits = np.nonzero(loud[start:])[0]
    return None if hits.size == 0 else t0 + (start + hits[0]) / 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--at", type=float, default=1.5, help="seconds into the answer")
    ap.add_argument("--rest", type=float, default=0.0, help="seconds of quiet before each round")
    ap.add_argument("--say", default="What time is it?", help="the interruption")
    args = ap.parse_args()
    import subprocess

    subprocess.run(["bash", str(Path(__file__).parent.parent / ".ci" / "pulse-setup.sh")], check=True)
    from pipeline.audio import write_wav

    work = Path(tempfile.mkdtemp(prefix="bargein-"))
    q_long = work / "long.wav"
    write_wav(q_long, np.concatenate([np.zeros(3200, np.float32), _speech_16k("Tell me a long story about bread.")]), 16000)
    q_int = work / "int.wav"
    write_wav(q_int, np.asarray(_speech_16k(args.say)), 16000)
    latencies = []
    missed = 0  # interruptions that stopped nothing within 15 s
    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(work, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        for i in range(args.n):
            time.sleep(args.rest)
            spk, mic = Recorder("speaker.monitor"), Recorder("uservoice.monitor")
            play(q_long)
            wait_for_sound(spk)
            time.sleep(args.at)
            t_play = time.time()
            play(q_int)
            deadline = time.monotonic() + 15.0
            while assistant.log().count("barge-in: stopped") <= i and time.monotonic() < deadline:
                time.sleep(0.1)
            stopped = assistant.log().count("barge-in: stopped") > i
            time.sleep(4.0)  # let the short answer (if any) finish
            a_spk, a_mic = spk.stop(), mic.stop()
            onset = onset_after(a_mic, mic.first_t or t_play, t_play)
            quiet = silence_after(a_spk, spk.first_t or t_play, t_play)
            if not stopped:
                missed += 1
                print(f"interruption {i + 1}: not heard", flush=True)
            elif onset and quiet:
                latencies.append(quiet - onset)
                print(f"interruption {i + 1}: silent {1000 * (quiet - onset):.0f} ms after the first voiced sample", flush=True)
        turns = assistant.turns()
    heard = sum(1 for t in turns if words(args.say) & words(t["transcript"]))
    print(f"\nbarge-in: median {1000 * statistics.median(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms "
          f"over {len(latencies)} interruptions; not heard (the answer played on): {missed}; "
          f"interruptions with a turn of their own: {heard}/{args.n}")


if __name__ == "__main__":
    main()
