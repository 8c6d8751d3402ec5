#!/usr/bin/env python3
"""Package a trained run as a shipped model (the default one, or another architecture), with its model card.

Evaluates the run's checkpoint, rounded as it will ship, on the held-out-text
split (and on each voice family in it), the held-out-speaker split and the
shipped evaluation corpus, then writes the safetensors file whose metadata
carries the model card (every training stage, followed back through
``--init`` checkpoints), and ``MODEL_CARD.md`` beside it.

Example (the command that made ``asr_introspect/data/default_model.safetensors``)::

    python data_prep/ship_default_model.py --run runs/small6q --checkpoint best \
        --test-text data/synth/test_text --test-speaker data/synth/test_speaker \
        --eval-corpus asr_introspect/data/eval_corpus --out asr_introspect/data --dtype nf4

The default model since #17 chose its checkpoint among several (``--candidates``) on
held-out synthetic speech of every voice family under every channel condition
(``--grid``, made by ``data_prep/eval_families.py``) and on the real-speech
development set (``--real``, made by ``data_prep/real_dev_set.py``); the card
then reports both. See ``asr_introspect/data/MODEL_CARD.md`` for the command.

The one that made the second architecture, ``asr_introspect/data/conformer_cpu.safetensors``::

    python data_prep/ship_default_model.py --run runs/conformer-cpu --checkpoint best \
        --test-text data/synth3000/test_text --test-speaker data/synth3000/test_speaker \
        --eval-corpus asr_introspect/data/eval_corpus --out asr_introspect/data --dtype float16 \
        --name conformer_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from asr_introspect.augment.conditions import CONDITIONS
from asr_introspect.corpus import filter_speakers, load_corpus
from asr_introspect.corpus.synth import FAMILIES, speaker_family
from asr_introspect.defaults import model_card_path
from asr_introspect.io import file_sha256, write_text_atomic
from asr_introspect.models import NF4, count_parameters, load_checkpoint, quantize_int8, quantize_nf4, save_checkpoint
from asr_introspect.training import evaluate, grouped_error_rates

_STORAGE = {
    "float16": "float16",
    "int8": "int8 with one float32 scale per output channel (biases and normalization parameters in float16); "
    "the error rates below are those of these rounded weights",
    "nf4": "4-bit NormalFloat codes with one float16 scale per 64 weights of an output channel "
    "(the output layer in int8 with one float32 scale per class; biases and BatchNorm in "
    "float16); the error rates below are those of these rounded weights",
}


def _augmentation(c: dict) -> str:
    """A training config's augmentation in words."""
    if c.get("augment") == "none":
        return "no augmentation"
    parts = []
    if [f for f in c.get("speed_factors", [1.0]) if f != 1.0]:
        parts.append("speed perturbation x" + "/".join(f"{f:g}" for f in c["speed_factors"]))
    if c.get("noise_probability", 0) > 0:
        lo, hi = c["noise_snr_db"]
        parts.append(f"white noise (p={c['noise_probability']:g}, {lo:g}-{hi:g} dB SNR)")
    if c.get("freq_masks", 0) > 0 or c.get("time_masks_per_second", 0) > 0:
        parts.append(
            f"SpecAugment-style masking ({c['freq_masks']} frequency masks of at most "
            f"{c['freq_mask_width']} bands, {c['time_masks_per_second']:g} time masks per second "
            f"of at most {c['time_mask_width']} frames)"
        )
    if c.get("augment") in ("channels", "full"):
        extra = ", VTLP, pitch shifts" if c["augment"] == "full" else ""
        parts.append(
            f"profile `{c['augment']}` (simulated rooms, coloured/babble noise 0-30 dB, gain, clipping, "
            f"8 kHz/mu-law/GSM-like channels{extra})"
        )
    return ", ".join(parts) if parts else "no augmentation"


def _stage_line(t: dict) -> str:
    """One training stage: steps, batch, schedule, data, augmentation, wall time."""
    c, d = t["config"], t["data"]
    hours = f" ({d['train_hours']:.1f} h)" if d.get("train_hours") else ""
    speakers = f", speakers `{d['speakers']}`" if d.get("speakers") else ""
    qat = (
        f"; quantization-aware (forward and backward passes at the {c['quantize_aware']}-rounded weights)"
        if c.get("quantize_aware")
        else ""
    )
    return (
        f"{t['step']} steps of batch {c['batch_size']} on {d.get('train_utterances')} utterances{hours} "
        f"(`{d.get('train')}`{speakers}), AdamW peak lr {c['lr']}, warm-up {c['warmup_steps']} steps then "
        f"cosine decay over {c['max_steps']} steps; {_augmentation(c)}{qat}; "
        f"{t['wall_seconds'] / 3600:.2f} h wall time on 2 CPU cores"
    )


