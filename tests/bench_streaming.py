"""Benchmark: streaming vs buffered, through the whole dataflow in file mode.

For each LLM server (the embedded SmolLM2 server and a scripted server with fixed token
timing) and each mode (ENABLE_STREAMING true/false), one `dora run` answers a WAV with short
and long questions, several times each. Reported per (server, answer length, mode), medians
from the end of the user's question (VAD end of speech):

* first audio: first audio sample synthesized (t_first_audio)
* answer synthesized: the last segment synthesized (t_tts_done)
* first token, and whether the first audio was synthesized before the LLM had finished

Run: `.venv/bin/python -m tests.bench_streaming [--reps 3]` (a few minutes). Not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

from pipeline.filemode import run_file_mode
from tests.conftest import _speech_16k
from tests.scripted_server import Script, ScriptedServer

SHORT_Q = "What is the capital of France?"
LONG_Q = "Tell me a long story about a brave knight and a dragon."
SHORT_A = "The capital of France is Paris, a city on the Seine."
LONG_A = (
    "Once upon a time, a brave knight named Rowan rode out to face a dragon that had burned three "
    "villages. He carried an old shield, a sharp sword and a loaf of bread. At the mountain, the "
    "dragon laughed at him, so Rowan offered it the bread instead of a fight. The dragon had never "
    "been given a gift before. It wept, and from that day on it guarded the valley it had once burned."
)


def question_wav(folder: Path, reps: int) -> Path:
    import numpy as np

    from pipeline.audio import write_wav

    gap = np.zeros(int(9.0 * 16000), dtype=np.float32)
    parts = [np.zeros(4800, dtype=np.float32)]
    for _ in range(reps):
        for q in (SHORT_Q, LONG_Q):
            parts += [np.asarray(_speech_16k(q)), gap]
    path = folder / "questions.wav"
    write_wav(path, np.concatenate(parts), 16000)
    return path


def scripted_answer(messages: list[dict]) -> str:
    return LONG_A if "story" in messages[-1]["content"].lower() else SHORT_A


def summarise(turns: list[dict]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, list[float]]] = {}
    for t in turns:
        heard = set(t["transcript"].lower().replace(".", " ").replace(",", " ").split())
        kind = "long" if heard & {"story", "knight", "dragon", "brave", "long"} else "short"
        times = t["times"]
        if "t_first_audio" not in times or "t_speech_end" not in times:
            continue
        end = times["t_speech_end"]
        row = rows.setdefault(kind, {"first_audio": [], "answer_synth": [], "first_token": [],
                                     "words": [], "before_llm_done": []})
        row["first_audio"].append(times["t_first_audio"] - end)
        row["answer_synth"].append(times.get("t_tts_done", float("nan")) - end)
        row["first_token"].append(times.get("t_first_token", float("nan")) - end)
        row["words"].append(len(t["answer"].split()))
        row["before_llm_done"].append(float(times["t_first_audio"] < times.get("t_llm_done", 0)))
    return {k: {name: statistics.median(v) for name, v in row.items()} | {"n": len(row["first_audio"])}
            for k, row in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--servers", default="scripted,embedded")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    wav = question_wav(work, args.reps)
    results = []
    for server in args.servers.split(","):
        for streaming in ("true", "false"):
            env = {"ENABLE_STREAMING": streaming, "LLM_MAX_TOKENS": "160", "MIC_FILE_TAIL_S": "9"}
            if server == "scripted":
                srv = ScriptedServer(Script(answer_fn=scripted_answer, first_token_delay_s=0.15,
                                            token_delay_s=0.03)).__enter__()
                env["OPENAI_BASE_URL"] = srv.base_url
            run = run_file_mode(wav, env=env, workdir=work / f"{server}-{streaming}", timeout_s=900)
            if server == "scripted":
                srv.close()
            for kind, row in sorted(summarise(run.turns).items()):
                results.append((server, kind, "streaming" if streaming == "true" else "buffered", row))
                print(server, kind, streaming, {k: round(v, 3) for k, v in row.items()}, flush=True)
    print(f"\nMachine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    print("\n| server | answer | mode | words | first token | first audio | answer synthesized | first audio before LLM done | n |")
    print("|---|---|---|---|---|---|---|---|---|")
    for server, kind, mode, row in results:
        print(f"| {server} | {kind} | {mode} | {row['words']:.0f} | {row['first_token']:.2f} s | "
              f"{row['first_audio']:.2f} s | {row['answer_synth']:.2f} s | {row['before_llm_done']:.0%} | {row['n']} |")
    print("\n| server | answer | first audio, streaming / buffered |")
    print("|---|---|---|")
    table = {(s, k, m): r for s, k, m, r in results}
    for server in args.servers.split(","):
        for kind in ("short", "long"):
            a, b = table.get((server, kind, "streaming")), table.get((server, kind, "buffered"))
            if a and b:
                print(f"| {server} | {kind} | {a['first_audio'] / b['first_audio']:.0%} |")


if __name__ == "__main__":
    main()
