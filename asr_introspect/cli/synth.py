"""``asr-introspect synth``: synthesize an English corpus (LibriSpeech layout) with flite, festival and espeak-ng."""

from __future__ import annotations

import argparse

from asr_introspect.cli import _common
from asr_introspect.cli._flags import add_parser, finite_float, int_range, nonnegative_int

#: the most utterances (and parallel synthesizers) one run may ask for: LibriSpeech's 960 h has about 281,000
MAX_UTTERANCES = 1_000_000
MAX_WORKERS = 64


def register(subparsers) -> argparse.ArgumentParser:
    parser = add_parser(
        subparsers,
        "synth",
        help="synthesize a corpus with phone timings (flite, festival) and more voices (espeak-ng)",
        description="Synthesize English sentences (Debian fortunes or --text FILE) with flite voices "
        "(kal, kal16, awb, rms, slt), festival voices (kal, ked diphones; slt HTS) and espeak-ng voices "
        "(klatt variants included), each with speed, pitch and pitch-range variants, into "
        "OUT/train, OUT/test_text (held-out sentences) and OUT/test_speaker (held-out "
        "speaker) in the LibriSpeech layout, with TextGrid phone segments from every synthesizer "
        "(espeak-ng's from libespeak-ng's phoneme events). Speaker ids start with the family. "
        "Rerunning the same command resumes.",
    )
    _common.add_common(parser, out="required")
    parser.add_argument(
        "--utterances", type=int_range(1, MAX_UTTERANCES), default=200, help="number of utterances to synthesize"
    )
    parser.add_argument(
        "--voices",
        nargs="+",
        default=None,
        metavar="VOICE",
        help="all (default: every family mixed), a family (flite, festival, espeak, espeak-klatt), "
        "flite voices (kal kal16 awb rms slt), festival voices (festival:kal festival:ked festival:slt), "
        "espeak-ng voices (en-us, en-gb-x-rp+m3, en-us+klatt2, ...) or speaker ids",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the sentence and speaker choice")
    parser.add_argument("--workers", type=int_range(1, MAX_WORKERS), default=2, help="parallel synthesizer processes")
    parser.add_argument(
        "--text",
        type=str,
        default=None,
        metavar="FILE",
        help="text file with sentences (one or more per line); default: the Debian fortunes",
    )
    parser.add_argument(
        "--test-text-fraction",
        type=finite_float(0, 1, hi_open=True),
        default=0.1,
        help="fraction of utterances with held-out sentences, in [0, 1)",
    )
    parser.add_argument(
        "--test-speaker-fraction",
        type=finite_float(0, 1, hi_open=True),
        default=0.1,
        help="fraction of utterances by the held-out speaker, in [0, 1); with both "
        "fractions 0 the corpus is written directly into OUT",
    )
    parser.add_argument(
        "--held-out-speakers",
        nargs="+",
        default=None,
        metavar="ID",
        help="speaker ids to hold out (default: one flite variant chosen by --seed)",
    )
    _common.set_runner(parser, run)
    return parser


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.corpus.synth import synthesize_corpus

    return synthesize_corpus(
        args.out,
        n_utterances=args.utterances,
        voices=args.voices,
        seed=args.seed,
        workers=args.workers,
        text_file=args.text,
        test_text_fraction=args.test_text_fraction,
        test_speaker_fraction=args.test_speaker_fraction,
        held_out_speakers=args.held_out_speakers,
        progress=_common.progress_enabled(args),
    )