def train_hours(data: dict) -> float | None:
    """Hours of speech a stage trained on (its ``train`` corpus, ``speakers`` applied).

    None when the corpus is not here or no longer has the stage's number of
    utterances (the path was reused for another corpus).
    """
    if not Path(data.get("train", "")).exists():
        return None
    utterances = load_corpus(data["train"])
    if data.get("speakers"):
        utterances = filter_speakers(utterances, data["speakers"], source=data["train"])
    if len(utterances) != data.get("train_utterances"):
        return None
    return sum(u.duration for u in utterances) / 3600


def earlier_stages(data: dict, max_stages: int = 32) -> list[dict]:
    """The training records of the stages before a run (its ``data`` record), oldest first.

    Follows ``init_from`` back through training checkpoints until one carries a
    model card (a shipped model: its ``earlier_stages`` and ``training`` end the
    chain). A missing file, or one whose sha256 is not the recorded
    ``init_sha256``, ends the chain with a warning on stderr.
    """
    stages: list[dict] = []
    while (path := data.get("init_from")) and len(stages) < max_stages:
        if not Path(path).is_file():
            print(
                f"warning: {path} (the weights this stage started from) is gone; "
                f"the card lists only the {len(stages) + 1} last stage(s)",
                file=sys.stderr,
            )
            break
        if data.get("init_sha256") and file_sha256(path) != data["init_sha256"]:
            print(
                f"warning: {path} is not the file this stage started from (sha256 differs); "
                f"the card lists only the {len(stages) + 1} last stage(s)",
                file=sys.stderr,
            )
            break
        _, meta = load_checkpoint(path)
        card = meta.get("model_card")
        if card:
            return [*card.get("earlier_stages", []), card["training"], *stages]
        stages.insert(0, meta["training"])
        data = meta["training"].get("data", {})
    return stages


def architecture_line(card: dict) -> str:
    """The card's architecture bullet, from the checkpoint's model config."""
    arch = card.get("architecture", "wav2letter")
    c = card.get("model_config", {})
    if arch == "conformer":
        return (
            f"Conformer CTC (torchaudio Conformer blocks), preset `{card['preset']}`: two stride-2 "
            f"convolutions (x4 subsampling in time), {c.get('n_layers', '?')} blocks of width {c.get('d_model', '?')} "
            f"with {c.get('n_heads', '?')} attention heads and convolution kernel {c.get('conv_kernel', '?')}, "
            "a linear CTC head"
        )
    if arch == "quartznet":
        return f"QuartzNet-style residual time-channel separable ConvNet, preset `{card['preset']}`"
    return (
        f"Wav2Letter-style 1D ConvNet, preset `{card['preset']}` (11 Conv1d layers conv1..conv11,\n"
        "  BatchNorm after each hidden convolution, ReLU)"
    )


def round_as_shipped(model, dtype: str):
    """Round ``model``'s weights in place as a checkpoint of ``dtype`` stores them; returns the torch dtype."""
    torch_dtype = {"nf4": NF4, "int8": torch.int8, "float16": torch.float16}[dtype]
    if torch_dtype == NF4:
        quantize_nf4(model)
    elif torch_dtype == torch.int8:
        quantize_int8(model.module)
    else:
        model.module.half().float()
    return torch_dtype


def _rates(result: dict) -> dict:
    return {k: result[k] for k in ("cer", "wer", "utterances")}


