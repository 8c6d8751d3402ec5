"""Audio augmentation: rooms, channels, noise, level, frequency warps, and named profiles.

Each effect is a plain function on float audio ``(N,)`` (numpy) that keeps
the length: :mod:`.reverb`, :mod:`.channel`, :mod:`.noise`, :mod:`.level`,
:mod:`.warp`. :mod:`.profiles` names sets of them for training
(``train --augment none|light|channels|full``) and draws them per utterance
from a seeded generator. :mod:`.conditions` writes evaluation copies of a
corpus under one channel condition each.
"""

from .channel import band_limit, band_pass, gsm_like, mu_law_round_trip, quantize
from .level import apply_gain, clip
from .noise import babble, coloured_noise, mix_at_snr, snr_db
from .profiles import PROFILES, AugmentProfile, EffectPlan, augment_waveform, draw_effects, get_profile
from .reverb import reverberate, simulate_rirs
from .warp import pitch_shift, vtlp, warp_frequencies

__all__ = [
    "AugmentProfile",
    "EffectPlan",
    "PROFILES",
    "apply_gain",
    "augment_waveform",
    "babble",
    "band_limit",
    "band_pass",
    "clip",
    "coloured_noise",
    "draw_effects",
    "get_profile",
    "gsm_like",
    "mix_at_snr",
    "mu_law_round_trip",
    "pitch_shift",
    "quantize",
    "reverberate",
    "simulate_rirs",
    "snr_db",
    "vtlp",
    "warp_frequencies",
]
