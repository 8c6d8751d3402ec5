"""(d) Letter- and phoneme-averaged input windows before and after subtracting the all-letter average."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_introspect.patterns import save_sonifications
from asr_introspect.workflows.figures.section import Section
from asr_introspect.workflows.patterns import patterns


@dataclass
class Settings:
    source: str = "predicted"  # letters from the model's greedy predictions (the original work)
    frames: str = "all"
    shift_correction: str = "none"  # or "auto" (measured lag) or an integer
    sonify: bool = True
    sonify_letters: tuple[str, ...] = ("s", "a", "e")
    sonify_phonemes: tuple[str, ...] = ("s", "sh", "aa", "iy")
    limit: int | None = None


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings(sonify=False)


def run(
    model,
    utterances: Sequence,
    out: str | Path,
    settings: Settings | None = None,
    *,
    progress: bool = False,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
) -> Section:
    """Letter and phoneme patterns (and the sonifications the report plays) under ``out``."""
    settings = settings or Settings()
    out = Path(out)
    # only the patterns the report plays are sonified, below
    common = dict(
        frames=settings.frames,
        audio=False,
        limit=settings.limit or None,
        model_path=model_path,
        data_path=data_path,
        progress=progress,
    )
    letter_run = patterns(
        model,
        utterances,
        out,
        by="letter",
        source=settings.source,
        shift_correction=settings.shift_correction,
        **common,
    )
    phone_run = patterns(model, utterances, out, by="phoneme", **common)
    letters, phones = letter_run.summary, phone_run.summary
    figures = [
        {
            "path": out / "letter_before_after.png",
            "caption": "Per-letter averages of the input window around each predicted letter (top) and the same "
            "after subtracting the average over all letters (bottom).",
        },
        {
            "path": out / "phoneme_before_after.png",
            "caption": "The same for phonemes, from the phone segments of the corpus.",
        },
        {
            "path": out / "phoneme_centroids.png",
            "caption": "Spectral centroid of each phoneme's subtracted pattern at the aligned frame.",
        },
    ]
    audio = []
    if settings.sonify:
        for by, labels, result in (
            ("letter", settings.sonify_letters, letter_run.result),
            ("phoneme", settings.sonify_phonemes, phone_run.result),
        ):
            present = [
                name for name in labels if name in result.names and result.counts[list(result.names).index(name)] > 0
            ]
            for name, path in zip(present, save_sonifications(result, out / "audio", "subtract", labels=present)):
                audio.append({"path": path, "caption": f"{by} '{name}': the subtracted pattern, sonified"})
    numbers = {
        "letter windows": letters.get("windows"),
        "letters with windows": letters.get("labels"),
        "phoneme windows": phones.get("windows"),
        "phonemes with windows": phones.get("labels"),
        "window (input frames)": letters.get("window"),
        "fricative centroids above all vowel centroids": phones.get("fricatives_above_all_vowels"),
    }
    centroids = phones.get("spectral_centroid_hz", {})
    for name in ("s", "sh", "z", "f", "aa", "iy", "uw"):
        if centroids.get(name) is not None:
            numbers[f"centroid {name} (Hz)"] = centroids[name]
    text = (
        "Each panel averages the input window (the receptive field of one output frame) centred on every "
        "frame the model labels with that letter, over the whole corpus. Before subtraction the averages "
        "look alike: what dominates is being a letter at all. After subtracting the average over all "
        "frames of all letters, letter-specific patterns remain; they are not spectrograms any more but "
        "show which time-frequency regions distinguish a letter. Phoneme patterns behave as phonetics "
        "says: fricatives carry energy high in frequency, vowels low."
    )
    return Section(
        "patterns",
        "Letter- and phoneme-averaged inputs",
        text,
        [f for f in figures if Path(f["path"]).is_file()],
        numbers,
        audio,
    )
