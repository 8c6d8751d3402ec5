"""Corpora: utterance records, the LibriSpeech-layout reader, phone segments, manifests,
the validation pass (``validation``: ``load_corpus`` returns a ``Corpus`` list with a
``CorpusReport``), splits, batching and speech synthesis (``synth``)."""

from .batching import Batch, batch_plan, iterate_batches, utterance_durations
from .librispeech import CorpusScan, Skipped, load_corpus, read_librispeech, scan_librispeech
from .manifest import load_manifest, save_manifest
from .splits import filter_speakers, split_by_speaker, split_by_text
from .synth import SpeakerConfig, select_speakers, synthesize_corpus
from .text_sources import fortune_sentences, read_text_sentences
from .textgrid import TextGridError, parse_textgrid, read_textgrid, write_textgrid
from .utterance import PhoneSegment, Utterance, parse_flite_segments
from .validation import Corpus, CorpusReport, Normalized, normalize_text

__all__ = [
    "Batch",
    "Corpus",
    "CorpusReport",
    "CorpusScan",
    "Normalized",
    "PhoneSegment",
    "Skipped",
    "SpeakerConfig",
    "TextGridError",
    "Utterance",
    "batch_plan",
    "iterate_batches",
    "filter_speakers",
    "fortune_sentences",
    "load_corpus",
    "load_manifest",
    "normalize_text",
    "parse_flite_segments",
    "parse_textgrid",
    "read_librispeech",
    "read_text_sentences",
    "read_textgrid",
    "save_manifest",
    "scan_librispeech",
    "select_speakers",
    "split_by_speaker",
    "split_by_text",
    "synthesize_corpus",
    "utterance_durations",
    "write_textgrid",
]
