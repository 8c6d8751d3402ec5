"""Short natural-language descriptions of neurons, from their concept scores (templates), and an optional
hook that lets a local language model summarize the concepts of a neuron's top clips.

:func:`describe_neuron` composes, from a neuron's labels (concepts with IoU
above the label threshold) and precisions:

1. a head from the phonetic labels: the labelled phones ("/s/ /z/", those with
   at least half the best phone's IoU) after the best manner, place and voicing
   (or a vowel's height, backness and rounding) labels that all of them share
   ("voiceless alveolar fricatives"), then letters, "silence" and word position
   ("at word onsets");
2. acoustic qualifiers: for energy, spectral centroid and F0, the bin that
   holds most of the neuron's active frames when it holds at least
   ``mostly`` of them ("mostly at high energy (above -12 dB)");
3. voices: "mostly voice X" when one voice holds ``mostly`` of the active
   frames, else "across voices" when the top clips come from three or more
   voice families.

E.g. "voiceless fricatives /s/ /sh/, mostly at high energy, across voices".
A neuron without labels reads "no concept of the vocabulary (closest:
phone:s, IoU 0.03)".

AND's open-vocabulary step asks a language model what the top clips share.
:func:`summarize_clips` builds that prompt from the concepts present at each
top clip's peak and hands it to any ``summarizer(prompt) -> str``;
:func:`local_language_model` makes one from a ``transformers`` text-generation
model in a local directory (``local_files_only``: it never downloads). It is
off unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from asr_introspect.dissection.concepts import VOWEL_FEATURES
from asr_introspect.errors import InputError
from asr_introspect.text import PHONE_CATEGORIES, SILENCE

__all__ = ["describe_neuron", "concept_phrase", "summarize_clips", "clip_prompt", "local_language_model"]

Summarizer = Callable[[str], str]

_PLURAL = {
    "stop": "stops",
    "fricative": "fricatives",
    "affricate": "affricates",
    "nasal": "nasals",
    "liquid": "liquids",
    "glide": "glides",
    "vowel": "vowels",
}
_PHONETIC = ("phones", "features", "letters", "silence", "position")
_ACOUSTIC = ("energy", "centroid", "f0")


def concept_phrase(name: str) -> str:
    """Readable words for a concept name: ``phone:sh`` -> "/sh/", ``letter:s`` -> "letter 's'",
    ``energy:above-12dB`` -> "high energy (above -12 dB)", ``centroid:2-4kHz`` -> "spectral centroid 2-4 kHz"."""
    kind, _, value = name.partition(":")
    if kind == "phone":
        return f"/{value}/"
    if kind == "letter":
        return f"letter '{value}'"
    if kind == "silence":
        return "silence"
    if kind == "position":
        return {"word-initial": "word onsets", "word-final": "word ends"}.get(value, value)
    if kind == "voice":
        return f"voice {value}"
    if kind == "f0":
        return f"F0 {value.replace('Hz', ' Hz')}"
    if kind == "centroid":
        return f"spectral centroid {value.replace('kHz', ' kHz')}"
    if kind == "energy":
        return _energy_phrase(value)
    if kind == "manner":
        return _PLURAL.get(value, value)
    return value


def _energy_phrase(value: str) -> str:
    """``above-12dB`` -> "high energy (above -12 dB)"; ``below-40dB`` -> "near silence (below -40 dB)"."""
    db = value.replace("dB", " dB").replace("to", " to ")
    if value.startswith("above"):
        return f"high energy ({db.replace('above', 'above ')})"
    if value.startswith("below"):
        return f"near silence ({db.replace('below', 'below ')})"
    return f"moderate energy ({db})"


def _qualifier(name: str) -> str:
    """An acoustic concept as a qualifier: "at high energy (...)", "with spectral centroid 2-4 kHz", "at F0 ..."."""
    phrase = concept_phrase(name)
    return (
        "with " if name.startswith("centroid:") else "at " if not name.startswith("energy:below") else "in "
    ) + phrase


def _feature(phone: str, kind: str) -> str | None:
    """The value of a phonetic feature ``kind`` (manner, place, voicing, height, backness, rounding) of
    ``phone``, as the concept names spell it (None: the phone has no such feature)."""
    if phone not in PHONE_CATEGORIES or phone == SILENCE:
        return None
    category = PHONE_CATEGORIES[phone]
    if kind == "manner":
        return category.manner
    if kind == "place":
        return None if category.vowel else category.place
    if kind == "voicing":
        return "voiced" if category.voiced else "voiceless"
    if phone not in VOWEL_FEATURES:
        return None
    return VOWEL_FEATURES[phone][("height", "backness", "rounding").index(kind)]


def _phonetic_head(labels: Sequence[tuple[str, float]]) -> str:
    """The class and members of the phonetic labels ((name, IoU), best first), e.g. "voiceless fricatives
    /s/ /sh/"; phones and letters are listed while their IoU is at least half the best one of their kind."""
    names = [n for n, _ in labels]

    def first(prefix: str) -> str | None:
        return next((n.partition(":")[2] for n in names if n.startswith(prefix + ":")), None)

    def members(prefix: str, limit: int) -> list[str]:
        kind = [(n, iou) for n, iou in labels if n.startswith(prefix + ":")]
        return [n for n, iou in kind if iou >= 0.5 * kind[0][1]][:limit] if kind else []

    listed = [n.partition(":")[2] for n in members("phone", 4)]

    def shared(kind: str) -> str | None:
        """The best label of a feature ``kind`` that every listed phone has (any, when none is listed)."""
        value = first(kind)
        if value is None or all(_feature(p, kind) == value for p in listed):
            return value
        return None

    manner = shared("manner")
    vowel_features = any(n.split(":")[0] in ("height", "backness", "rounding") for n in names)
    if manner == "vowel" or (manner is None and vowel_features and all(p in VOWEL_FEATURES for p in listed)):
        words = [w for w in (shared("height"), shared("backness"), shared("rounding")) if w] + ["vowels"]
    else:
        words = [w for w in (shared("voicing"), shared("place")) if w]
        if manner is not None:
            words.append(_PLURAL.get(manner, manner))
        elif words:
            words.append("consonants")
    phones = [f"/{p}/" for p in listed]
    letters = [n.partition(":")[2] for n in members("letter", 3)]
    parts = []
    if words or phones:
        parts.append(" ".join(words + phones))
    if "silence" in names:
        parts.insert(0 if names[0] == "silence" else len(parts), "silence")
    if letters:
        parts.append(("letter " if len(letters) == 1 else "letters ") + " ".join(f"'{x}'" for x in letters))
    position = [concept_phrase(n) for n in names if n.startswith("position:")]
    if position:
        parts.append("at " + " and ".join(position))
    return ", ".join(parts)


