"""``asr-introspect concepts``: a dictionary of a layer's concepts (NMF or a sparse autoencoder), grounded in
phones and letters, with its stability across seeds and its faithfulness; or an L2I listenable interpreter.

Writes ``concepts_<method>.npz``/``.json``, ``grounding_<method>.npz``, WAVs and figures (NMF, SAE) or
``l2i.npz``/``.json``, WAVs and figures (L2I) to ``--out``: see :mod:`asr_introspect.workflows.concepts`.
"""

from __future__ import annotations

import argparse

from asr_introspect.cli._common import add_common, load_inputs, progress_enabled, set_runner
from asr_introspect.cli._flags import add_parser, int_range, positive_int

#: ``workflows.concepts.CONCEPT_METHODS`` (copied: building the parser must not import torch)
METHODS = ("nmf", "sae", "l2i")
#: ``concepts.SPARSITIES``
SPARSITIES = ("topk", "l1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers,
        "concepts",
        help="concept dictionaries of a layer (NMF, sparse autoencoder) grounded in phones, or L2I interpretations",
    )
    add_common(parser, model=True, data=True, out="required")
    parser.add_argument("--layer", required=True, help="the layer to break down, e.g. conv9")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="nmf",
        help="nmf: non-negative dictionary (layers after a ReLU); sae: sparse autoencoder; "
        "l2i: NMF of the spectrogram + an interpreter of the layer, listenable",
    )
    parser.add_argument(
        "--n-concepts",
        type=positive_int,
        default=32,
        help="concepts in the dictionary (l2i: spectral NMF components)",
    )
    parser.add_argument(
        "--passes",
        type=positive_int,
        default=None,
        help="passes over the corpus (default: 20 for nmf, 30 for sae; l2i: spectral NMF passes, 30)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=2,
        help="dictionaries fitted with seeds SEED, SEED+1, ... (nmf/sae); 2 or more report the share of "
        "concepts matched across seeds with cosine > 0.7, 1 skips it",
    )
    parser.add_argument("--seed", type=int_range(0), default=0, help="first seed")
    parser.add_argument("--sparsity", choices=SPARSITIES, default="topk", help="sae: TopK or an L1 penalty")
    parser.add_argument(
        "--k", type=positive_int, default=None, help="sae, topk: active concepts per frame (default: n_concepts // 8)"
    )
    parser.add_argument("--top-k", type=positive_int, default=20, help="top events per concept for its grounding")
    parser.add_argument(
        "--faithfulness-utterances",
        type=int_range(0),
        default=24,
        help="utterances run with the layer reconstructed / ablated (nmf/sae; 0 skips faithfulness)",
    )
    parser.add_argument(
        "--ablate", type=int_range(0), default=8, help="the most active concepts removed one at a time (nmf/sae)"
    )
    parser.add_argument("--epochs", type=positive_int, default=40, help="l2i: interpreter training epochs")
    parser.add_argument(
        "--l2i-cases", type=positive_int, default=40, help="l2i: letter frames for the faithfulness numbers"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="utterances per forward pass")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N utterances (default: all)")
    parser.add_argument("--no-figures", action="store_true", help="write the .npz and .json (and WAVs) only")
    parser.add_argument("--no-audio", action="store_true", help="skip the WAVs")
    set_runner(parser, run)


def run(args: argparse.Namespace) -> dict:
    # imported here, not at the top: `asr-introspect --help` stays free of torch
    from asr_introspect.workflows.checks import select_utterances
    from asr_introspect.workflows.concepts import concepts

    model, utterances, model_path, data_path = load_inputs(args)
    utterances = select_utterances(utterances, data_path, limit=args.limit, what="analyse")
    return concepts(
        model,
        utterances,
        args.out,
        layer=args.layer,
        method=args.method,
        n_concepts=args.n_concepts,
        passes=args.passes,
        seeds=args.seeds,
        seed=args.seed,
        sparsity=args.sparsity,
        k=args.k,
        top_k=args.top_k,
        faithfulness_utterances=args.faithfulness_utterances,
        ablate=args.ablate,
        epochs=args.epochs,
        l2i_cases=args.l2i_cases,
        batch_size=args.batch_size,
        figures=not args.no_figures,
        audio=not args.no_audio,
        model_path=model_path,
        data_path=data_path,
        progress=progress_enabled(args),
    ).summary
