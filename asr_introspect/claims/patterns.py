"""Two claims about the model's input, tested as numbers with a null, an interval and a verdict.

1. **Letter-averaged inputs look alike until the average over all letters is subtracted**
   (:func:`letter_pattern_claim`). Every letter window (the model's input around a letter's
   forced-alignment spike, the receptive field wide; zero-filled past the utterance, as the
   model's zero padding sees it) is summed per letter. With ``A_g`` (F, W) the average window
   of letter ``g`` (``n_g`` windows, ``N`` in all), ``M = sum_g n_g A_g / N`` the average over
   all letters and ``a`` the mean of all pixels of ``M``::

       between = sum_g (n_g / N) ||A_g - M||^2      total = sum_g (n_g / N) ||A_g - a||^2

   ``total = between + sum_g (n_g / N) ||M - a||^2`` exactly, so the **between-letter share**
   ``s = between / total`` is the part of the variance of the averaged windows that tells
   letters apart; ``1 - s`` is the common "being a letter" pattern that subtracting ``M``
   removes. The claim holds when (a) the letters differ beyond chance: ``s`` above its value
   with the letters shuffled within each utterance (windows keep their place, letters trade
   places; what is left is sampling noise), and (b) the averages look alike: the common
   pattern carries most of their variance, ``s < 1/2`` (``look_alike_share``). Verdict:
   :func:`~asr_introspect.claims.record.verdict_for` of (a), then "not supported" when the
   whole interval of ``s`` is at or above 1/2 and "inconclusive" when it straddles 1/2.

2. **Fricative spectral centroids exceed vowel centroids** (:func:`centroid_claim`). Each
   input frame's mel power spectrum (dB from the front end, before normalization) is turned
   into band powers (power density times the band's width in Hz, so the centroid is that of
   the linear-frequency spectrum) and normalized to sum 1; a phone class's centroid is
   ``sum_f freq_f P_f`` of the mean normalized spectrum ``P`` of its frames, i.e. the mean of
   its frames' centroids (loud and quiet frames count alike). The value is the fricative
   centroid minus the vowel centroid (Hz); frames are labelled by the phone segment covering
   their centre. Null: the phone labels of each utterance's labelled frames shuffled. Models
   whose input is not the toolkit's log-mel (waveform, Whisper) are measured on the toolkit's
   default log-mel of the same audio (said in ``details["front_end"]``).

Intervals: 95 % percentile bootstrap over utterances (``n_boot`` resamples, the same resamples
for a value and its null). The share ``s`` is quadratic in the sums, so resamples that repeat an
utterance inflate it (their noise adds up coherently): its intervals are shifted by the bootstrap's
bias estimate (:func:`bias_corrected_interval`). The letter windows are summed once per utterance
in one pass over the corpus; the bootstrap recombines those sums (through their Gram matrices),
never the audio. To bound memory (``2 * n_blocks * letters * F * W`` float32 values: 170 MB for
the shipped model), claim 1 keeps the sums of at most ``n_blocks`` groups of utterances
(utterances dealt to groups at random; with no more utterances than ``n_blocks`` every group is
one utterance and the bootstrap is over utterances exactly, otherwise over the groups).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import librosa
import numpy as np

from asr_introspect.alignment import PhoneTimeline
from asr_introspect.audio import load_audio
from asr_introspect.claims.record import Claim, percentile_interval, verdict_for
from asr_introspect.errors import InputError
from asr_introspect.features import FeatureConfig, compute_features, mel_frequencies
from asr_introspect.stream import DEFAULT_SOURCE, check_letter_settings, stream_corpus
from asr_introspect.text import PHONE_CATEGORIES, PHONES

__all__ = [
    "pattern_claims",
    "letter_pattern_claim",
    "share_claim_from_sums",
    "centroid_claim",
    "letter_window_sums",
    "between_letter_share",
    "bootstrap_between_share",
    "bias_corrected_interval",
    "mean_pairwise_correlation",
    "band_widths",
    "normalized_spectra",
    "phone_spectrum_sums",
    "centroid_difference",
    "bootstrap_weights",
]

LETTER_STATEMENT = "letter-averaged inputs look alike until the average over all letters is subtracted"
CENTROID_STATEMENT = "fricative spectral centroids exceed vowel centroids"
#: window (input frames) when the model's output sees the whole utterance (no receptive field)
GLOBAL_WINDOW = 64


# ---------------------------------------------------------------------------
# shared pieces


def bootstrap_weights(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_units) float64 multiplicities of a bootstrap: each row draws ``n_units`` units with replacement."""
    rng = np.random.default_rng([int(seed), 22])
    if n_units == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot).astype(np.float64)


