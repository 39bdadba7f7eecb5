"""`make demo`: the bundled spoken question through the whole chain, WAV in, WAV out.

Prints what the assistant heard, what it answered, and how long each stage took; the way to
show the assistant on a machine without a sound card. The live view's page of the
conversation is left next to the answer (VIEW_EXPORT) as one HTML file to open or share.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.filemode import BUNDLED_QUESTION, FileRun, run_file_mode
from pipeline.models import REPO_ROOT

PAGE = "conversation.html"


def run_demo(question: Path | str, out: Path) -> tuple[FileRun, Path]:
    """One file-mode run into `out`; returns it and the path of the saved page (VIEW_EXPORT,
    the user's own if set, else `out`/conversation.html)."""
    page = Path(os.environ.get("VIEW_EXPORT") or out / PAGE)
    page.unlink(missing_ok=True)  # a page left by an earlier run is not this run's
    return run_file_mode(question, env={"VIEW_EXPORT": str(page)}, workdir=out), page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("question", nargs="?", default=str(BUNDLED_QUESTION), help="WAV file with a spoken question")
    ap.add_argument("--out", default=str(REPO_ROOT / "out" / "demo"), help="folder for answer.wav, metrics and the page")
    args = ap.parse_args(argv)
    print(f"Speaking {args.question} into the assistant (file mode, embedded models)...", flush=True)
    result, page = run_demo(args.question, Path(args.out))
    if result.returncode != 0 or not result.turns:
        print(result.log[-4000:], file=sys.stderr)
        print(f"demo failed (dora exit {result.returncode}, {len(result.turns)} turns)", file=sys.stderr)
        return 1
    for turn in result.turns:
        print(f"\nYou said:       {turn['transcript']}")
        print(f"Assistant said: {turn['answer']}")
        print("Stage times:")
        for name, seconds in turn["durations"].items():
            print(f"  {name:<15} {seconds * 1000:8.0f} ms")
    print(f"\nThe spoken answer is in {result.output_wav} ({result.wall_s:.1f} s for the whole run)")
    if page.exists():  # not with VIEW=false
        print(f"The conversation as a web page: {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
