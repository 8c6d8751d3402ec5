"""Letter- and phoneme-averaged input windows ("normalized averaging of aligned inputs").

For every labelled frame of a corpus take the input feature window centred on
the frame's input position and average the windows per label (METHODS.md,
"Normalized averaging of aligned inputs"). The per-label averages look alike;
subtracting the average over all windows of all labels leaves the
label-specific patterns.

Labels and positions:

- letters come from the model's CTC path on the output axis (``source``:
  ``"forced"`` alignment of the transcript, the default, or the
  ``"predicted"`` greedy path, as :class:`asr_introspect.stream.StreamBatch`
  labels them); phonemes from the utterance's phone segments on the input axis
  (default) or the output axis.
- a labelled frame ``t`` of the output axis sits at input position
  ``round(frame_map.center(output_layer, t))`` (halves round up); an input-axis
  frame sits at itself. With the default window (the receptive field ``R``,
  even for every Wav2Letter preset) the window ``[c - R//2, c - R//2 + R)`` is
  then exactly the receptive field of output frame ``t`` (whose exact centre
  lies half an input frame before column ``R//2``, the "aligned frame").
- ``frames="all"``: one window per labelled frame; ``frames="centers"``: one
  window per run of equal labels (a letter span, a phone segment), at the
  run's middle ``(first + last) / 2`` (rounded up). Two touching segments of
  the same phone form one run.
- windows reaching past the utterance are kept (``border="pad"``): only their
  valid columns count (``position_counts``); ``border="skip"`` drops them. An
  output frame whose input position lies outside ``[0, T_in)`` (the last
  frames of some utterances) is dropped and counted in ``n_dropped_``.

Normalizations of a :class:`PatternResult` (G labels, F bands, W window):

- ``"none"``: the per-label averages ``A_g``;
- ``"subtract"`` (default): ``A_g - M`` with ``M`` the average over all
  windows of all kept labels, weighted by window (frequent labels weigh more);
- ``"zscore"``: ``(A_g - M) / S`` with ``S`` the pooled standard deviation of
  all windows at each (band, position): a standardized effect size per pixel
  (``standard_error=True`` divides by ``S / sqrt(n_g)`` instead: a z-statistic
  that assumes independent windows, which overlapping windows are not);
- ``"balanced"``: frequency-balanced averaging: every mel band is standardized
  by its mean and standard deviation over all windows (all positions) before
  averaging, then ``M`` is subtracted: ``(A_g - M) / s_f``. Because the
  standardization is affine per band, standardizing before averaging equals
  standardizing the averages, so it is exact for streamed data. It keeps
  high-variance bands from dominating the picture.

Modules: :mod:`.averager` (:class:`PatternAverager`, the streaming estimator),
:mod:`.result` (:class:`PatternResult`, normalizations, files), :mod:`.centroids`
(spectral centroids), :mod:`.sonify` (listening to patterns).
"""

from asr_introspect.patterns.averager import PatternAverager, label_runs
from asr_introspect.patterns.centroids import spectral_centroid, vowel_fricative_centroids
from asr_introspect.patterns.result import NORMALIZATIONS, PatternResult, label_file_name
from asr_introspect.patterns.sonify import save_sonifications, sonify_pattern

__all__ = [
    "NORMALIZATIONS",
    "PatternAverager",
    "PatternResult",
    "label_file_name",
    "label_runs",
    "save_sonifications",
    "sonify_pattern",
    "spectral_centroid",
    "vowel_fricative_centroids",
]