def evaluate_grid(model, root: Path) -> dict[str, dict[str, dict]]:
    """``{family: {condition: {"cer", "wer", "utterances"}}}`` for each corpus ``root/FAMILY/CONDITION``.

    The layout ``data_prep/eval_families.py`` writes; families and conditions in
    the toolkit's order (``FAMILIES``, ``CONDITIONS``), unknown names after them.
    """

    def order(names, known):
        return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))

    families = order([p.name for p in root.iterdir() if p.is_dir()], FAMILIES)
    grid: dict[str, dict[str, dict]] = {}
    for family in families:
        conditions = [p.name for p in (root / family).iterdir() if p.is_dir() and any(p.rglob("*.flac"))]
        for condition in order(conditions, CONDITIONS):
            grid.setdefault(family, {})[condition] = _rates(evaluate(model, load_corpus(root / family / condition)))
    if not grid:
        raise SystemExit(f"{root}: no FAMILY/CONDITION corpora (make them with data_prep/eval_families.py)")
    return grid


def evaluate_real(model, root: Path) -> dict[str, dict]:
    """``{"all": rates, SOURCE: rates, ...}`` on the real development set (its speakers are its sources)."""
    utterances = load_corpus(root)
    result = evaluate(model, utterances)
    sources = grouped_error_rates(result["examples"], {u.id: u.speaker for u in utterances})
    return {"all": _rates(result), **dict(sorted(sources.items()))}


def grid_mean_cer(grid: dict[str, dict[str, dict]]) -> float:
    """Unweighted mean CER over the grid's cells (each family x condition counts once)."""
    cells = [m["cer"] for conditions in grid.values() for m in conditions.values()]
    return sum(cells) / len(cells)


def selection_score(grid: dict, real: dict) -> float:
    """What ``--candidates`` minimizes: the mean of the grid's mean CER and the real set's CER."""
    return 0.5 * (grid_mean_cer(grid) + real["all"]["cer"])


