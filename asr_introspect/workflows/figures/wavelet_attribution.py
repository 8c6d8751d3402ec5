"""(g) Wavelet attribution (WAM): what the evidence for a letter is made of, scale by scale, and how faithful.

Explains letters of held-out utterances in the wavelet domain of the waveform
(:mod:`asr_introspect.attribution.wavelets`): per-scale maps of one letter
frame (WAM gradient, SmoothGrad and IG; Haar and a smoother wavelet) and of a
word, under the spectrogram and the letter spikes; the share of relevance per
band for groups of letters; listenable explanations (the utterance resynthesized
from the top q % of its coefficients for the whole transcript, and from the
rest, each transcribed by the model); and the faithfulness table (insertion,
deletion, Faith = Ins - Del) of WAM beside saliency, SmoothGrad, IG, Grad-CAM
and LRP on the log-mel and the random baselines, on the same model and frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from asr_introspect.attribution.wam_faithfulness import (
    METHOD_LABELS,
    PAPER_ESC50,
    faithfulness_table,
    letter_frames,
)
from asr_introspect.attribution.wavelets import (
    WAVELET_METHODS,
    WaveletMap,
    band_frequencies,
    band_names,
    explain_targets,
    letter_spans,
    listen,
    model_features,
    wavedec,
    wavelet_attribution,
    word_spans,
)
from asr_introspect.audio import load_audio, save_audio
from asr_introspect.decoding import error_rates, greedy_decode
from asr_introspect.errors import InputError
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.common import save_figure
from asr_introspect.plotting.wavelets import band_labels, plot_band_shares, plot_faith_curves, plot_scale_maps
from asr_introspect.workflows.checks import select_utterances
from asr_introspect.workflows.figures.section import Section

#: letter groups for the band shares (letters whose sound is mostly noise vs voiced, tonal)
LETTER_GROUPS = {"s z f (fricatives)": "szfx", "t k p (stops)": "tkp", "a e i o u (vowels)": "aeiou"}


@dataclass
class Settings:
    wavelet: str = "haar"
    smooth_wavelet: str = "sym4"
    levels: int = 3
    letter: str = "s"  # preferred letter for the example frame (else the most confident letter)
    example_max_seconds: float = 3.5
    n_samples: int = 16  # SmoothGrad draws (both domains)
    noise_level: float = 0.1
    ig_steps: int = 32  # integrated-gradients steps (both domains)
    listen_method: str = "wam-smoothgrad"
    listen_fractions: tuple[float, ...] = (0.05, 0.2)
    table_utterances: int = 8  # utterances of the faithfulness table and the band shares
    frames_per_utterance: int = 6
    n_steps: int = 20  # insertion / deletion steps
    n_random: int = 2  # random maps per frame for the random baselines
    seed: int = 0


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings(
    n_samples=4, ig_steps=8, listen_fractions=(0.2,), table_utterances=2, frames_per_utterance=2, n_steps=8, n_random=1
)


#: the demo's settings: the paper's wavelet and methods on fewer frames and draws
DEMO = Settings(n_samples=4, ig_steps=8, table_utterances=3, frames_per_utterance=3, n_steps=10, n_random=1)


def _check(settings: Settings) -> None:
    if settings.listen_method not in WAVELET_METHODS:
        raise InputError(f"--listen-method {settings.listen_method!r}: use one of {', '.join(WAVELET_METHODS)}")
    if not settings.listen_fractions or not all(0 < q < 1 for q in settings.listen_fractions):
        raise InputError(f"--listen-fractions {list(settings.listen_fractions)}: fractions in (0, 1), e.g. [0.05, 0.2]")
    for name in ("n_samples", "ig_steps", "table_utterances", "frames_per_utterance", "n_steps", "levels"):
        if getattr(settings, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(settings, name)}: must be >= 1")


def _logits(model, wave: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.logits(model_features(model, torch.as_tensor(wave)[None]))[0][0]


def _example(model, utterances, settings: Settings):
    """(utterance, waveform, logits, frame, letter): a frame confidently predicted as a letter, the
    preferred one if any utterance has it."""
    alphabet = model.alphabet
    wanted = alphabet.index(settings.letter) if settings.letter in alphabet.symbols else None
    best = None
    for utt in utterances:
        if utt.duration is not None and utt.duration > settings.example_max_seconds:
            continue
        wave = load_audio(utt.audio_path, sample_rate=model.feature_config.sample_rate)
        logits = _logits(model, wave)
        probs = logits.softmax(0)
        for t in letter_frames(logits.numpy(), alphabet, limit=logits.shape[1]):
            k = int(probs[:, t].argmax())
            score = float(probs[k, t]) + (1.0 if k == wanted else 0.0)
            if best is None or score > best[0]:
                best = (score, utt, wave, logits, int(t), k)
        if best is not None and best[0] > 1.9:
            break
    if best is None:
        raise InputError("no frame of the corpus is predicted as a letter; is the model trained?")
    return best[1:]


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
    """Per-scale maps, band shares, listenable explanations and the faithfulness table under ``out``."""
    settings = settings or Settings()
    _check(settings)
    out = Path(out)
    config, alphabet = model.feature_config, model.alphabet
    hop = int(round(config.frame_seconds * config.sample_rate))
    bands = band_names(settings.levels)
    labels = band_labels(bands, band_frequencies(settings.levels, config.sample_rate))
    methods = {
        "wam-smoothgrad": {"n_samples": settings.n_samples, "noise_level": settings.noise_level},
        "wam-ig": {"steps": settings.ig_steps},
    }
    steps = ("example frame", "per-scale maps", "word", "band shares", "listening", "faithfulness")
    bar = tqdm(total=len(steps), desc="wavelets", unit="step", disable=not progress, leave=False)

    def step(index: int) -> None:
        bar.set_postfix_str(steps[index])
        if index:
            bar.update(1)

    step(0)
    chosen = select_utterances(utterances, data_path, what="explain")
    n_table = min(settings.table_utterances, len(chosen))
    table_utterances = [chosen[i * len(chosen) // n_table] for i in range(n_table)]  # spread over the corpus
    utt, wave, logits, frame, letter = _example(model, utterances, settings)
    symbol = alphabet.symbols[letter]
    path = logits.argmax(0).numpy()
    n_input = config.frames(len(wave))
    features = model_features(model, torch.as_tensor(wave)[None])[0].float().numpy()
    times = model.frame_map.center(model.output_layer, np.arange(logits.shape[1])) * config.frame_seconds * 1000
    layer = model.frame_map.layer(model.output_layer)
    field = (
        max(0, layer.offset + frame * layer.stride),
        min(n_input, layer.offset + frame * layer.stride + layer.receptive_field),
    )
    common = dict(feature_config=config, alphabet=alphabet, path=path, output_times_ms=times)

    step(1)
    frame_maps, shares, crops = {}, {}, {}
    for method in WAVELET_METHODS:
        result = wavelet_attribution(
            model,
            wave,
            method,
            frames=[frame],
            target=[letter],
            wavelet=settings.wavelet,
            levels=settings.levels,
            **methods.get(method, {}),
        )
        frame_maps[f"{method} ({settings.wavelet})"] = result.scalogram(0, hop, n_input)
        shares[method] = result.map(frame).band_shares()
        crops[method] = result.relevance[0]
    # with a gain-normalizing front end, IG from silence is the gradient times the coefficient (up to a factor)
    coefficients = result.geometry.crop(wavedec(torch.as_tensor(wave), settings.wavelet, settings.levels), [frame])
    inside = result.geometry.inside([frame])[0]
    ig_vs_gradient_input = float(
        spearmanr(crops["wam-ig"][inside], (crops["wam-grad"] * coefficients[0].numpy())[inside]).statistic
    )
    figures = []
    fig = plot_scale_maps(
        features,
        frame_maps,
        labels,
        highlight=[frame],
        field=field,
        title=f"{utt.id}, frame {frame} predicted '{symbol}': WAM per scale",
        **common,
    )
    figures.append(
        {
            "path": save_figure(fig, out / "g_frame_scales.png")[0],
            "caption": f"Output frame {frame} ('{symbol}', red) of {utt.id}: |relevance| of the wavelet "
            f"coefficients ({settings.wavelet}, {settings.levels} levels) per band and time for the WAM "
            "gradient, SmoothGrad and IG, under the spectrogram and the model's letter spikes. Cyan: the "
            "frame's receptive field.",
        }
    )
    smooth = wavelet_attribution(
        model,
        wave,
        "wam-smoothgrad",
        frames=[frame],
        target=[letter],
        wavelet=settings.smooth_wavelet,
        levels=settings.levels,
        **methods["wam-smoothgrad"],
    )
    wavelet_maps = {
        f"wam-smoothgrad ({settings.wavelet})": frame_maps[f"wam-smoothgrad ({settings.wavelet})"],
        f"wam-smoothgrad ({settings.smooth_wavelet})": smooth.scalogram(0, hop, n_input),
    }
    fig = plot_scale_maps(
        features,
        wavelet_maps,
        labels,
        highlight=[frame],
        field=field,
        title=f"the same frame: {settings.wavelet} vs {settings.smooth_wavelet}",
        **common,
    )
    figures.append(
        {
            "path": save_figure(fig, out / "g_wavelets.png")[0],
            "caption": f"WAM SmoothGrad of the same frame with {settings.wavelet} and with the smoother "
            f"{settings.smooth_wavelet}: Haar coefficients are blocks of 2^j samples (sharp in time, leaky "
            "in frequency); longer filters separate the bands better.",
        }
    )

    step(2)
    words = word_spans(logits, alphabet)
    word = next((w for w in words if w[1][0] <= frame < w[1][-1] + 1), words[0] if words else None)
    word_map = None
    if word is not None:
        text, word_frames, word_classes = word
        word_map = explain_targets(
            model,
            wave,
            word_frames,
            word_classes,
            settings.listen_method,
            wavelet=settings.wavelet,
            levels=settings.levels,
            **methods.get(settings.listen_method, {}),
        )
        fig = plot_scale_maps(
            features,
            {f"{settings.listen_method}: word '{text}'": word_map.scalogram(hop, n_input)},
            labels,
            highlight=list(word_frames),
            title=f"{utt.id}: the word '{text}'",
            **common,
        )
        figures.append(
            {
                "path": save_figure(fig, out / "g_word_scales.png")[0],
                "caption": f"The word '{text}' (frames {word_frames[0]}-{word_frames[-1]}, red): WAM of the "
                "sum of its frames' path logits (letters and the blanks between them).",
            }
        )

    step(3)
    # per letter group, the mean share of |relevance| per band: of the gradient (sensitivity: what would
    # change the letter) and of gradient x coefficient (contribution: what the letter rests on; WAM-IG
    # from silence is proportional to it with this front end)
    kinds = ("gradient", "gradient x coefficient")
    group_totals = {(g, k): np.zeros(len(bands)) for g in LETTER_GROUPS for k in kinds}
    group_frames = dict.fromkeys(LETTER_GROUPS, 0)
    waves = []
    for u in table_utterances:
        w = load_audio(u.audio_path, sample_rate=config.sample_rate)
        waves.append(w)
        lg = _logits(model, w)
        frames = letter_frames(lg.numpy(), alphabet, limit=lg.shape[1])
        if not len(frames):
            continue
        result = wavelet_attribution(
            model, w, "wam-grad", frames=frames, wavelet=settings.wavelet, levels=settings.levels
        )
        coefficients = result.geometry.crop(wavedec(torch.as_tensor(w), settings.wavelet, settings.levels), frames)
        for i, t in enumerate(result.targets):
            group = next((g for g, letters in LETTER_GROUPS.items() if alphabet.symbols[int(t)] in letters), None)
            if group is None:
                continue
            group_frames[group] += 1
            rows = {
                "gradient": result.relevance[i],
                "gradient x coefficient": result.relevance[i] * coefficients[i].numpy(),
            }
            for kind, row in rows.items():
                totals = np.array([np.abs(b).sum() for b in result.geometry.split(row)])
                group_totals[group, kind] += totals / max(totals.sum(), 1e-30)
    group_shares = {
        f"{g.split(' (')[0]}: {k} ({group_frames[g]})": dict(
            zip(bands, (group_totals[g, k] / group_frames[g]).tolist())
        )
        for k in kinds
        for g in LETTER_GROUPS
        if group_frames[g]
    }
    if group_shares:
        fig = plot_band_shares(
            group_shares,
            bands,
            title=f"share of |relevance| per band ({settings.wavelet}), mean over the letter frames of "
            f"{len(table_utterances)} utterances",
        )
        figures.append(
            {
                "path": save_figure(fig, out / "g_band_shares.png")[0],
                "caption": "Where the evidence for a letter lies in scale: the mean share of |relevance| per band over "
                "the letter frames of each group (frames in brackets), for the WAM gradient (sensitivity) and for "
                "gradient x coefficient (contribution). Each level has half the coefficients of the next finer "
                "one, so a map of equal sensitivity everywhere puts 1/2 of its mass in d1, 1/4 in d2, 1/8 in d3 "
                "and 1/8 in a3.",
            }
        )

    step(4)
    audio, listening = [], []
    spans = letter_spans(logits, alphabet)
    transcript_frames = np.concatenate([s[1] for s in spans]) if spans else np.array([frame])
    transcript_classes = np.concatenate([s[2] for s in spans]) if spans else np.array([letter])
    relevance = explain_targets(
        model,
        wave,
        transcript_frames,
        transcript_classes,
        settings.listen_method,
        wavelet=settings.wavelet,
        levels=settings.levels,
        **methods.get(settings.listen_method, {}),
    )
    original_text = greedy_decode(logits[None], None, alphabet)[0]
    audio_dir = out / "audio"
    audio.append(
        {
            "path": save_audio(audio_dir / "original.wav", wave, config.sample_rate),
            "caption": f"{utt.id}, original: model hears '{original_text}'",
        }
    )
    magnitude = WaveletMap(
        "magnitude",
        [np.abs(b.numpy()) for b in wavedec(torch.as_tensor(wave), settings.wavelet, settings.levels)],
        settings.wavelet,
        settings.levels,
        len(wave),
        config.sample_rate,
        transcript_frames,
        transcript_classes,
    )
    # what is played: the top q / the rest for the whole transcript and for the example word (by the
    # method's relevance); what is only reported: the same split by coefficient magnitude
    sources = [("transcript", settings.listen_method, relevance, True), ("transcript", "magnitude", magnitude, False)]
    if word_map is not None:
        sources.append((f"word '{word[0]}'", settings.listen_method, word_map, True))
    for target, ranking, source, played in sources:
        for item in listen(model, wave, source, settings.listen_fractions):
            q = item["fraction"]
            pct = f"{100 * q:g}"
            entry = {
                "target": target,
                "ranking": ranking,
                "fraction": q,
                "top_text": item["top_text"],
                "rest_text": item["rest_text"],
            }
            for part in ("top", "rest"):
                entry[f"{part}_cer_vs_model"] = error_rates([original_text], [item[f"{part}_text"]])[0]
                entry[f"{part}_cer_vs_reference"] = error_rates([utt.text], [item[f"{part}_text"]])[0]
                if not played:
                    continue
                what = f"the top {pct} % of coefficients" if part == "top" else f"all but the top {pct} %"
                name = "transcript" if target == "transcript" else "word"
                audio.append(
                    {
                        "path": save_audio(audio_dir / f"{name}_{part}_{pct}pct.wav", item[part], config.sample_rate),
                        "caption": f"{what} by {ranking} relevance for the {target}: the model hears "
                        f"'{item[f'{part}_text']}' (CER {entry[f'{part}_cer_vs_model']:.2f} against its transcript "
                        "of the original)",
                    }
                )
            listening.append(entry)

    step(5)
    table = faithfulness_table(
        model,
        waves,
        [u.id for u in table_utterances],
        frames_per_utterance=settings.frames_per_utterance,
        wavelet=settings.wavelet,
        levels=settings.levels,
        n_steps=settings.n_steps,
        n_samples=settings.n_samples,
        noise_level=settings.noise_level,
        ig_steps=settings.ig_steps,
        n_random=settings.n_random,
        seed=settings.seed,
    )
    bar.update(1)
    bar.close()
    fig = plot_faith_curves(table.curves, {k: METHOD_LABELS.get(k, k) for k in table.curves})
    figures.append(
        {
            "path": save_figure(fig, out / "g_faithfulness.png")[0],
            "caption": "Mean insertion (left) and deletion (right) curves: the target letter's probability "
            "as the most relevant units are restored or removed; WAM in the wavelet domain (solid), the "
            "log-mel methods over time-frequency bins (dashed), random maps in grey.",
        }
    )

    rows = table.rows
    numbers = {
        "example": utt.id,
        "frame": frame,
        "letter": symbol,
        "table frames": table.n_frames,
        "table utterances": len(table.utterances),
    }
    for name in ("wam-grad", "wam-smoothgrad", "wam-ig", "integrated-gradients", "random (wavelet)"):
        if name in rows:
            numbers[f"Faith {name}"] = round(rows[name]["faith"], 3)
    numbers["Spearman WAM-IG vs gradient x coefficient"] = round(ig_vs_gradient_input, 3)
    for entry in listening:
        for part in ("top", "rest"):
            key = f"CER {part} {100 * entry['fraction']:g} % ({entry['ranking']}, {entry['target']})"
            numbers[key] = round(entry[f"{part}_cer_vs_model"], 3)
    save_npz(
        out / "g_wavelets.npz",
        features=features,
        frame=frame,
        letter=letter,
        **{f"scales_{k.split(' ')[0]}": v for k, v in frame_maps.items()},
        transcript_relevance=relevance.flat(),
    )
    save_json(
        out / "g_wavelets.json",
        {
            "settings": asdict(settings),
            "numbers": numbers,
            "faithfulness": table.to_dict(),
            "paper_esc50": PAPER_ESC50,
            "band_shares_example": shares,
            "band_shares_groups": group_shares,
            "listening": listening,
            "word": None if word is None else word[0],
        },
    )
    text = (
        "WAM explains a frame's letter logit through the wavelet coefficients of the waveform: the gradient, "
        "SmoothGrad and integrated gradients with respect to each coefficient, the path running through the "
        "inverse transform, the log-mel front end and the model. Each band (a approximation, d details, from "
        "coarse to fine) is one octave, so the maps say at which scale the evidence lies: fine details carry "
        "transients and frication noise, coarse bands voicing and formant structure. Resynthesizing the utterance "
        "from the most relevant coefficients for its transcript makes the explanation audible; the model's "
        "transcript of each version tells whether what was kept suffices. The table measures faithfulness "
        f"({table.n_frames} letter frames of {len(table.utterances)} utterances): Ins and Del are the areas under "
        "the letter's probability as units are restored or removed in relevance order, Faith = Ins - Del. "
        f"For reference, the WAM paper reports on ESC-50 (sound classification) IG Faith "
        f"{PAPER_ESC50['integrated-gradients']['faith']}, WAM-IG Faith {PAPER_ESC50['wam-ig']['faith']} and "
        f"WAM-SmoothGrad Ins {PAPER_ESC50['wam-smoothgrad']['ins']}."
    )
    tables = [table.table()]
    if listening:
        tables.append(
            {
                "caption": f"Listening: the model's transcript of the utterance resynthesized from the top q of its "
                f"coefficients and from the rest, ranked by {settings.listen_method} relevance for the whole "
                f"transcript or one word or, for reference, by magnitude; CER against the model's transcript of "
                f"the original, '{original_text}'",
                "columns": ["relevance for", "ranking", "q", "top q: transcript", "CER", "rest: transcript", "CER"],
                "rows": [
                    [
                        e["target"],
                        e["ranking"],
                        e["fraction"],
                        e["top_text"],
                        round(e["top_cer_vs_model"], 3),
                        e["rest_text"],
                        round(e["rest_cer_vs_model"], 3),
                    ]
                    for e in listening
                ],
            }
        )
    return Section("wavelets", "Wavelet attribution (WAM)", text, figures, numbers, audio, tables)
