"""Hugging Face ``transformers`` speech models as :class:`ASRModel`: wav2vec2, HuBERT, WavLM (``*ForCTC``) and
Whisper's encoder.

Nothing downloads: :func:`load_transformers` reads a local ``save_pretrained`` directory with
``local_files_only=True``. Install the extra with ``pip install 'asr-introspect[hf]'``.

**CTC models** (``Wav2Vec2ForCTC``, ``HubertForCTC``, ``WavLMForCTC`` and any ``*ForCTC`` built
the same way: a convolutional feature encoder, a feature projection, transformer blocks and a
linear head) take the raw waveform (:class:`~asr_introspect.frontends.WaveformConfig`). Layers,
in forward order, all ``(B, channels, T_layer)``:

- ``cnn1`` ... ``cnnK``: the feature encoder's convolutions (after their norm and GELU);
- ``projection``: the feature projection (the transformer's input);
- per block ``i``: ``block{i}.attn`` (self-attention output, before the residual add),
  ``block{i}.mlp`` (feed-forward output, before its residual add) and ``block{i}`` (the
  block's output: the residual stream);
- ``logits``: the CTC head.

Frame map: the feature encoder's kernels and strides (in samples), then "the whole utterance"
from the first self-attention on. Padding is exact through the attention mask, except for
feature encoders with group normalization over time (``feat_extract_norm="group"``, e.g.
wav2vec2-base), where padding changes the statistics: such models declare
``exact_batch = False`` and the stream runs them one utterance at a time.

The vocabulary maps onto the toolkit's letters by :func:`ctc_alphabet`: the pad token is the
CTC blank, ``|`` the word delimiter (a space), letters in either case become lower case,
other special tokens become private-use characters that decoding leaves out.

**Whisper's encoder** takes Whisper's log-mel
(:class:`~asr_introspect.frontends.WhisperFeatureConfig`) and always runs on its 30 s window:
the features are padded with the utterance's silence value, exactly as Whisper pads the audio,
and only the utterance's frames are shown. It has no CTC head (``alphabet=None``): letters come
from another model's alignment, phonemes from the corpus' segments. Layers ``conv1``,
``conv2`` (before their GELU: Whisper applies it functionally), ``block{i}.attn``,
``block{i}.mlp``, ``block{i}`` and ``final_norm`` (the encoder's output).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr_introspect.errors import InputError
from asr_introspect.frontends import WaveformConfig, WhisperFeatureConfig
from asr_introspect.models.asr_model import ASRModel
from asr_introspect.models.frame_map import ConvSpec, FrameMap
from asr_introspect.models.taps import LayerTap, tap_output
from asr_introspect.text import Alphabet

__all__ = [
    "HF_EXTRA",
    "HFCTCModule",
    "WhisperEncoderModule",
    "ctc_alphabet",
    "load_transformers",
    "require_transformers",
    "wrap_hf_ctc",
    "wrap_whisper_encoder",
]

HF_EXTRA = "pip install 'asr-introspect[hf]'"
#: first code point of the private-use characters that stand for a vocabulary's special tokens
PRIVATE_USE = 0xE000
DELIMITER = "|"


def require_transformers():
    """The ``transformers`` module, or InputError naming the extra that installs it."""
    try:
        import transformers
    except ImportError:
        raise InputError(f"Hugging Face models need the transformers package: {HF_EXTRA}") from None
    return transformers


def ctc_alphabet(vocab: Mapping[str, int], blank: int, delimiter: str = DELIMITER) -> Alphabet:
    """The toolkit :class:`Alphabet` of a CTC tokenizer's ``vocab`` (token -> id, ids ``0..V-1``).

    ``blank``: the CTC blank's id (the tokenizer's pad token); ``delimiter`` becomes the space;
    single letters become lower case; other single characters stay; longer tokens (``<s>``,
    ``<unk>``) become private-use characters. Raises InputError when the ids are not ``0..V-1``,
    when two tokens map to one letter (``"A"`` and ``"a"``) or when no token is a letter.
    """
    by_id = {int(i): str(t) for t, i in vocab.items()}
    if sorted(by_id) != list(range(len(vocab))):
        raise InputError(f"the CTC vocabulary's ids must be 0..{len(vocab) - 1} without gaps")
    if blank not in by_id:
        raise InputError(f"the blank id {blank} is not in the vocabulary (0..{len(vocab) - 1})")
    symbols, specials = [], 0
    for i in range(len(vocab)):
        token = by_id[i]
        if i == blank:
            symbols.append("<blank>")
        elif token == delimiter:
            symbols.append(" ")
        elif len(token) == 1:
            symbols.append(token.lower() if token.isalpha() else token)
        else:
            symbols.append(chr(PRIVATE_USE + specials))
            specials += 1
    letters = [s for i, s in enumerate(symbols) if i != blank and "a" <= s <= "z"]
    if not letters:
        raise InputError(
            f"the model's vocabulary has no letters a-z ({', '.join(sorted(vocab)[:8])}, ...): the toolkit "
            "labels frames with letters, so it needs a character-level CTC vocabulary"
        )
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise InputError(f"the vocabulary maps several tokens onto {duplicates} (upper and lower case?)")
    return Alphabet(tuple(symbols), blank=blank)


class HFCTCModule(nn.Module):
    """A transformers ``*ForCTC`` as ``(B, 1, n_samples)`` [, lengths] -> logits ``(B, V, T_out)``.

    ``taps``: the named layers (:class:`LayerTap` modules and the feature encoder's convolutions).
    """

    takes_lengths = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        norm = getattr(model.config, "feat_extract_norm", "layer")
        #: group norm over time in the feature encoder: padding changes the statistics
        self.exact_batch = norm != "group"
        self.taps = nn.ModuleDict()
        self.layer_order: list[str] = []
        self._handles: list = []
        base = model.base_model
        for i, conv in enumerate(base.feature_extractor.conv_layers):
            self._tap(f"cnn{i + 1}", conv, time_major=False)
        self._tap("projection", base.feature_projection)
        for i, block in enumerate(base.encoder.layers):
            attention = getattr(block, "attention", None) or getattr(block, "self_attn", None)
            self._tap(f"block{i + 1}.attn", attention)
            self._tap(f"block{i + 1}.mlp", block.feed_forward)
            self._tap(f"block{i + 1}", block)
        self._tap("logits", model.lm_head)

    def _tap(self, name: str, module: nn.Module, time_major: bool = True) -> None:
        tap = LayerTap()
        self.taps[name.replace(".", "_")] = tap
        self.layer_order.append(name)
        self._handles.append(tap_output(module, tap, time_major=time_major))

    def layer_modules(self) -> dict[str, nn.Module]:
        return {name: self.taps[name.replace(".", "_")] for name in self.layer_order}

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        audio = waveform[:, 0, :]
        mask = None
        if lengths is not None and self.exact_batch:
            frames = torch.arange(audio.shape[1], device=audio.device)
            mask = (frames[None, :] < lengths.to(audio.device)[:, None]).long()
        return self.model(audio, attention_mask=mask).logits.transpose(1, 2)


def _ctc_frame_map(config, n_blocks: int) -> tuple[FrameMap, list[str]]:
    specs = [ConvSpec(int(k), int(s)) for k, s in zip(config.conv_kernel, config.conv_stride)]
    names = [f"cnn{i + 1}" for i in range(len(specs))] + ["projection"]
    specs.append(ConvSpec(1))
    for i in range(n_blocks):
        names += [f"block{i + 1}.attn", f"block{i + 1}.mlp", f"block{i + 1}"]
        specs += [ConvSpec.utterance(), ConvSpec(1), ConvSpec(1)]
    names.append("logits")
    specs.append(ConvSpec(1))
    return FrameMap(specs, names), names


def wrap_hf_ctc(
    model: nn.Module,
    vocab: Mapping[str, int] | None = None,
    front_end: WaveformConfig | None = None,
    source: str | None = None,
) -> ASRModel:
    """Wrap a transformers ``*ForCTC`` (wav2vec2, HuBERT, WavLM, ...) as an :class:`ASRModel` in eval mode.

    ``vocab``: token -> id (``vocab.json`` of its tokenizer; default: ``a``-``z`` by id order is not
    guessed, so pass it); ``front_end``: default :class:`WaveformConfig` with normalization;
    ``source``: where it was loaded from (kept in ``model_config``).
    """
    for attr in ("base_model", "lm_head", "config"):
        if not hasattr(model, attr):
            raise InputError(f"{type(model).__name__} is not a transformers *ForCTC model (no {attr})")
    base = model.base_model
    if not all(hasattr(base, a) for a in ("feature_extractor", "feature_projection", "encoder")):
        raise InputError(
            f"{type(model).__name__}: expected a wav2vec2-style model (feature encoder, projection, transformer)"
        )
    if vocab is None:
        raise InputError(f"{type(model).__name__}: pass its CTC vocabulary (the tokenizer's vocab.json)")
    blank = model.config.pad_token_id
    if blank is None:
        raise InputError(f"{type(model).__name__}: its config has no pad_token_id (the CTC blank)")
    alphabet = ctc_alphabet(vocab, int(blank))
    if len(alphabet) != model.config.vocab_size:
        raise InputError(
            f"the vocabulary has {len(alphabet)} tokens but the model's CTC head has {model.config.vocab_size}"
        )
    model.eval()
    module = HFCTCModule(model)
    frame_map, names = _ctc_frame_map(model.config, len(base.encoder.layers))
    config = {
        "architecture": "transformers.ctc",
        "class": type(model).__name__,
        "model_type": model.config.model_type,
        "source": source,
    }
    return ASRModel(
        module,
        alphabet,
        front_end or WaveformConfig(),
        frame_map,
        names,
        module.layer_modules(),
        "logits",
        n_features=1,
        n_classes=len(alphabet),
        model_config=config,
    )


class WhisperEncoderModule(nn.Module):
    """Whisper's encoder as log-mel ``(B, n_mels, T)`` [, lengths] -> hidden states ``(B, d_model, ceil(T/2))``.

    Runs the full window (``window_frames``), padded per utterance with its silence value.
    """

    takes_lengths = True
    exact_batch = True

    def __init__(self, encoder: nn.Module, window_frames: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.window_frames = int(window_frames)
        self.taps = nn.ModuleDict()
        self.layer_order: list[str] = []
        self._frames: tuple[int, int] | None = None  # (input frames, frames after conv2) of this forward
        self._tap("conv1", encoder.conv1, time_major=False)
        self._tap("conv2", encoder.conv2, time_major=False)
        for i, block in enumerate(encoder.layers):
            self._tap(f"block{i + 1}.attn", block.self_attn)
            self._tap(f"block{i + 1}.mlp", block.fc2)
            self._tap(f"block{i + 1}", block)
        self._tap("final_norm", encoder.layer_norm)

    def _tap(self, name: str, module: nn.Module, time_major: bool = True) -> None:
        """Show only the utterance's frames of the 30 s window (conv1 runs at the input rate)."""
        tap = LayerTap()
        self.taps[name.replace(".", "_")] = tap
        self.layer_order.append(name)
        at_input_rate = name == "conv1"

        def frames() -> int | None:
            return None if self._frames is None else self._frames[0 if at_input_rate else 1]

        tap_output(module, tap, time_major=time_major, frames=frames)

    def layer_modules(self) -> dict[str, nn.Module]:
        return {name: self.taps[name.replace(".", "_")] for name in self.layer_order}

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, F, T = features.shape
        if T > self.window_frames:
            raise InputError(
                f"Whisper's encoder takes at most {self.window_frames} frames "
                f"({self.window_frames / 100:g} s); this input has {T}: cut the audio"
            )
        lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.to(torch.long).cpu()
        valid = (torch.arange(T)[None, :] < lengths[:, None]).to(features.device)[:, None, :]
        silence = features.masked_fill(~valid, -torch.inf).amax(dim=(1, 2), keepdim=True) - 2.0
        window = silence.expand(B, F, self.window_frames).clone()
        window[..., :T] = torch.where(valid, features, silence)
        out_frames = (T - 1) // 2 + 1
        self._frames = (T, out_frames)
        try:
            hidden = self.encoder(window).last_hidden_state
        finally:
            self._frames = None
        return hidden[:, :out_frames].transpose(1, 2)


def wrap_whisper_encoder(encoder: nn.Module, front_end: WhisperFeatureConfig | None = None, source=None) -> ASRModel:
    """Wrap a transformers ``WhisperEncoder`` (``WhisperModel(...).encoder``) as an encoder-only ASRModel."""
    config = encoder.config
    window = 2 * int(config.max_source_positions)
    front_end = front_end or WhisperFeatureConfig(n_mels=int(config.num_mel_bins), window_frames=window)
    encoder.eval()
    module = WhisperEncoderModule(encoder, window)
    names = list(module.layer_order)
    specs = [ConvSpec(3, 1, 1, 1, 1), ConvSpec(3, 2, 1, 1, 1)]
    for _ in encoder.layers:
        specs += [ConvSpec.utterance(), ConvSpec(1), ConvSpec(1)]
    specs.append(ConvSpec(1))
    return ASRModel(
        module,
        None,
        front_end,
        FrameMap(specs, names),
        names,
        module.layer_modules(),
        "final_norm",
        n_features=int(config.num_mel_bins),
        model_config={"architecture": "transformers.whisper-encoder", "source": source},
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}): save the model again with save_pretrained") from None


