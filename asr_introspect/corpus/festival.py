"""Festival voices with phone segments read from festival's utterance structure.

Voices (Debian packages): ``kal`` (``festvox-kallpc16k``, kal_diphone, US male
diphones, 16 kHz), ``ked`` (``festvox-kdlpc16k``, ked_diphone, US male
diphones) and ``slt`` (``festvox-us-slt-hts``, cmu_us_slt_arctic_hts, US female
HMM voice, written at 32 kHz).

One utterance is one ``festival --pipe`` run of a short Scheme script
(:func:`festival_script`): select the voice, set its prosody, ``(utt.synth)``,
print every item of the ``Segment`` relation as ``SEG NAME END`` and save the
wave. ``END`` is the item's ``end`` feature: the segment's end time in seconds
of the saved wave (a segment starts where the previous one ended, the first
at 0). Measured on "Mama made more money.": the energy of the first /m/
starts within 30 ms of the end of the first ``pau``; the HTS voice's last
segment ends exactly at the audio's end, the diphone voices' about 30 ms
before it (in the final pause; ``fit_segments_to_duration`` extends it).

Phone set: all three voices use festival's ``radio`` phone set, which is the
same set of names as flite's US English phones (both come from CMU's US
lexicon), so names go through ``text.phone_from_flite``: identical names for
the 39 CMUdict phones, and ``ax -> ah``, ``axr -> er``, ``el/em/en -> l/m/n``,
``dx -> t``, ``nx -> n``, ``hv -> hh``, ``pau``/``h#``/``brth`` -> ``sil``.
One difference in use: festival writes the r-coloured vowel as two segments,
``er`` then ``r`` ("never" is ``n eh v er r``; the phone set's own comment:
"er-r == axr"), where flite and CMUdict have one; the pair becomes one ``er``
segment spanning both.

Prosody:

- diphone voices (kal, ked): ``Duration_Stretch`` (speed) and the target mean
  and standard deviation of F0 in Hz of festival's linear-regression
  intonation model (``int_lr_params``: pitch and pitch range);
- HTS (slt): the engine's speech rate (``-r``) and a resampling pitch shift:
  the wave is read as if sampled ``f = pitch / 170`` times faster (170 Hz is
  the voice's own median F0, measured), which multiplies F0 and the formants
  by ``f`` (a smaller or larger vocal tract, as in VTLP) and divides every
  time, segments included, by ``f``; the rate is set to ``1 / (stretch * f)``
  so the final duration is ``stretch`` times the voice's own. The HTS voice
  ignores ``int_lr_params`` and the engine's half-tone option (measured), so
  its pitch *range* is its own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asr_introspect.errors import CorpusError
from asr_introspect.text import phone_from_flite

from .utterance import PhoneSegment

__all__ = [
    "FESTIVAL_VOICES",
    "FESTIVAL_PACKAGES",
    "HTS_NATIVE_F0",
    "festival_script",
    "festival_voice_installed",
    "parse_festival_segments",
    "rate_factor",
    "scheme_string",
]

#: short name -> festival voice function (without ``voice_``)
FESTIVAL_VOICES: dict[str, str] = {
    "kal": "kal_diphone",
    "ked": "ked_diphone",
    "slt": "cmu_us_slt_arctic_hts",
}
#: short name -> the Debian package that ships it
FESTIVAL_PACKAGES: dict[str, str] = {
    "kal": "festvox-kallpc16k",
    "ked": "festvox-kdlpc16k",
    "slt": "festvox-us-slt-hts",
}
#: voices synthesized by the HTS engine (prosody by rate and resampling, see the module docstring)
HTS_VOICES = frozenset({"slt"})
#: median F0 of cmu_us_slt_arctic_hts in Hz (pYIN over a test sentence)
HTS_NATIVE_F0 = 170.0
#: festival's linear-regression intonation model: the F0 statistics it was trained on
_MODEL_F0 = (170.0, 34.0)
#: the diphone voices' own target F0 (mean, std) in Hz, from their voice files
DIPHONE_F0 = (105.0, 14.0)

_SEGMENT_LINE = re.compile(r"^SEG (\S+) (-?[0-9.]+(?:e-?[0-9]+)?)$")


def festival_voice_installed(voice: str, root: str | os.PathLike = "/usr/share/festival/voices") -> bool:
    """Whether festival's voice directory for ``voice`` (a key of :data:`FESTIVAL_VOICES`) exists."""
    return any(Path(root).glob(f"*/{FESTIVAL_VOICES[voice]}"))


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal (backslashes and double quotes escaped, one line)."""
    flat = " ".join(text.split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rate_factor(voice: str, pitch: float | None) -> float:
    """How many times faster the saved wave is read (1.0 except for an HTS voice with a pitch in Hz)."""
    if voice in HTS_VOICES and pitch is not None:
        return float(pitch) / HTS_NATIVE_F0
    return 1.0


def festival_script(
    text: str,
    voice: str,
    wav_path: str | os.PathLike,
    stretch: float = 1.0,
    pitch: float | None = None,
    pitch_range: float | None = None,
) -> str:
    """A Scheme script that speaks ``text`` into ``wav_path`` and prints its segments.

    ``voice``: a key of :data:`FESTIVAL_VOICES`; ``stretch``: duration factor
    (> 1 slower); ``pitch``: mean F0 in Hz (None: the voice's own);
    ``pitch_range``: F0 standard deviation in Hz (diphone voices only; None:
    the voice's own). Output lines: ``SEG NAME END_SECONDS``.
    """
    if voice not in FESTIVAL_VOICES:
        raise ValueError(f"unknown festival voice {voice!r} (one of {', '.join(FESTIVAL_VOICES)})")
    lines = [f"(voice_{FESTIVAL_VOICES[voice]})"]
    if voice in HTS_VOICES:
        rate = 1.0 / (stretch * rate_factor(voice, pitch))
        lines.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {rate:.6f}))))')
    else:
        mean = DIPHONE_F0[0] if pitch is None else float(pitch)
        std = DIPHONE_F0[1] if pitch_range is None else float(pitch_range)
        lines.append(
            f"(set! int_lr_params '((target_f0_mean {mean:g}) (target_f0_std {std:g}) "
            f"(model_f0_mean {_MODEL_F0[0]:g}) (model_f0_std {_MODEL_F0[1]:g})))"
        )
        lines.append(f"(Parameter.set 'Duration_Stretch {stretch:g})")
    lines += [
        f"(set! asr_utt (Utterance Text {scheme_string(text)}))",
        "(utt.synth asr_utt)",
        '(mapcar (lambda (s) (format t "SEG %s %f\\n" (item.name s) (item.feat s \'end))) '
        "(utt.relation.items asr_utt 'Segment))",
        f"(utt.save.wave asr_utt {scheme_string(str(wav_path))} 'riff)",
    ]
    return "\n".join(lines) + "\n"


def parse_festival_segments(
    stdout: str, time_scale: float = 1.0, source: str = "festival output"
) -> list[PhoneSegment]:
    """Phone segments from the ``SEG NAME END`` lines of :func:`festival_script`'s output.

    Other lines are ignored. Times are multiplied by ``time_scale`` (``1 /
    rate_factor`` for a resampled HTS voice); ``er`` followed by ``r`` becomes
    one ``er`` (see the module docstring). ``CorpusError`` naming ``source``
    for decreasing times, an unknown phone name or no segments at all.
    """
    segments: list[PhoneSegment] = []
    start, previous = 0.0, None
    for line in stdout.splitlines():
        match = _SEGMENT_LINE.match(line.strip())
        if match is None:
            continue
        name, end = match.group(1), round(float(match.group(2)) * time_scale, 6)  # microseconds, as TextGrids keep
        if end < start - 1e-9:
            raise CorpusError(
                f"{source}: festival segment {name!r} ends at {end:.3f} s, before its start {start:.3f} s"
            )
        try:
            phone = phone_from_flite(name)
        except ValueError as exc:
            raise CorpusError(f"{source}: unknown festival phone {name!r} ({exc})") from exc
        if name == "r" and previous == "er":  # festival's "er r" is one r-coloured vowel
            segments[-1] = PhoneSegment("er", segments[-1].start, end)
        else:
            segments.append(PhoneSegment(phone, start, end))
        start, previous = end, name
    if not segments:
        raise CorpusError(f"{source}: festival printed no segments")
    return segments
