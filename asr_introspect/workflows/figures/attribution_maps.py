"""(a) Sensitivity vs LRP for one spectrogram frame predicted as a letter, with sanity checks.

Explains the letter logit of one output frame of a held-out utterance with
sensitivity (the gradient) and LRP, draws both side by side on the frame's
receptive field, and measures on a handful of letter frames whether the maps
depend on the model (cascading randomization) and are faithful (deletion and
insertion curves against random orders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from asr_introspect.attribution import attribute, faithfulness, randomization_test
from asr_introspect.errors import InputError
from asr_introspect.features import featurize_file
from asr_introspect.io import save_json, save_npz
from asr_introspect.plotting.attribution import plot_frame_attribution, plot_randomization
from asr_introspect.plotting.common import save_figure
from asr_introspect.workflows.figures.section import Section


@dataclass
class Settings:
    method: str = "lrp-epsilon-plus"
    compare: str = "sensitivity"
    letter: str = "s"  # preferred letter for the example frame (else the most confident letter)
    example_max_seconds: float = 3.5
    check_frames: int = 8  # letter frames used for the randomization and faithfulness numbers
    seed: int = 0


#: small settings for smoke tests (``asr-introspect demo --fast``)
FAST = Settings(check_frames=3)


def _example(model, utterances, settings):
    """(utterance, features, frame, letter index): a frame confidently predicted as a letter."""
    fc, alphabet = model.feature_config, model.alphabet
    wanted = alphabet.index(settings.letter) if settings.letter in alphabet.symbols else None
    best = None
    for utt in utterances:
        if utt.duration is not None and utt.duration > settings.example_max_seconds:
            continue
        features = featurize_file(utt.audio_path, fc)
        with torch.no_grad():
            logits, _ = model.logits(features[None])
        probs = logits[0].softmax(0)
        letters = torch.tensor(
            alphabet.letter_indices[2:] if len(alphabet.letter_indices) > 2 else alphabet.letter_indices
        )
        predicted = probs.argmax(0)
        for t in range(probs.shape[1]):
            k = int(predicted[t])
            if k in letters.tolist():
                score = float(probs[k, t]) + (1.0 if k == wanted else 0.0)
                if best is None or score > best[0]:
                    best = (score, utt, features, t, k)
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
    """Draw the example frame's maps and measure the sanity checks; write figures, npz and json under ``out``."""
    settings = settings or Settings()
    out = Path(out)
    steps = ("example frame", settings.method, settings.compare, "randomization test", "faithfulness")
    bar = tqdm(total=len(steps), desc="attribution", unit="step", disable=not progress, leave=False)

    def step(index: int) -> None:
        bar.set_postfix_str(steps[index])
        if index:
            bar.update(1)

    step(0)
    utt, features, frame, letter = _example(model, utterances, settings)
    symbol = model.alphabet.symbols[letter]
    step(1)
    main = attribute(model, features, settings.method, frames=[frame], target="predicted-letter")
    step(2)
    other = attribute(model, features, settings.compare, frames=[frame], target="predicted-letter")
    figures = []
    fig = plot_frame_attribution(features.numpy(), main, frame, model.feature_config, model.alphabet, compare=other)
    figures.append(
        {
            "path": save_figure(fig, out / "a_frame_attribution.png")[0],
            "caption": f"{utt.id}, output frame {frame} predicted as '{symbol}': the input around the "
            f"frame's receptive field, {settings.method} (LRP) and {settings.compare}.",
        }
    )
    # letter frames of the same utterance for the sanity checks
    with torch.no_grad():
        logits, _ = model.logits(features[None])
    predicted = logits[0].argmax(0).numpy()
    letter_frames = [t for t in range(len(predicted)) if predicted[t] in model.alphabet.letter_indices[2:]]
    rng = np.random.default_rng(settings.seed)
    if len(letter_frames) > settings.check_frames:
        letter_frames = sorted(rng.choice(letter_frames, settings.check_frames, replace=False).tolist())
    methods = (settings.method, settings.compare)
    step(3)
    randomization = randomization_test(
        model, features, methods=methods, frames=letter_frames, target="predicted-letter", seed=settings.seed
    )
    figures.append(
        {
            "path": save_figure(plot_randomization(randomization), out / "a_randomization.png")[0],
            "caption": "Cascading randomization (output layer first): rank correlation of each method's "
            "maps with the trained model's maps. A map that stays correlated does not depend "
            "on the randomized layers.",
        }
    )
    step(4)
    table = faithfulness(
        model,
        features,
        methods=methods,
        frames=letter_frames,
        target="predicted-letter",
        n_steps=10,
        n_random=2,
        seed=settings.seed,
    )
    bar.update(1)
    bar.close()
    columns = sorted(next(iter(table.values())).keys())
    rows = [[name] + [round(float(values[c]), 3) for c in columns] for name, values in table.items()]
    save_npz(
        out / "a_attribution.npz",
        features=features.numpy(),
        frame=frame,
        letter=letter,
        relevance=main.relevance,
        compare=other.relevance,
        spearman=randomization.spearman,
        spearman_abs=randomization.spearman_abs,
    )
    numbers = {"example": utt.id, "frame": frame, "letter": symbol, "letter frames checked": len(letter_frames)}
    for name, values in table.items():
        if "deletion/frame" in values:
            numbers[f"deletion AUC by frame: {name}"] = round(float(values["deletion/frame"]), 3)
    save_json(
        out / "a_attribution.json",
        {
            "settings": asdict(settings),
            "numbers": numbers,
            "faithfulness": table,
            "randomization": randomization.summary(),
        },
    )
    text = (
        "LRP and sensitivity explain one output frame's letter logit in terms of the input features. "
        "Sensitivity (the gradient) shows where a small change would change the logit; LRP distributes "
        "the logit itself over the input. Both maps are confined to the frame's receptive field "
        "(about 1.5 s). The sanity checks ask whether a map depends on the model at all (randomizing "
        "layers from the output down should destroy it) and whether deleting the most relevant input "
        "frames first lowers the letter's log-probability faster than deleting random frames (lower "
        "deletion AUC is better; higher insertion AUC is better)."
    )
    return Section(
        "attribution",
        "Sensitivity vs LRP for one frame",
        text,
        figures,
        numbers,
        tables=[
            {
                "caption": "Faithfulness: area under the target letter's log-probability curve",
                "columns": ["method"] + columns,
                "rows": rows,
            }
        ],
    )