def load_transformers(directory: str | Path) -> ASRModel:
    """An :class:`ASRModel` from a local transformers ``save_pretrained`` directory (never downloads).

    CTC models need the tokenizer's ``vocab.json`` beside the weights; ``preprocessor_config.json``
    (if present) gives the sampling rate and normalization.
    """
    directory = Path(directory)
    config_json = _read_json(directory / "config.json")
    if config_json is None:
        raise InputError(
            f"{directory}: no config.json: not a transformers model directory (save one with "
            "model.save_pretrained(DIR) and its processor.save_pretrained(DIR))"
        )
    transformers = require_transformers()
    transformers.utils.logging.disable_progress_bar()  # one line per command, no loading bars
    preprocessor = _read_json(directory / "preprocessor_config.json") or {}
    model_type = config_json.get("model_type")
    try:
        if model_type == "whisper":
            whisper = transformers.WhisperModel.from_pretrained(directory, local_files_only=True)
            encoder = whisper.get_encoder()
            front_end = WhisperFeatureConfig(
                sample_rate=int(preprocessor.get("sampling_rate", 16000)),
                n_fft=int(preprocessor.get("n_fft", 400)),
                hop_length=int(preprocessor.get("hop_length", 160)),
                n_mels=int(whisper.config.num_mel_bins),
                window_frames=2 * int(whisper.config.max_source_positions),
            )
            return wrap_whisper_encoder(encoder, front_end, source=str(directory))
        architectures = config_json.get("architectures") or []
        if not any(str(a).endswith("ForCTC") for a in architectures):
            named = ", ".join(architectures) or "no architectures"
            raise InputError(
                f"{directory}: a {model_type} model without a CTC head ({named}): "
                "the toolkit opens *ForCTC models and Whisper's encoder"
            )
        model = transformers.AutoModelForCTC.from_pretrained(directory, local_files_only=True)
    except OSError as exc:
        raise InputError(
            f"{directory}: cannot load the weights locally ({str(exc).splitlines()[0]}): the directory must hold "
            "the complete save_pretrained output; nothing is downloaded"
        ) from None
    vocab = _read_json(directory / "vocab.json")
    if vocab is None:
        raise InputError(f"{directory}: no vocab.json: save the tokenizer (processor.save_pretrained(DIR)) beside it")
    front_end = WaveformConfig(
        sample_rate=int(preprocessor.get("sampling_rate", 16000)),
        normalize=bool(preprocessor.get("do_normalize", True)),
    )
    return wrap_hf_ctc(model, vocab, front_end, source=str(directory))
