"""Models: Wav2Letter presets, frame maps, the ASRModel protocol, adapters and checkpoints.

- :mod:`.wav2letter`: ``LayerSpec``, ``Wav2LetterConfig``, ``Wav2Letter``, ``preset``.
- :mod:`.frame_map`: ``FrameMap`` (stride, receptive field, offset per layer).
- :mod:`.asr_model`: ``ASRModel`` (what every analysis takes), ``build_model``.
- :mod:`.adapters`: ``wrap_torchaudio_wav2letter``, ``wrap_conv_model``.
- :mod:`.conformer`: ``ConformerCTC`` (conv subsampling, torchaudio Conformer blocks, CTC head),
  ``build_conformer`` (presets ``conformer-tiny``, ``conformer-small``), ``wrap_conformer``.
- :mod:`.quartznet`: ``QuartzNetCTC`` (time-channel separable residual blocks), ``build_quartznet``
  (presets ``quartznet-tiny``, ``quartznet-5x1``).
- :mod:`.checkpoint`: ``save_checkpoint`` / ``load_checkpoint`` (safetensors, never pickle; the header's
  config, alphabet and features are hashed with the weights), ``upgrade_checkpoint``.
"""

from asr_introspect.models.adapters import (
    TorchaudioWav2LetterLogits,
    wrap_conv_model,
    wrap_torchaudio_wav2letter,
)
from asr_introspect.models.asr_model import ASRModel, build_model
from asr_introspect.models.checkpoint import (
    FORMAT_VERSION,
    NF4,
    CheckpointIntegrityWarning,
    load_checkpoint,
    output_weight_names,
    quantize_int8,
    quantize_nf4,
    read_checkpoint_info,
    rounded_weights,
    save_checkpoint,
    upgrade_checkpoint,
)
from asr_introspect.models.conformer import (
    CONFORMER_PRESETS,
    ConformerConfig,
    ConformerCTC,
    build_conformer,
    wrap_conformer,
)
from asr_introspect.models.frame_map import ConvSpec, FrameMap, LayerGeometry
from asr_introspect.models.quartznet import QUARTZNET_PRESETS, QuartzNetConfig, QuartzNetCTC, build_quartznet
from asr_introspect.models.wav2letter import (
    PRESETS,
    ConvBlock,
    LayerSpec,
    Wav2Letter,
    Wav2LetterConfig,
    count_parameters,
    preset,
)

__all__ = [
    "ASRModel",
    "build_model",
    "build_conformer",
    "build_quartznet",
    "CONFORMER_PRESETS",
    "ConformerConfig",
    "ConformerCTC",
    "CheckpointIntegrityWarning",
    "ConvBlock",
    "ConvSpec",
    "count_parameters",
    "FORMAT_VERSION",
    "FrameMap",
    "LayerGeometry",
    "LayerSpec",
    "load_checkpoint",
    "preset",
    "PRESETS",
    "QUARTZNET_PRESETS",
    "QuartzNetConfig",
    "QuartzNetCTC",
    "quantize_int8",
    "quantize_nf4",
    "output_weight_names",
    "rounded_weights",
    "NF4",
    "read_checkpoint_info",
    "save_checkpoint",
    "upgrade_checkpoint",
    "TorchaudioWav2LetterLogits",
    "Wav2Letter",
    "Wav2LetterConfig",
    "wrap_conformer",
    "wrap_conv_model",
    "wrap_torchaudio_wav2letter",
]
