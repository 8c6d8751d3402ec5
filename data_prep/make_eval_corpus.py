#!/usr/bin/env python3
"""Select the shipped evaluation corpus from a synthesized held-out split.

Keeps utterances that have phone segments (flite voices), spreads the choice
over speakers, prefers shorter clips so the corpus fits the size budget, and
copies audio + TextGrids into a new LibriSpeech-layout directory with its
manifest. Deterministic for a seed.

Example (the command that made ``asr_introspect/data/eval_corpus``)::

    python data_prep/make_eval_corpus.py --src runs-data/synth/test_text \
        --out asr_introspect/data/eval_corpus --utterances 160 --max-mb 9.5

``--add`` adds utterances to an existing corpus instead (its files stay
as they are, so git history does not carry two corpora), for example one
voice family at a time from held-out sentences synthesized by that family::

    python data_prep/make_eval_corpus.py --src data/held_out_festival --families festival \
        --out asr_introspect/data/eval_corpus --add --utterances 16 --max-mb 1.2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from asr_introspect.corpus import load_corpus, save_manifest
from asr_introspect.corpus.synth import FAMILIES, speaker_family
from asr_introspect.corpus.utterance import Utterance
from asr_introspect.io import write_text_atomic


def select(utterances: list[Utterance], n: int, max_seconds: float, seed: int) -> list[Utterance]:
    """Round-robin over speakers, each speaker's clips shortest-first after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        if utt.phones and utt.duration is not None and utt.duration <= max_seconds:
            by_speaker[utt.speaker].append(utt)
    queues = {}
    for speaker, utts in sorted(by_speaker.items()):
        order = rng.permutation(len(utts))
        queues[speaker] = [utts[i] for i in order]
    chosen: list[Utterance] = []
    while len(chosen) < n and any(queues.values()):
        for speaker in sorted(queues):
            if queues[speaker] and len(chosen) < n:
                chosen.append(queues[speaker].pop())
    return sorted(chosen, key=lambda u: u.id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="synthesized split (LibriSpeech layout)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=160)
    parser.add_argument("--max-seconds", type=float, default=4.0, help="longest clip kept")
    parser.add_argument("--max-mb", type=float, default=9.5, help="size budget of the audio + TextGrids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--families", nargs="+", choices=FAMILIES, default=None, help="only speakers of these voice families"
    )
    parser.add_argument("--add", action="store_true", help="add to the corpus in --out (ids already there are skipped)")
    args = parser.parse_args(argv)
    existing = load_corpus(args.out) if args.add and args.out.is_dir() and any(args.out.iterdir()) else []
    if not args.add and args.out.exists() and any(args.out.iterdir()):
        print(f"{args.out}: exists and is not empty; remove it first, or add to it with --add", file=sys.stderr)
        return 2
    have = {u.id for u in existing}
    candidates = [
        u
        for u in load_corpus(args.src)
        if u.id not in have and (args.families is None or speaker_family(u.speaker) in args.families)
    ]
    chosen = select(candidates, args.utterances, args.max_seconds, args.seed)
    if len(chosen) < args.utterances:
        print(
            f"only {len(chosen)} utterances with phone segments <= {args.max_seconds} s in {args.src}", file=sys.stderr
        )
        return 2
    copied: list[Utterance] = []
    transcripts: dict[Path, list[str]] = defaultdict(list)
    size = 0
    for utt in chosen:
        src = Path(utt.audio_path)
        chapter = src.parent.name
        dest_dir = args.out / utt.speaker / chapter
        dest_dir.mkdir(parents=True, exist_ok=True)
        for path in (src, src.with_suffix(".TextGrid")):
            shutil.copy2(path, dest_dir / path.name)
            size += path.stat().st_size
        transcripts[dest_dir / f"{utt.speaker}-{chapter}.trans.txt"].append(f"{utt.id} {utt.text.upper()}")
        copied.append(utt)
    for path, lines in transcripts.items():
        if path.is_file():  # --add: a speaker already in the corpus keeps its lines
            lines = [*path.read_text(encoding="utf-8").splitlines(), *lines]
        write_text_atomic(path, "\n".join(sorted(lines)) + "\n")
    utterances = load_corpus(args.out)
    save_manifest(utterances, args.out / "manifest.jsonl")
    summary = {
        "utterances": len(utterances),
        "speakers": len({u.speaker for u in utterances}),
        "seconds": round(sum(u.duration or 0 for u in utterances), 1),
        "added": len(copied),
        "megabytes": round(size / 1e6, 2),
        "source": str(args.src),
    }
    print(json.dumps(summary))
    if size / 1e6 > args.max_mb:
        print(f"warning: {size / 1e6:.1f} MB exceeds the budget of {args.max_mb} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