def _inconclusive(name: str, statement: str, null_name: str, reason: str, details: dict[str, Any]) -> Claim:
    nan = float("nan")
    return Claim(
        name, statement, nan, (nan, nan), nan, (nan, nan), null_name, "inconclusive", {**details, "reason": reason}
    )


# ---------------------------------------------------------------------------
# claim 1: letter-averaged windows


def letter_window_sums(
    features: np.ndarray, centers: np.ndarray, ids: np.ndarray, n_groups: int, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label sums of input windows: ``(sums (G, F, W) float64, counts (G,) int64)``.

    features: (F, T_in); centers: (K,) input frames; ids: (K,) labels in ``[0, G)``. The window of
    centre ``c`` covers input frames ``[c - W//2, c - W//2 + W)``; frames outside the utterance are 0.
    """
    x = np.asarray(features, dtype=np.float64)
    n_feat, n_in = x.shape
    half = window // 2
    padded = np.zeros((n_feat, n_in + window), dtype=np.float64)
    padded[:, half : half + n_in] = x
    centers = np.asarray(centers, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    counts = np.bincount(ids, minlength=n_groups).astype(np.int64)
    if centers.size == 0:
        return np.zeros((n_groups, n_feat, window)), counts
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)  # (F, T_in + 1, W)
    windows = views[:, centers, :]  # (F, K, W): window of centre c starts at padded column c
    onehot = np.zeros((n_groups, centers.size))
    onehot[ids, np.arange(centers.size)] = 1.0
    sums = np.tensordot(onehot, windows, axes=([1], [1]))  # (G, F, W)
    return sums, counts


def between_letter_share(sums: np.ndarray, counts: np.ndarray) -> float:
    """Between-letter share ``s`` (module docstring) of per-letter window sums (G, F, W) with counts (G,).

    Letters with no window are left out; NaN when no window is left or all averages are equal.
    """
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    keep = counts > 0
    if not keep.any():
        return float("nan")
    s, n = sums[keep], counts[keep]
    total_n = n.sum()
    averages = s / n[:, None, None]
    overall = s.sum(0) / total_n
    grand = overall.mean()
    w = n / total_n
    between = float((w * ((averages - overall) ** 2).sum((1, 2))).sum())
    total = float((w * ((averages - grand) ** 2).sum((1, 2))).sum())
    return between / total if total > 0 else float("nan")


def _grams(unit_sums: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-letter Gram matrices (G', U, U), Gram of the all-letter sums (U, U), pixel totals (U,)) of
    the letters ``groups`` of per-unit window sums (U, G, P); no copy of ``unit_sums``."""
    units = unit_sums.shape[0]
    grams = np.empty((len(groups), units, units))
    total = np.zeros((units, unit_sums.shape[2]))
    for i, g in enumerate(groups):
        s = unit_sums[:, g].astype(np.float64)
        grams[i] = s @ s.T
        total += s
    return grams, total @ total.T, total.sum(1)


def bootstrap_between_share(
    unit_sums: np.ndarray, unit_counts: np.ndarray, weights: np.ndarray, groups: Sequence[int] | None = None
) -> np.ndarray:
    """Between-letter share of resampled corpora: (R,) for ``weights`` (R, U) unit multiplicities.

    unit_sums: (U, G, F, W) or (U, G, P) per-unit (utterance or group) window sums; unit_counts:
    (U, G); groups: the letters that count (default all). Replicate ``r`` equals
    :func:`between_letter_share` of ``sum_u weights[r, u] * unit_sums[u]`` (those letters),
    computed from Gram matrices of the unit sums (no pass over the windows).
    """
    units, n_groups = unit_counts.shape
    groups = np.arange(n_groups) if groups is None else np.asarray(groups, dtype=np.int64)
    flat = np.asarray(unit_sums).reshape(units, n_groups, -1)
    pixels = flat.shape[2]
    grams, total_gram, pixel_totals = _grams(flat, groups)
    k = np.asarray(weights, dtype=np.float64)
    n = k @ np.asarray(unit_counts, dtype=np.float64)[:, groups]  # (R, G')
    squares = np.einsum("ru,guv,rv->rg", k, grams, k)  # ||S_g||^2 of each replicate
    with np.errstate(divide="ignore", invalid="ignore"):
        per_letter = np.where(n > 0, squares / n, 0.0).sum(1)
        total_n = n.sum(1)
        all_square = np.einsum("ru,uv,rv->r", k, total_gram, k)
        grand_sum = k @ pixel_totals
        between = per_letter / total_n - all_square / total_n**2
        total = per_letter / total_n - grand_sum**2 / (total_n**2 * pixels)
        share = np.where(total > 0, between / total, np.nan)
    return share


def bias_corrected_interval(samples: np.ndarray, value: float) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` shifted by their bias ``mean(samples) - value``.

    A quadratic statistic such as the between-letter share grows on resamples that repeat
    utterances (their noise adds up coherently); the shift removes that bias estimate.
    """
    samples = np.asarray(samples, dtype=np.float64)
    bias = float(np.nanmean(samples)) - float(value) if np.isfinite(samples).any() else 0.0
    low, high = percentile_interval(samples)
    return (low - bias, high - bias)


def mean_pairwise_correlation(patterns: np.ndarray) -> float:
    """Mean Pearson correlation over pixels between every two of ``patterns`` (G, F, W); NaN if G < 2."""
    p = np.asarray(patterns, dtype=np.float64).reshape(len(patterns), -1)
    if len(p) < 2:
        return float("nan")
    p = p - p.mean(1, keepdims=True)
    norms = np.linalg.norm(p, axis=1)
    p = p / np.where(norms > 0, norms, 1.0)[:, None]
    corr = p @ p.T
    upper = np.triu_indices(len(p), k=1)
    return float(np.mean(corr[upper]))


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def letter_pattern_claim(
    model,
    utterances: Sequence,
    *,
    n_boot: int = 200,
    seed: int = 0,
    source: str = DEFAULT_SOURCE,
    letter_mode: str = "spike",
    shift: int = 0,
    window: int | None = None,
    min_count: int = 20,
    n_blocks: int = 64,
    look_alike_share: float = 0.5,
    batch_size: int = 16,
    progress: bool = False,
) -> Claim:
    """Claim 1 (module docstring) on ``model`` and ``utterances``: one pass of the corpus stream.

    Letters (not blank, space) from ``source``/``letter_mode``/``shift`` as
    :meth:`StreamBatch.letter_labels` makes them; window: input frames (default the receptive
    field, or 64 when the output sees the whole utterance); letters with fewer than
    ``min_count`` windows in the corpus are left out (listed in the details).
    """
    name, null_name = "letter_patterns_look_alike", "letters shuffled within utterances"
    shift = check_letter_settings(source, letter_mode, shift)
    if n_boot < 1 or n_blocks < 1:
        raise InputError(f"n_boot and n_blocks must be >= 1, got {n_boot} and {n_blocks}")
    settings: dict[str, Any] = {
        "source": source,
        "letter_mode": letter_mode,
        "shift": shift,
        "definition": "s = sum_g (n_g/N)||A_g - M||^2 / sum_g (n_g/N)||A_g - mean(M)||^2 over letter-averaged "
        "input windows A_g, all-letter average M",
    }
    if model.feature_config.kind == "waveform":
        return _inconclusive(
            name,
            LETTER_STATEMENT,
            null_name,
            "the model's input is the raw waveform: letter-averaged input windows are not spectrogram patterns "
            "(see the spectral-centroid claim, measured on a log-mel of the same audio)",
            settings,
        )
    try:
        model.require_letters("letter patterns")
    except InputError as exc:
        return _inconclusive(name, LETTER_STATEMENT, null_name, str(exc), settings)
    fm, out = model.frame_map, model.output_layer
    if window is None:
        window = GLOBAL_WINDOW if fm.is_global(out) else int(fm.layer(out).receptive_field)
    window = int(window)
    if window < 1:
        raise InputError(f"window must be a positive number of input frames, got {window}")
    alphabet = model.letter_alphabet
    letters = [i for i in range(len(alphabet.symbols)) if i not in (alphabet.blank, alphabet.space)]
    column = np.full(len(alphabet.symbols), -1, dtype=np.int64)
    column[letters] = np.arange(len(letters))
    utterances = list(utterances)
    index = {u.id: i for i, u in enumerate(utterances)}
    n_units = min(len(utterances), int(n_blocks))
    block_of = np.random.default_rng([int(seed), 1]).permutation(len(utterances)) % max(n_units, 1)
    n_feat, groups = int(model.n_features), len(letters)
    sums = np.zeros((2, n_units, groups, n_feat * window), dtype=np.float32)  # real, shuffled
    counts = np.zeros((n_units, groups), dtype=np.int64)
    n_utt, skipped, dropped = 0, [], 0
    for batch in stream_corpus(model, utterances, batch_size=batch_size, progress=progress, desc="letter windows"):
        labels = batch.letter_labels(out, source, letter_mode, shift)
        rows, lengths = batch.letter_rows(source), batch.layer_lengths(out)
        for b, utt in enumerate(batch.utterances):
            if not rows[b]:
                skipped.append(utt.id)
                continue
            lab = labels[b, : lengths[b]]
            frames = np.flatnonzero(lab >= 0)
            ids = column[lab[frames]]
            frames, ids = frames[ids >= 0], ids[ids >= 0]
            features = batch.utterance_features(b)
            centers = _round_half_up(fm.center(out, frames.astype(np.float64)))
            inside = (centers >= 0) & (centers < features.shape[1])
            dropped += int((~inside).sum())
            centers, ids = centers[inside], ids[inside]
            i = index[utt.id]
            unit = block_of[i]
            shuffled = np.random.default_rng([int(seed), 2, i]).permutation(ids)
            real_sums, real_counts = letter_window_sums(features, centers, ids, groups, window)
            null_sums, _ = letter_window_sums(features, centers, shuffled, groups, window)
            sums[0, unit] += real_sums.reshape(groups, -1)
            sums[1, unit] += null_sums.reshape(groups, -1)
            counts[unit] += real_counts
            n_utt += 1
    details = {
        **settings,
        "window": window,
        "n_utterances": n_utt,
        "n_skipped": len(skipped),
        "n_dropped_windows": dropped,
        "bootstrap_unit": "utterance" if n_units == len(utterances) else "random group of utterances",
    }
    names = [alphabet.symbols[g] for g in letters]
    return share_claim_from_sums(
        sums,
        counts,
        names,
        n_feat,
        n_boot=n_boot,
        seed=seed,
        min_count=min_count,
        look_alike_share=look_alike_share,
        details=details,
    )


def share_claim_from_sums(
    sums: np.ndarray,
    counts: np.ndarray,
    names: Sequence[str],
    n_features: int,
    *,
    n_boot: int = 200,
    seed: int = 0,
    min_count: int = 20,
    look_alike_share: float = 0.5,
    details: dict[str, Any] | None = None,
) -> Claim:
    """Claim 1 from per-unit window sums: sums (2, U, G, F * W) (the real letters, then the letters
    shuffled within utterances), counts (U, G) windows per unit and letter, names (G,) letters."""
    name, null_name = "letter_patterns_look_alike", "letters shuffled within utterances"
    units, groups = counts.shape
    window = sums.shape[-1] // int(n_features)
    totals = counts.sum(0)
    kept = np.flatnonzero(totals >= min_count)
    details = {
        **(details or {}),
        "min_count": int(min_count),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "look_alike_share": float(look_alike_share),
        "bootstrap_units": int(units),
        "letters_left_out": {names[g]: int(totals[g]) for g in range(groups) if totals[g] < min_count},
    }
    if len(kept) < 2:
        reason = f"fewer than 2 letters have {min_count} windows or more"
        return _inconclusive(name, LETTER_STATEMENT, null_name, reason, details)
    shape = (len(kept), int(n_features), window)
    pooled = sums[0].sum(0, dtype=np.float64)[kept].reshape(shape)
    pooled_null = sums[1].sum(0, dtype=np.float64)[kept].reshape(shape)
    value = between_letter_share(pooled, totals[kept])
    null_value = between_letter_share(pooled_null, totals[kept])
    weights = bootstrap_weights(units, int(n_boot), seed)
    boot = [bootstrap_between_share(sums[k], counts, weights, kept) for k in (0, 1)]
    interval = bias_corrected_interval(boot[0], value)
    null_interval = bias_corrected_interval(boot[1], null_value)
    verdict = verdict_for(interval, null_interval, "greater")
    if verdict == "supported" and interval[1] >= look_alike_share:
        verdict = "not supported" if interval[0] >= look_alike_share else "inconclusive"
    n = totals[kept].astype(np.float64)
    averages = pooled / n[:, None, None]
    overall = pooled.sum(0) / n.sum()
    total_var = float(((n / n.sum()) * ((averages - overall.mean()) ** 2).sum((1, 2))).sum())
    contribution = (n / n.sum()) * ((averages - overall) ** 2).sum((1, 2)) / total_var
    details.update(
        {
            "correlation_before": mean_pairwise_correlation(averages),
            "correlation_after": mean_pairwise_correlation(averages - overall),
            "per_letter": {
                names[g]: {"windows": int(totals[g]), "share": float(c)} for g, c in zip(kept, contribution)
            },
        }
    )
    return Claim(name, LETTER_STATEMENT, value, interval, null_value, null_interval, null_name, verdict, details)


# ---------------------------------------------------------------------------
# claim 2: spectral centroids


def band_widths(config: FeatureConfig) -> np.ndarray:
    """(F,) Hz: the width each mel band stands for, half its filter's support (Slaney filters have unit area)."""
    edges = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=config.fmin, fmax=config.fmax_hz, htk=False)
    return np.asarray(edges[2:] - edges[:-2], dtype=np.float64) / 2.0


def normalized_spectra(db: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Per-frame band-power distribution: db (F, T) mel power density in dB, widths (F,) Hz -> (F, T),
    each column ``10**(db/10) * width`` scaled to sum 1."""
    db = np.asarray(db, dtype=np.float64)
    power = 10.0 ** ((db - db.max(axis=0, keepdims=True)) / 10.0) * np.asarray(widths, dtype=np.float64)[:, None]
    return power / power.sum(axis=0, keepdims=True)


def phone_spectrum_sums(spectra: np.ndarray, labels: np.ndarray, n_phones: int) -> tuple[np.ndarray, np.ndarray]:
    """(sums (n_phones, F), counts (n_phones,)) of the frames' spectra (F, T) per label (T,) (-1: none)."""
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels >= 0
    onehot = np.zeros((n_phones, int(keep.sum())))
    onehot[labels[keep], np.arange(int(keep.sum()))] = 1.0
    return onehot @ spectra[:, keep].T, onehot.sum(1).astype(np.int64)


def centroid_difference(
    sums: np.ndarray, frequencies: np.ndarray, first: Sequence[int], second: Sequence[int]
) -> np.ndarray:
    """Centroid (Hz) of the phones ``first`` minus that of ``second``: sums (..., n_phones, F) of
    normalized spectra -> (...). NaN where a class has no frame."""
    a = np.asarray(sums)[..., list(first), :].sum(-2)
    b = np.asarray(sums)[..., list(second), :].sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a @ frequencies) / a.sum(-1) - (b @ frequencies) / b.sum(-1)


def centroid_claim(
    model,
    utterances: Sequence,
    *,
    n_boot: int = 200,
    seed: int = 0,
    fricatives: Sequence[str] | None = None,
    progress: bool = False,
) -> Claim:
    """Claim 2 (module docstring): fricative minus vowel spectral centroid (Hz) over the utterances'
    phone segments. fricatives: the phones that count (default every fricative of
    :data:`text.PHONE_CATEGORIES`); vowels are every vowel."""
    name, null_name = "fricative_centroids_exceed_vowels", "phone labels shuffled within utterances"
    fric = [p for p in PHONES if PHONE_CATEGORIES[p].manner == "fricative"] if fricatives is None else list(fricatives)
    unknown = [p for p in fric if p not in PHONE_CATEGORIES]
    if unknown:
        raise InputError(f"fricatives: unknown phone(s) {unknown}; known: {list(PHONES)}")
    vowels = [p for p in PHONES if PHONE_CATEGORIES[p].vowel]
    config = model.feature_config
    own = isinstance(config, FeatureConfig)
    config = config if own else FeatureConfig(sample_rate=int(config.sample_rate))
    config = dataclasses.replace(config, normalization="none")  # dB, not z-scores
    freqs, widths = mel_frequencies(config), band_widths(config)
    details: dict[str, Any] = {
        "front_end": "the model's log-mel" if own else f"the toolkit's default log-mel ({config.n_mels} bands)",
        "fricatives": fric,
        "vowels": vowels,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "definition": "centroid = sum_f freq_f * mean over the class's frames of the frame's band-power share",
    }
    with_phones = [u for u in utterances if getattr(u, "phones", None)]
    if not with_phones:
        return _inconclusive(name, CENTROID_STATEMENT, null_name, "no utterance has phone segments", details)
    n_phones = len(PHONES)
    sums = np.zeros((2, len(with_phones), n_phones, config.n_mels))
    counts = np.zeros((len(with_phones), n_phones), dtype=np.int64)
    iterator = with_phones
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(with_phones, desc="phone spectra", unit="utt")
    for i, utt in enumerate(iterator):
        wave = load_audio(utt.audio_path, sample_rate=config.sample_rate)
        db = compute_features(wave, config).numpy()
        labels = PhoneTimeline.from_segments(utt.phones).labels(np.arange(db.shape[1]) * config.frame_seconds)
        spectra = normalized_spectra(db, widths)
        sums[0, i], counts[i] = phone_spectrum_sums(spectra, labels, n_phones)
        shuffled = labels.copy()
        labelled = np.flatnonzero(labels >= 0)
        shuffled[labelled] = np.random.default_rng([int(seed), 3, i]).permutation(labels[labelled])
        sums[1, i], _ = phone_spectrum_sums(spectra, shuffled, n_phones)
    f_ids = [PHONES.index(p) for p in fric]
    v_ids = [PHONES.index(p) for p in vowels]
    totals = counts.sum(0)
    details["frames"] = {"fricative": int(totals[f_ids].sum()), "vowel": int(totals[v_ids].sum())}
    details["n_utterances"] = len(with_phones)
    if totals[f_ids].sum() == 0 or totals[v_ids].sum() == 0:
        return _inconclusive(name, CENTROID_STATEMENT, null_name, "no fricative or no vowel frame", details)
    pooled = sums.sum(1)  # (2, n_phones, F)
    value, null_value = (float(v) for v in centroid_difference(pooled, freqs, f_ids, v_ids))
    weights = bootstrap_weights(len(with_phones), int(n_boot), seed)
    boot = centroid_difference(np.einsum("ru,kupf->krpf", weights, sums), freqs, f_ids, v_ids)
    interval, null_interval = percentile_interval(boot[0]), percentile_interval(boot[1])
    verdict = verdict_for(interval, null_interval, "greater")
    real = pooled[0]
    per_phone = {}
    for p in fric + vowels:
        j = PHONES.index(p)
        if totals[j]:
            per_phone[p] = {"frames": int(totals[j]), "centroid_hz": float(real[j] @ freqs / real[j].sum())}
    details.update(
        {
            "fricative_centroid_hz": float(real[f_ids].sum(0) @ freqs / real[f_ids].sum()),
            "vowel_centroid_hz": float(real[v_ids].sum(0) @ freqs / real[v_ids].sum()),
            "per_phone": per_phone,
        }
    )
    return Claim(name, CENTROID_STATEMENT, value, interval, null_value, null_interval, null_name, verdict, details)


def pattern_claims(model, utterances: Sequence, *, n_boot: int = 200, seed: int = 0, **options) -> list[Claim]:
    """Both claims of this module: ``[letter_pattern_claim, centroid_claim]``.

    options: ``progress`` (both), ``fricatives`` (claim 2), the rest go to :func:`letter_pattern_claim`
    (``source``, ``letter_mode``, ``shift``, ``window``, ``min_count``, ``n_blocks``,
    ``look_alike_share``, ``batch_size``).
    """
    progress = bool(options.pop("progress", False))
    fricatives = options.pop("fricatives", None)
    utterances = list(utterances)
    return [
        letter_pattern_claim(model, utterances, n_boot=n_boot, seed=seed, progress=progress, **options),
        centroid_claim(model, utterances, n_boot=n_boot, seed=seed, fricatives=fricatives, progress=progress),
    ]
