"""Run the README's bash blocks in order, as written, and print what each took.

    python benchmarks/readme.py --list                 # the blocks, numbered, with headings
    python benchmarks/readme.py --from 2 --to 9        # run blocks 2..9 in this folder
    python benchmarks/readme.py --only 3,8 --keep-going

Each block runs in one `bash -e` shell in the current folder (the demo store after
`make demo`), with `.venv/bin` first on the PATH as `source .venv/bin/activate` puts it;
```python blocks run with that Python. Blocks that need what a laptop lacks (Docker,
Kubernetes, a lab's PostgreSQL, `../shared` data) are listed with the reason and skipped
unless named with --only. Prints one line per block: number, heading, seconds, exit code.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Heading -> why its blocks are not run by default (they need more than the demo store).
NEEDS_MORE = {
    "Running on a cluster": "Docker, a registry and a Kubernetes cluster",
    "Users (`--auth`)": "a running `ser-mlflow server --auth` and its admin password",
    "Late fusion": "the AVEC 2019 data in ../shared (not in a clone); about 20 min",
    "Searching the loss weights": "hours of Optuna trials and a PostgreSQL server",
    "Interrupting and resuming": "the id of a run you interrupted",
    "Tracking server": "a long-running `ser-mlflow server` in another shell",
    "MLflow UI": "a long-running `ser-mlflow ui` in another shell",
}


def blocks(readme: Path) -> list[tuple[str, str, str]]:
    """(heading, language, code) of every ```bash / ```python block, in order."""
    out, heading = [], ""
    lines = readme.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = re.match(r"^\s*```(bash|python)\s*$", line)
        if m:
            indent = len(line) - len(line.lstrip())
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][indent:])
                i += 1
            out.append((heading, m.group(1), "\n".join(body) + "\n"))
        i += 1
    return out


def skip_reason(heading: str) -> str | None:
    for key, why in NEEDS_MORE.items():
        if heading.startswith(key):
            return why
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--from", dest="first", type=int, default=1)
    ap.add_argument("--to", dest="last", type=int, default=10_000)
    ap.add_argument("--only", default="", help="block numbers joined by ','")
    ap.add_argument("--keep-going", action="store_true")
    args = ap.parse_args()
    found = blocks(args.readme)
    only = {int(n) for n in args.only.split(",") if n.strip()}
    env = dict(os.environ)
    venv_bin = Path.cwd() / ".venv" / "bin"
    if venv_bin.is_dir():  # what `source .venv/bin/activate` does for commands
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    python = str(venv_bin / "python") if venv_bin.is_dir() else sys.executable
    failed = 0
    for n, (heading, lang, code) in enumerate(found, start=1):
        why = skip_reason(heading)
        if args.list:
            first = code.strip().splitlines()[0] if code.strip() else ""
            note = f"   (skip: {why})" if why else ""
            print(f"{n:>3} [{heading}] {lang}: {first[:70]}{note}")
            continue
        if only and n not in only or not only and not args.first <= n <= args.last:
            continue
        if why and n not in only:
            print(f"{n:>3} [{heading}] skipped: needs {why}", flush=True)
            continue
        if code.lstrip().startswith("make "):
            print(f"{n:>3} [{heading}] skipped: the make targets (run them first)", flush=True)
            continue
        cmd = ["bash", "-e", "-c", code] if lang == "bash" else [python, "-c", code]
        print(f"{n:>3} [{heading}] running:\n{code}", flush=True)
        started = time.perf_counter()
        rc = subprocess.run(cmd, env=env).returncode
        print(f"{n:>3} [{heading}] {time.perf_counter() - started:.0f} s, exit {rc}", flush=True)
        if rc:
            failed += 1
            if not args.keep_going:
                return rc
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