def select_checkpoint(candidates: list[Path], dtype: str, grid_root: Path, real_root: Path) -> tuple[Path, dict]:
    """The candidate whose rounded weights score lowest (:func:`selection_score`), and the table of all."""
    rows = []
    for path in candidates:
        model, meta = load_checkpoint(path)
        round_as_shipped(model, dtype)
        grid, real = evaluate_grid(model, grid_root), evaluate_real(model, real_root)
        rows.append(
            {
                "path": str(path),
                "step": meta.get("training", {}).get("step"),
                "grid_cer": grid_mean_cer(grid),
                "real_cer": real["all"]["cer"],
                "score": selection_score(grid, real),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    best = min(rows, key=lambda r: r["score"])
    return Path(best["path"]), {"candidates": rows, "chosen": best["path"]}


def _grid_markdown(grid: dict[str, dict[str, dict]]) -> str:
    conditions = list(dict.fromkeys(c for row in grid.values() for c in row))
    head = "| family | " + " | ".join(conditions) + " |\n|---|" + "---|" * len(conditions)
    rows = [
        f"| {family} ({next(iter(row.values()))['utterances']}) | "
        + " | ".join(f"{row[c]['cer']:.3f} / {row[c]['wer']:.2f}" if c in row else "" for c in conditions)
        + " |"
        for family, row in grid.items()
    ]
    return "\n".join([head, *rows])


def _real_markdown(real: dict[str, dict]) -> str:
    rows = [
        f"| {'all' if name == 'all' else f'`{name}`'} | {m['utterances']} | {m['cer']:.3f} | {m['wer']:.3f} |"
        for name, m in real.items()
    ]
    return "| source | utterances | CER | WER |\n|---|---|---|---|\n" + "\n".join(rows)


def _selection_markdown(selection: dict) -> str:
    rows = "\n".join(
        f"| {r['step']} | {r['grid_cer']:.3f} | {r['real_cer']:.3f} | {r['score']:.3f} |"
        + (" chosen |" if r["path"] == selection["chosen"] else " |")
        for r in selection["candidates"]
    )
    return f"""Checkpoint selection: among the last stage's checkpoints below (of the rounded weights), the one
with the lowest mean of two error rates: the grid's mean CER (every family x condition cell counts
once) and the real development set's CER. Never on one family alone. The grid and real-development
rows are therefore slightly optimistic; the held-out-text, held-out-speaker and shipped evaluation
corpus rows never chose anything. Earlier stages chose on held-out text of their own speakers.

| step | grid mean CER | real dev CER | score | |
|---|---|---|---|---|
{rows}"""


def card_markdown(card: dict) -> str:
    t = card["training"]
    rows = "\n".join(
        f"| {name} | {m['utterances']} | {m['cer']:.3f} | {m['wer']:.3f} |" for name, m in card["evaluation"].items()
    )
    stages = card.get("earlier_stages", [])
    if stages:
        lines = [f"  {i + 1}. {_stage_line(s)};" for i, s in enumerate(stages)]
        lines.append(f"  {len(stages) + 1}. fine-tuning from stage {len(stages)} (`train --init`): {_stage_line(t)}.")
        total = sum(s["wall_seconds"] for s in stages) + t["wall_seconds"]
        training = "- Training, in stages:\n" + "\n".join(lines) + f"\n\n  Total wall time {total / 3600:.2f} h."
    else:
        training = f"- Training: {_stage_line(t)}."
    hop_ms = 1000 * card["features"]["hop_length"] / card["features"]["sample_rate"]
    rounded = " (of the rounded weights, in quantization-aware stages)" if t["config"].get("quantize_aware") else ""
    receptive = f"{card['receptive_field']} input frames"
    if card.get("global_context"):
        receptive = "the whole utterance (self-attention)"
    selection = (
        _selection_markdown(card["selection"])
        if card.get("selection")
        else f"""Checkpoint selection: in every stage, the weights with the lowest greedy CER on the first 200
held-out-text utterances of its speakers{rounded},
evaluated every {t["config"]["eval_every"]} steps in the last stage; the held-out-text rows are therefore
slightly optimistic. The held-out-speaker set was never used for any choice; the shipped evaluation
corpus never chose a checkpoint."""
    )
    grid = ""
    if card.get("grid"):
        grid = f"""
## By voice family and channel condition

Greedy CER / WER on held-out sentences spoken by each synthesizer family (utterances per cell in
brackets), copied under each channel condition (`asr_introspect.augment.conditions`: `reverb` a
simulated room, RT60 0.15-0.9 s; `noise` pink and `babble` five other utterances, both at 10 dB SNR;
`band_limit` an 8 kHz round trip; `mu_law` 8 kHz and 8-bit mu-law; `gsm_like` 8 kHz, 300-3400 Hz,
13 bits; `clipping` at 30 % of the peak). Mean CER over the cells: {grid_mean_cer(card["grid"]):.3f}.

{_grid_markdown(card["grid"])}
"""
    real = ""
    if card.get("real"):
        real = f"""
## Real speech

The real-speech development set (`data_prep/real_dev_set.py`): recordings of human speakers that
Debian packages ship with their texts (`alsa`: speaker-test prompts; `tuxpaint`, `tuxpaint_gb`: Tux
Paint's spoken stamp descriptions and British digits; `klettres`, `klettres_gb`: KLettres' American
and British words). Never trained on; short phrases and single words, so a sanity check more than a
benchmark.

{_real_markdown(card["real"])}
"""
    limits = (
        "trained on synthetic speech only; real recordings score "
        f"CER {card['real']['all']['cer']:.2f} (above), much worse than synthetic voices."
        if card.get("real")
        else "synthetic speech only (a few voices); expect much higher error rates on real recordings,\n"
        "and on voices the last stages did not train on (see the rows per voice family above)."
    )
    return f"""# Model card: {card.get("title", "the shipped default model")}

- Architecture: {architecture_line(card)}, {card["parameters"]:,} parameters, stored in
  {_STORAGE[card.get("dtype", "float16")]}.
- Input: {card["features"]["n_mels"]} log-mel bands, {card["features"]["sample_rate"]} Hz audio,
  hop {card["features"]["hop_length"]} samples ({hop_ms:.0f} ms), z-normalized per utterance.
- Output: 29 classes (CTC blank, space, apostrophe, a-z), one frame every
  {card["output_frame_ms"]:.0f} ms; receptive field {receptive}.
- Training data: synthesized speech (sentences from the Debian fortunes; the voice families of
  `docs/training.md`: flite, festival, espeak-ng and its Klatt variants, with speed/pitch variants);
  each stage below names the corpus and speakers it used and its augmentation.
{training}

## Greedy CTC error rates

| held-out set | utterances | CER | WER |
|---|---|---|---|
{rows}

{selection}

`held-out text`: sentences never seen in training, by the training speakers;
`held-out speaker`: a flite voice/speed/pitch configuration never seen in training;
`shipped evaluation corpus`: `asr_introspect/data/eval_corpus`, utterances with phone segments on
sentences no stage trained on (160 by flite voices, then 16 each by festival, espeak-ng and espeak-ng
Klatt voices, added with `data_prep/make_eval_corpus.py --add`).
{grid}{real}
## Reproduce

```
{card["command"]}
```

Limits: {limits}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--checkpoint", default="best", choices=("best", "model"))
    parser.add_argument(
        "--candidates",
        type=Path,
        nargs="+",
        default=None,
        help="choose among these checkpoints (instead of --checkpoint) on --grid and --real",
    )
    parser.add_argument("--grid", type=Path, default=None, help="FAMILY/CONDITION corpora (data_prep/eval_families.py)")
    parser.add_argument("--real", type=Path, default=None, help="the real-speech development set (real_dev_set.py)")
    parser.add_argument("--test-text", type=Path, required=True)
    parser.add_argument("--test-speaker", type=Path, required=True)
    parser.add_argument("--eval-corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", default="", help="the training command, for the card")
    parser.add_argument(
        "--name",
        default="default_model",
        help="file stem under --out: NAME.safetensors and its card (MODEL_CARD.md for the default model, else NAME.md)",
    )
    parser.add_argument("--title", default=None, help="the card's title (default: derived from --name)")
    parser.add_argument(
        "--dtype",
        default="nf4",
        choices=("nf4", "int8", "float16"),
        help="weights as shipped (default nf4: a quarter of float16, 2.3 MB for the small "
        "preset; the shipped assets' history budget has no room for int8 any more)",
    )
    args = parser.parse_args(argv)
    if args.candidates and not (args.grid and args.real):
        parser.error("--candidates needs --grid and --real (what the choice is made on)")

    selection = None
    weights = args.run / f"{args.checkpoint}.safetensors"
    if args.candidates:
        weights, selection = select_checkpoint(args.candidates, args.dtype, args.grid, args.real)
    model, meta = load_checkpoint(weights)
    dtype = round_as_shipped(model, args.dtype)  # evaluate exactly the weights that ship
    evaluation = {}
    for name, path in (
        ("held-out text", args.test_text),
        ("held-out speaker", args.test_speaker),
        ("shipped evaluation corpus", args.eval_corpus),
    ):
        utterances = load_corpus(path)
        result = evaluate(model, utterances, progress=True)
        evaluation[name] = {k: result[k] for k in ("cer", "wer", "utterances")}
        if name != "held-out speaker":  # per voice family: e.g. a flite-only fine-tune, and what it forgot
            families = grouped_error_rates(result["examples"], {u.id: speaker_family(u.speaker) for u in utterances})
            if len(families) > 1:
                evaluation.update({f"{name}, {family} voices": rates for family, rates in sorted(families.items())})
    data = meta["training"]["data"]
    earlier = earlier_stages(data)
    for stage in [*earlier, meta["training"]]:
        if not stage["data"].get("train_hours") and (hours := train_hours(stage["data"])):
            stage["data"]["train_hours"] = hours
    fm = model.frame_map
    model_config = model.model_config.get("config", {})
    default = args.name == "default_model"
    card = {
        "title": args.title or ("the shipped default model" if default else f"the shipped model `{args.name}`"),
        "architecture": model.model_config.get("architecture", "wav2letter"),
        "model_config": model_config,
        "global_context": fm.first_global is not None,
        "preset": model_config.get("preset", "small"),
        "parameters": count_parameters(model.module),
        "dtype": args.dtype,
        "features": model.feature_config.to_dict(),
        "receptive_field": model.receptive_field,
        "output_frame_ms": 1000 * fm.layer(model.output_layer).stride * model.feature_config.frame_seconds,
        "training": meta["training"],
        "earlier_stages": earlier,
        "evaluation": evaluation,
        "grid": evaluate_grid(model, args.grid) if args.grid else None,
        "real": evaluate_real(model, args.real) if args.real else None,
        "selection": selection,
        "command": args.command,
    }
    metadata = {
        **meta,
        "model_card": card,
        "metrics": {
            "cer": evaluation["shipped evaluation corpus"]["cer"],
            "wer": evaluation["shipped evaluation corpus"]["wer"],
        },
    }
    path = args.out / f"{args.name}.safetensors"
    save_checkpoint(path, model, metadata=metadata, dtype=dtype)
    write_text_atomic(model_card_path(path), card_markdown(card))
    print(json.dumps({"evaluation": evaluation, "path": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
