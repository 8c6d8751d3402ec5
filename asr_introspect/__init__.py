"""asr_introspect: look inside convolutional (Wav2Letter-style) CTC speech recognizers.

The data flow runs one way: audio + transcript -> features (F, T_in) -> model
logits (C, T_out) and layer activations -> frame labels -> analyses -> figures.
"""

__version__ = "0.1.0"
