"""The live view's own CPU cost, without the dataflow: a scripted conversation is replayed
in real time into a Hub served by ViewServer, with the page open in headless chromium.

Reported: CPU seconds used by chromium (all its processes, from /proc) and by this process
(the view's state, encoding and pushing; the replay loop itself is small) during the
replay, and the updates pushed to the page. Events follow the rates of the real dataflow:
a microphone chunk every 20 ms (the node's MicMeter turns them into levels), LLM deltas at
~40 tokens/s, a segment and its playback per sentence.

Usage: ``python -m tests.bench_view [--turns 4]``. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from nodes.view import MicMeter
from pipeline.view.server import Hub, ServerConfig, ViewServer
from pipeline.view.state import (
    Endpointed,
    Event,
    LlmDelta,
    LlmEnd,
    Played,
    SegmentSent,
    SpeechStarted,
    Transcript,
    ViewState,
)
from tests.bench import watching

ANSWER = ("Sure. The capital of France is Paris, a city on the Seine known for the Eiffel "
          "Tower, the Louvre and its cafes. It has been the capital for most of the last "
          "thousand years. About two million people live in the city itself, and more than "
          "twelve million in the wider region around it. ") * 2
MIC_CHUNK_S = 0.02
TOKEN_S = 0.025
SPEECH_S = 1.5
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def script(turn: int, t0: float) -> list[tuple[float, Event]]:
    """(offset in s, event) of one turn: speech, transcript, streamed answer, playback."""
    times = {"t_speech_end": t0 + SPEECH_S}
    ev: list[tuple[float, Event]] = [(0.0, SpeechStarted(turn, t0))]
    at = SPEECH_S + 0.1
    ev.append((at, Endpointed(turn, True, times)))
    at += 0.2
    ev.append((at, Transcript(turn, "What is the capital of France?", True, times)))
    words = ANSWER.split(" ")
    sentence: list[str] = []
    seg = 0
    play_at = at + 0.6
    for i, w in enumerate(words):
        at += TOKEN_S
        ev.append((at, LlmDelta(turn, w + " ", i, times)))
        sentence.append(w)
        if w.endswith("."):
            text = " ".join(sentence)
            ev.append((at, SegmentSent(turn, seg, text, times)))
            start = max(play_at, at + 0.15)
            played = {**times, "t_first_played": t0 + play_at}
            ev.append((start, Played(turn, "started", seg, text, t0 + start, played)))
            play_at = start + 0.06 * len(text.split())
            ev.append((play_at, Played(turn, "finished", seg, text, t0 + play_at, played)))
            seg, sentence = seg + 1, []
    ev.append((at, LlmEnd(turn, "stop", "", times)))
    ev.append((play_at, Played(turn, "turn_end", seg, "", t0 + play_at, {})))
    return sorted(ev, key=lambda e: e[0])


def replay(hub: Hub, turns: int, gap_s: float) -> None:
    """Plays `turns` turns in real time, with the microphone running throughout."""
    meter = MicMeter()
    start = time.time()
    events: list[tuple[float, Event]] = []
    offset = 0.5
    for turn in range(1, turns + 1):
        t = script(turn, start + offset)
        events += [(offset + dt, e) for dt, e in t]
        offset += t[-1][0] + gap_s
    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 0.003, 320).astype(np.float32)
    loud = rng.normal(0, 0.2, 320).astype(np.float32)
    chunk_at, i, next_tick = 0.0, 0, 0.5
    while chunk_at < offset:
        now_rel = time.time() - start
        if now_rel < chunk_at:
            time.sleep(chunk_at - now_rel)
        while i < len(events) and events[i][0] <= chunk_at:
            hub.apply(events[i][1])
            i += 1
        speaking = int(chunk_at * 3) % 2 == 0  # sound on the mic (speech or echo) half the time
        for item in meter.feed(loud if speaking else quiet, start + chunk_at):
            hub.apply(item)
        if chunk_at >= next_tick:
            hub.tick(start + chunk_at)
            next_tick += 0.5
        chunk_at += MIC_CHUNK_S


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--gap", type=float, default=3.0, help="silence between turns, s")
    ap.add_argument("--no-page", action="store_true", help="no browser: the view's side only")
    args = ap.parse_args()
    hub = Hub(ViewState())
    server = ViewServer(hub, ServerConfig("127.0.0.1", 0)).start()
    counted: list[int] = [0]
    _snap, q = hub.subscribe()  # counts what a page receives

    def count() -> None:
        while (item := q.get()) is not None and isinstance(item, str):
            counted[0] += 1

    threading.Thread(target=count, daemon=True).start()
    try:
        if args.no_page:
            me0, t0 = time.process_time(), time.time()
            replay(hub, args.turns, args.gap)
            me, wall, browser = time.process_time() - me0, time.time() - t0, None
        else:
            with watching(server.url()) as page:
                pids = descendants(page.proc.pid)
                c0, me0, t0 = cpu_s(pids), time.process_time(), time.time()
                replay(hub, args.turns, args.gap)
                time.sleep(0.5)  # the last updates rendered
                pids = descendants(page.proc.pid)
                browser = cpu_s(pids) - c0
                me, wall = time.process_time() - me0, time.time() - t0
    finally:
        hub.unsubscribe(q)
        q.put(None)
        server.stop()
    print(f"{args.turns} turns in {wall:.1f} s, {os.cpu_count()} cores; updates pushed: {counted[0]}")
    print(f"view (this process): {me:.2f} s CPU = {me / wall * 100:.1f} % of a core")
    if browser is not None:
        print(f"chromium: {browser:.2f} s CPU = {browser / wall * 100:.1f} % of a core "
              f"({browser / args.turns:.2f} s per turn)")


if __name__ == "__main__":
    main()
