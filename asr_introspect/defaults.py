"""Where the shipped default model and evaluation corpus live inside the package."""

from __future__ import annotations

from pathlib import Path

from asr_introspect.errors import InputError

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_MODEL = DATA_DIR / "default_model.safetensors"
DEFAULT_CORPUS = DATA_DIR / "eval_corpus"


def default_model_path() -> Path:
    """The shipped checkpoint; a clear error if the installation lacks it."""
    if not DEFAULT_MODEL.is_file():
        raise InputError(
            f"{DEFAULT_MODEL}: the shipped default model is missing (reinstall the package or pass --model CKPT)"
        )
    return DEFAULT_MODEL


def shipped_models() -> dict[str, Path]:
    """The checkpoints that ship with the package, by name (file stem): ``default_model``, ``conformer_cpu``, ..."""
    return {p.stem: p for p in sorted(DATA_DIR.glob("*.safetensors"))}


def model_card_path(model_path: str | Path) -> Path:
    """Where a checkpoint's model card is: ``MODEL_CARD.md`` beside ``default_model.safetensors``, else
    ``NAME.md`` beside ``NAME.safetensors`` (as ``data_prep/ship_default_model.py`` writes them)."""
    model_path = Path(model_path)
    return model_path.with_name("MODEL_CARD.md" if model_path.stem == "default_model" else f"{model_path.stem}.md")


def default_corpus_path() -> Path:
    """The shipped evaluation corpus (LibriSpeech layout with TextGrids)."""
    if not DEFAULT_CORPUS.is_dir():
        raise InputError(
            f"{DEFAULT_CORPUS}: the shipped evaluation corpus is missing (reinstall the package or pass --data DIR)"
        )
    return DEFAULT_CORPUS
