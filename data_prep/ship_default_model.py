#!/usr/bin/env python3
"""Package a trained run as the shipped default model, with its model card.

Evaluates the run's checkpoint on the held-out-text split, the held-out-speaker
split and the shipped evaluation corpus, then writes an fp16 safetensors file
whose metadata carries the model card, and ``MODEL_CARD.md`` beside it.

Example (the command that made ``asr_introspect/data/default_model.safetensors``)::

    python data_prep/ship_default_model.py --run runs/small --checkpoint best \
        --test-text data/synth/test_text --test-speaker data/synth/test_speaker \
        --eval-corpus asr_introspect/data/eval_corpus --out asr_introspect/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from asr_introspect.corpus import load_corpus
from asr_introspect.io import write_text_atomic
from asr_introspect.models import NF4, count_parameters, load_checkpoint, quantize_int8, quantize_nf4, save_checkpoint
from asr_introspect.training import evaluate


_STORAGE = {"float16": "float16",
            "int8": "int8 with one float32 scale per output channel (biases and BatchNorm in float16); "
                    "the error rates below are those of these rounded weights",
            "nf4": "4-bit NormalFloat codes with one float16 scale per 64 weights of an output channel "
                   "(biases and BatchNorm in float16); the error rates below are those of these rounded weights"}


def _stage_line(t: dict) -> str:
    """One training stage: steps, batch, schedule, data, wall time."""
    c, d = t["config"], t["data"]
    hours = f" ({d['train_hours']:.1f} h)" if d.get("train_hours") else ""
    return (f"{t['step']} steps of batch {c['batch_size']} on {d.get('train_utterances')} utterances{hours} "
            f"(`{d.get('train')}`), AdamW peak lr {c['lr']}, warm-up {c['warmup_steps']} steps then cosine "
            f"decay over {c['max_steps']} steps; {t['wall_seconds'] / 3600:.2f} h wall time on 2 CPU cores")


def card_markdown(card: dict) -> str:
    t = card["training"]
    rows = "\n".join(f"| {name} | {m['utterances']} | {m['cer']:.3f} | {m['wer']:.3f} |"
                     for name, m in card["evaluation"].items())
    stages = card.get("earlier_stages", [])
    if stages:
        lines = [f"  {i + 1}. {_stage_line(s)};" for i, s in enumerate(stages)]
        lines.append(f"  {len(stages) + 1}. fine-tuning from stage {len(stages)} (`train --init`): {_stage_line(t)}.")
        total = sum(s["wall_seconds"] for s in stages) + t["wall_seconds"]
        training = "- Training, in stages:\n" + "\n".join(lines) + f"\n\n  Total wall time {total / 3600:.2f} h."
    else:
        training = f"- Training: {_stage_line(t)}."
    return f"""# Model card: the shipped default model

- Architecture: Wav2Letter-style 1D ConvNet, preset `{card['preset']}` (11 Conv1d layers conv1..conv11,
  BatchNorm after each hidden convolution, ReLU), {card['parameters']:,} parameters, stored in
  {_STORAGE[card.get('dtype', 'float16')]}.
- Input: {card['features']['n_mels']} log-mel bands, {card['features']['sample_rate']} Hz audio,
  hop {card['features']['hop_length']} samples ({1000 * card['features']['hop_length'] / card['features']['sample_rate']:.0f} ms), z-normalized per utterance.
- Output: 29 classes (CTC blank, space, apostrophe, a-z), one frame every
  {card['output_frame_ms']:.0f} ms; receptive field {card['receptive_field']} input frames.
- Training data: synthesized speech (flite voices kal, kal16, awb, rms, slt and espeak-ng voices
  with speed/pitch variants; sentences from the Debian fortunes); augmentation: speed perturbation
  {t['config']['speed_factors']}, white noise (p={t['config']['noise_probability']}),
  SpecAugment-style masking.
{training}

## Greedy CTC error rates

| held-out set | utterances | CER | WER |
|---|---|---|---|
{rows}

Checkpoint selection: the weights with the lowest greedy CER on the first 200 held-out-text
utterances, evaluated every {t['config']['eval_every']} steps; the held-out-text rows are therefore
slightly optimistic, the held-out-speaker set was never used for any choice.

`held-out text`: sentences never seen in training, by the training speakers;
`held-out speaker`: a flite voice/speed/pitch configuration never seen in training;
`shipped evaluation corpus`: `asr_introspect/data/eval_corpus` (a held-out-text subset with phone
segments).

## Reproduce

```
{card['command']}
```

Limits: synthetic speech only (a few voices); expect much higher error rates on real recordings.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--checkpoint", default="best", choices=("best", "model"))
    parser.add_argument("--test-text", type=Path, required=True)
    parser.add_argument("--test-speaker", type=Path, required=True)
    parser.add_argument("--eval-corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", default="", help="the training command, for the card")
    parser.add_argument("--dtype", default="nf4", choices=("nf4", "int8", "float16"),
                        help="weights as shipped (default nf4: a quarter of float16, 2.3 MB for the small "
                             "preset; the shipped assets' history budget has no room for int8 any more)")
    args = parser.parse_args(argv)

    model, meta = load_checkpoint(args.run / f"{args.checkpoint}.safetensors")
    dtype = {"nf4": NF4, "int8": torch.int8, "float16": torch.float16}[args.dtype]
    if dtype == NF4:  # evaluate exactly the weights that ship
        quantize_nf4(model.module)
    elif dtype == torch.int8:
        quantize_int8(model.module)
    else:
        model.module.half().float()
    evaluation = {}
    for name, path in (("held-out text", args.test_text), ("held-out speaker", args.test_speaker),
                       ("shipped evaluation corpus", args.eval_corpus)):
        result = evaluate(model, load_corpus(path), progress=True)
        evaluation[name] = {k: result[k] for k in ("cer", "wer", "utterances")}
    data = meta["training"]["data"]
    if Path(data.get("train", "")).exists():
        data["train_hours"] = sum(u.duration for u in load_corpus(data["train"])) / 3600
    earlier = []
    if data.get("init_from") and Path(data["init_from"]).is_file():
        _, init_meta = load_checkpoint(data["init_from"])
        init_card = init_meta.get("model_card", {})
        earlier = [*init_card.get("earlier_stages", []), init_card.get("training") or init_meta["training"]]
    fm = model.frame_map
    card = {
        "preset": model.model_config.get("config", {}).get("preset", "small"),
        "parameters": count_parameters(model.module),
        "dtype": args.dtype,
        "features": model.feature_config.to_dict(),
        "receptive_field": model.receptive_field,
        "output_frame_ms": 1000 * fm.layer(model.output_layer).stride * model.feature_config.frame_seconds,
        "training": meta["training"],
        "earlier_stages": earlier,
        "evaluation": evaluation,
        "command": args.command,
    }
    metadata = {**meta, "model_card": card,
                "metrics": {"cer": evaluation["shipped evaluation corpus"]["cer"],
                            "wer": evaluation["shipped evaluation corpus"]["wer"]}}
    save_checkpoint(args.out / "default_model.safetensors", model, metadata=metadata, dtype=dtype)
    write_text_atomic(args.out / "MODEL_CARD.md", card_markdown(card))
    print(json.dumps({"evaluation": evaluation, "path": str(args.out / "default_model.safetensors")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