def describe_neuron(
    names: Sequence[str],
    families: Sequence[str],
    iou: np.ndarray,
    precision: np.ndarray,
    labels: Sequence[int],
    clip_voices: Sequence[str] = (),
    *,
    base_rate: np.ndarray | None = None,
    mostly: float = 0.6,
    lift: float = 1.5,
) -> str:
    """A one-line description of one neuron.

    names, families: the K concepts and their families; iou, precision: (K,) the neuron's scores;
    labels: indices of its labels (best first); clip_voices: voice family of each top clip; base_rate: (K,)
    each concept's share of the frames of its facet (None: 0). An acoustic bin or a voice holds "mostly"
    the neuron's active frames when its precision is at least ``mostly`` and ``lift`` times its base rate
    (a voice that makes up the whole corpus says nothing about the neuron).
    """
    iou = np.nan_to_num(np.asarray(iou, dtype=np.float64), nan=-1.0)
    precision = np.nan_to_num(np.asarray(precision, dtype=np.float64), nan=0.0)
    base = np.zeros(len(names)) if base_rate is None else np.nan_to_num(np.asarray(base_rate, dtype=np.float64))

    def dominant(family: str) -> int | None:
        members = [k for k in range(len(names)) if families[k] == family]
        if not members:
            return None
        best = max(members, key=lambda k: precision[k])
        return best if precision[best] >= mostly and precision[best] >= lift * base[best] else None

    head = _phonetic_head([(names[k], iou[k]) for k in labels if families[k] in _PHONETIC])
    qualifiers = [names[k] for k in map(dominant, _ACOUSTIC) if k is not None]
    if not head:
        acoustic = [names[k] for k in labels if families[k] in _ACOUSTIC][:2]
        head = ", ".join(concept_phrase(n) for n in acoustic)
        qualifiers = [q for q in qualifiers if q not in acoustic]
    voice = dominant("voice")
    voice_part = ""
    if voice is not None:
        voice_part = "mostly " + concept_phrase(names[voice])
    elif len(set(clip_voices)) >= 3:
        voice_part = "across voices"
    elif len(clip_voices) > 1 and len(set(clip_voices)) == 1:
        voice_part = f"top clips all from voice {clip_voices[0]}"
    if not head and voice is not None:
        head, voice_part = concept_phrase(names[voice]), ""
    if not head:
        if not len(names):
            return "no concept of the vocabulary"
        best = int(np.argmax(iou))
        return f"no concept of the vocabulary (closest: {names[best]}, IoU {max(iou[best], 0.0):.2f})"
    out = head
    if qualifiers:
        out += ", mostly " + " and ".join(_qualifier(n) for n in qualifiers)
    if voice_part:
        out += ", " + voice_part
    return out


def clip_prompt(clip_concepts: Sequence[Sequence[str]]) -> str:
    """The prompt that asks a language model what a neuron's top clips share (one line of concepts per clip)."""
    lines = [f"clip {i + 1}: {', '.join(concepts) or '(nothing known)'}" for i, concepts in enumerate(clip_concepts)]
    return (
        "A neuron of a speech recognizer responds most strongly to the following audio clips. Each line lists "
        "the phonetic and acoustic properties of the sound at the peak of the response.\n"
        + "\n".join(lines)
        + "\nIn one short phrase, what do these sounds have in common?\nAnswer:"
    )


def summarize_clips(clip_concepts: Sequence[Sequence[str]], summarizer: Summarizer) -> str:
    """``summarizer(clip_prompt(clip_concepts))``, stripped to its first line."""
    text = str(summarizer(clip_prompt(clip_concepts))).strip()
    return text.splitlines()[0].strip() if text else ""


def local_language_model(path: str | Path, max_new_tokens: int = 32) -> Summarizer:
    """A summarizer from a ``transformers`` causal language model saved in the local directory ``path``
    (loaded with ``local_files_only=True``: nothing is downloaded). Greedy decoding; returns the new text."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"--describe-with {path}: not a local model directory (nothing is ever downloaded)")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise InputError(
            "--describe-with needs the optional 'transformers' package (pip install 'asr-introspect[hf]')"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise InputError(f"--describe-with {path}: cannot load a causal language model ({exc})") from exc

    def summarize(prompt: str) -> str:
        import torch

        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
        return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    return summarize
