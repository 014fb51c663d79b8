"""Real-time factor of ``ser-mlflow extract``: seconds of audio per second of compute.

Speaks a batch of recordings with espeak-ng (or takes ``--audio-dir``), then extracts the
four AVEC audio sets with 1 process and with every core, and prints audio seconds,
wall seconds and the real-time factor of each (higher is faster; 1.0 = real time), and
the CPU seconds spent (workers included). The load average is printed too: on a shared
machine it moves the wall figures; audio per CPU second moves less.

Usage::

    .venv/bin/python benchmarks/extract.py                      # 8 spoken files of ~50 s
    .venv/bin/python benchmarks/extract.py --files 4 --jobs 1,2,4
    .venv/bin/python benchmarks/extract.py --audio-dir my_recordings --sets egemaps
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ser_mlflow.data.extract import EXTRACTABLE, audio_files, extract_folder

SENTENCES = (
    "I really did not expect that, it is wonderful news for all of us.",
    "Well, I am not sure. Perhaps we should wait and see what happens next week.",
    "This advert is boring and far too long, I would switch the channel.",
    "Oh, look at that! The little dog is dancing, how funny is that?",
    "We talked about the product for a while, and honestly I still do not like it.",
)


def speak(folder: Path, n_files: int, sentences_per_file: int) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng not found (Debian: apt-get install espeak-ng); or pass --audio-dir")
    for i in range(n_files):
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(sentences_per_file))
        voice = ("en", "de", "hu")[i % 3]  # SEWA's languages, roughly
        subprocess.run([espeak, "-v", voice, "-s", str(150 + 10 * (i % 4)), "-w",
                        str(folder / f"Test_XX_{i + 1:02d}.wav"), text], check=True)


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=None, help="default: spoken files")
    parser.add_argument("--files", type=int, default=8, help="spoken files (default 8)")
    parser.add_argument("--sentences", type=int, default=10, help="sentences per spoken file")
    parser.add_argument("--jobs", default=f"1,{os.cpu_count() or 1}", help="process counts")
    parser.add_argument("--sets", default=",".join(EXTRACTABLE), help="feature sets")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ser-bench-extract-"))
    try:
        audio = args.audio_dir
        if audio is None:
            audio = tmp / "audio"
            audio.mkdir()
            speak(audio, args.files, args.sentences)
        infos = audio_files(audio)
        total = sum(i.duration_s for i in infos)
        print(f"{len(infos)} recordings, {total:.1f} s of audio "
              f"({total / len(infos):.1f} s each); sets {args.sets}; "
              f"{os.cpu_count()} cores")
        for jobs in (int(j) for j in args.jobs.split(",")):
            load = os.getloadavg()[0]
            cpu0 = _cpu_seconds()
            start = time.perf_counter()
            extract_folder(audio, tmp / f"out{jobs}", feature_sets=args.sets.split(","),
                           jobs=jobs, echo=lambda line: None)
            wall = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu0
            print(f"jobs={jobs}: {wall:6.1f} s wall, real-time factor {total / wall:5.1f} "
                  f"(s of audio per s); {cpu:6.1f} s CPU, {total / cpu:5.1f} s of audio per "
                  f"CPU second; load average before {load:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
