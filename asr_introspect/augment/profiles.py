"""Named augmentation profiles and the seeded pipeline that applies them.

A profile says which effects a training run applies on the fly and how
often. Every profile but ``none`` contains ``light``: the augmentation the
toolkit trained with before profiles existed (speed perturbation, white
noise, SpecAugment, configured by ``TrainConfig``'s fields and drawn from
the per-utterance torch generator, unchanged, so a ``light`` run reproduces
an older run exactly). The other effects draw from a second generator,
:func:`draw_effects` decides all of them at once (a fixed number of draws in
a fixed order), and they are applied in the order sound meets them:

1. the speaker: VTLP, pitch shift (``apply_voice``);
2. (light: speed perturbation);
3. the room: reverberation with one of a seeded bank of simulated RIRs (``apply_room``);
4. (light: white noise);
5. the microphone and line: additive white/pink/brown noise or babble of
   other training utterances at 0-30 dB SNR, gain, clipping, then a
   narrow-band channel (8 kHz round trip, mu-law, GSM-like) (``apply_channel``).

Profiles: ``none`` (nothing), ``light`` (the old default), ``channels``
(light + rooms, noise, gain, clipping, channels), ``full`` (channels + VTLP
and pitch shifts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .channel import band_limit, gsm_like, mu_law_round_trip
from .level import apply_gain, clip
from .noise import NOISE_COLOURS, babble, coloured_noise, mix_at_snr
from .reverb import reverberate
from .warp import pitch_shift, vtlp

__all__ = [
    "AugmentProfile",
    "EffectPlan",
    "PROFILES",
    "CHANNELS",
    "get_profile",
    "draw_effects",
    "apply_voice",
    "apply_room",
    "apply_channel",
    "augment_waveform",
]

#: narrow-band channel name -> function(audio, sample_rate)
CHANNELS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "band_limit": band_limit,
    "mu_law": lambda audio, sample_rate: mu_law_round_trip(band_limit(audio, sample_rate)),  # G.711 is 8 kHz
    "gsm_like": gsm_like,
}
NOISE_KINDS = ("white", "pink", "brown", "babble")


@dataclass(frozen=True)
class AugmentProfile:
    """How often each effect is applied (probabilities per utterance) and its parameter ranges."""

    name: str
    base: bool = True  # light: TrainConfig's speed, white noise and SpecAugment
    vtlp_probability: float = 0.0
    vtlp_alpha: tuple[float, float] = (0.9, 1.1)
    pitch_probability: float = 0.0
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)
    reverb_probability: float = 0.0
    rir_bank_size: int = 64
    noise_probability: float = 0.0
    noise_snr_db: tuple[float, float] = (0.0, 30.0)
    babble_speakers: tuple[int, int] = (3, 7)
    gain_probability: float = 0.0
    gain_db: tuple[float, float] = (-12.0, 12.0)
    clip_probability: float = 0.0
    clip_fraction: tuple[float, float] = (0.3, 0.9)
    channel_probability: float = 0.0

    @property
    def extra(self) -> bool:
        """Whether any effect beyond ``light`` can happen."""
        return any(
            p > 0
            for p in (
                self.vtlp_probability,
                self.pitch_probability,
                self.reverb_probability,
                self.noise_probability,
                self.gain_probability,
                self.clip_probability,
                self.channel_probability,
            )
        )

    def to_dict(self) -> dict:
        return asdict(self)


_CHANNEL_EFFECTS = dict(
    reverb_probability=0.3,
    noise_probability=0.4,
    gain_probability=0.5,
    clip_probability=0.1,
    channel_probability=0.3,
)
PROFILES: dict[str, AugmentProfile] = {
    "none": AugmentProfile("none", base=False),
    "light": AugmentProfile("light"),
    "channels": AugmentProfile("channels", **_CHANNEL_EFFECTS),
    "full": AugmentProfile("full", vtlp_probability=0.3, pitch_probability=0.2, **_CHANNEL_EFFECTS),
}


def get_profile(name: str) -> AugmentProfile:
    """The profile called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown augmentation profile {name!r}: use one of {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class EffectPlan:
    """The effects drawn for one utterance (None: not applied)."""

    vtlp_alpha: float | None = None
    pitch_semitones: float | None = None
    rir_index: int | None = None
    noise_kind: str | None = None
    noise_snr_db: float | None = None
    noise_seed: int | None = None
    babble_indices: tuple[int, ...] = ()
    gain_db: float | None = None
    clip_fraction: float | None = None
    channel: str | None = None


def draw_effects(profile: AugmentProfile, rng: np.random.Generator, n_rirs: int = 0, n_sources: int = 0) -> EffectPlan:
    """Decide every effect for one utterance (always the same draws, whatever is chosen).

    ``n_rirs``: size of the RIR bank (0: no reverberation); ``n_sources``: how
    many utterances babble may draw from (fewer than 2: babble becomes pink noise).
    """
    u = rng.random(7)
    values = rng.random(8)
    n_babble = int(rng.integers(profile.babble_speakers[0], profile.babble_speakers[1] + 1))
    sources = rng.integers(max(n_sources, 1), size=n_babble)
    noise_seed = int(rng.integers(2**63 - 1))

    def between(bounds: tuple[float, float], x: float) -> float:
        return float(bounds[0] + (bounds[1] - bounds[0]) * x)

    kind = NOISE_KINDS[int(values[3] * len(NOISE_KINDS))]
    if kind == "babble" and n_sources < 2:
        kind = "pink"
    noisy = u[3] < profile.noise_probability
    return EffectPlan(
        vtlp_alpha=between(profile.vtlp_alpha, values[0]) if u[0] < profile.vtlp_probability else None,
        pitch_semitones=between(profile.pitch_semitones, values[1]) if u[1] < profile.pitch_probability else None,
        rir_index=int(values[2] * n_rirs) if n_rirs and u[2] < profile.reverb_probability else None,
        noise_kind=kind if noisy else None,
        noise_snr_db=between(profile.noise_snr_db, values[4]) if noisy else None,
        noise_seed=noise_seed if noisy else None,
        babble_indices=tuple(int(i) for i in sources) if noisy and kind == "babble" else (),
        gain_db=between(profile.gain_db, values[5]) if u[4] < profile.gain_probability else None,
        clip_fraction=between(profile.clip_fraction, values[6]) if u[5] < profile.clip_probability else None,
        channel=sorted(CHANNELS)[int(values[7] * len(CHANNELS))] if u[6] < profile.channel_probability else None,
    )


def apply_voice(audio: np.ndarray, plan: EffectPlan, sample_rate: int) -> np.ndarray:
    """VTLP then pitch shift, as planned. audio: (N,) -> (N,)."""
    if plan.vtlp_alpha is not None:
        audio = vtlp(audio, sample_rate, plan.vtlp_alpha)
    if plan.pitch_semitones is not None:
        audio = pitch_shift(audio, sample_rate, plan.pitch_semitones)
    return audio


def apply_room(audio: np.ndarray, plan: EffectPlan, rirs: Sequence[np.ndarray]) -> np.ndarray:
    """Reverberation with ``rirs[plan.rir_index]``, as planned. audio: (N,) -> (N,)."""
    return audio if plan.rir_index is None else reverberate(audio, rirs[plan.rir_index])


def apply_channel(
    audio: np.ndarray,
    plan: EffectPlan,
    sample_rate: int,
    sources: Callable[[int], np.ndarray] | None = None,
    exclude: int | None = None,
) -> np.ndarray:
    """Additive noise, gain, clipping, then the narrow-band channel, as planned. audio: (N,) -> (N,).

    ``sources(i)``: the audio of utterance ``i`` for babble (``exclude``: the
    utterance itself, skipped).
    """
    if plan.noise_kind is not None:
        noise_rng = np.random.default_rng(plan.noise_seed)
        if plan.noise_kind == "babble" and sources is not None:
            chosen = [sources(i) for i in plan.babble_indices if i != exclude]
            noise = babble(chosen, audio.size, noise_rng)
        else:
            beta = NOISE_COLOURS.get(plan.noise_kind, NOISE_COLOURS["pink"])
            noise = coloured_noise(audio.size, beta, noise_rng)
        audio = mix_at_snr(audio, noise, plan.noise_snr_db)
    if plan.gain_db is not None:
        audio = apply_gain(audio, plan.gain_db)
    if plan.clip_fraction is not None:
        audio = clip(audio, plan.clip_fraction)
    if plan.channel is not None:
        audio = CHANNELS[plan.channel](audio, sample_rate)
    return audio


def augment_waveform(
    audio: np.ndarray,
    plan: EffectPlan,
    sample_rate: int,
    rirs: Sequence[np.ndarray] = (),
    sources: Callable[[int], np.ndarray] | None = None,
    exclude: int | None = None,
) -> np.ndarray:
    """Every planned effect in order (voice, room, channel); light's effects are the trainer's."""
    audio = apply_voice(audio, plan, sample_rate)
    audio = apply_room(audio, plan, rirs)
    return apply_channel(audio, plan, sample_rate, sources, exclude)
