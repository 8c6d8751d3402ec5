"""Workflows: one function per subcommand and per figure family, between the analyses and the command line.

A workflow takes a loaded model (:class:`~asr_introspect.models.ASRModel`), the
utterances (or an audio file), settings as keyword arguments and an output
directory; it writes its files there and returns its results. Subcommand
workflows return a small dataclass whose ``summary`` is exactly what
``asr-introspect <command> --json`` prints; figure families return a report
:class:`~asr_introspect.workflows.figures.section.Section`. Workflows never
parse arguments and never print; ``progress=True`` shows tqdm bars.

- :mod:`.eval`: :func:`~.eval.evaluate_corpus` (greedy CER/WER, optional JSON file)
- :mod:`.transcribe`: :func:`~.transcribe.transcribe_files`
- :mod:`.align`: :func:`~.align.align` (``labels.npz``, ``shift.json``, ``shift.npz``)
- :mod:`.attribute`: :func:`~.attribute.attribute_audio` (``relevance.npz``, figures, ``attribution.json``)
- :mod:`.visualize`: :func:`~.visualize.visualize` (optimal inputs: npz, png, wav, json; the grid)
- :mod:`.patterns`: :func:`~.patterns.patterns` (letter/phoneme-averaged windows, figures, audio)
- :mod:`.naps`: :func:`~.naps.naps` (NAPs, clustering, quality per layer, figures)
- :mod:`.figures`: the five figure families of the original work (``FAMILIES``)
- :mod:`.demo`: :func:`~.demo.demo` (evaluation + every family + the HTML report)
- :mod:`.script`: the flags of the ``experiments/`` scripts, from a family's ``Settings``

Nothing here imports :mod:`asr_introspect.cli`; the command line and the
``experiments/`` scripts load the model and corpus once and call these.
"""
