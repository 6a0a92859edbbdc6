"""Host side: edgecnn qat: the quantisation-aware fine-tuned Keras model alone (convert --qat makes the artifacts)."""

from __future__ import annotations

HELP = "fine-tune a model with fake quantisation (batch norm folded, int8 weights per channel) -> a QAT .keras"


def add_arguments(p) -> None:
    p.add_argument("model", help="edgecnn run directory or a .keras classifier")
    p.add_argument("--out", required=True, help="output folder: model.keras, labels.txt, preprocess.json, qat.json")
    p.add_argument("--data", help="labelled image folder to fine-tune on (default: the run's training split)")
    p.add_argument("--epochs", type=int, default=5, help="at most this many epochs (default 5; early stopping)")
    p.add_argument("--learning-rate", type=float, help="default: the run's learning rate / 10, else 1e-4")
    p.add_argument("--force", action="store_true", help="replace the output folder")
    p.add_argument("--trust-model", action="store_true", help="allow Lambda layers / custom code in the .keras file")
    p.add_argument("--json", action="store_true", help="print qat.json")


def run(args) -> int:
    import json
    import sys

    from edgecnn.host.convert.qat.model import make_qat_model

    say = None if args.json else (lambda msg: print(f"[qat] {msg}", file=sys.stderr, flush=True))
    record = make_qat_model(
        args.model,
        args.out,
        epochs=args.epochs,
        data=args.data,
        learning_rate=args.learning_rate,
        force=args.force,
        trust=args.trust_model,
        progress=say,
    )
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        acc = record["validation_accuracy"]
        print(
            f"{args.out}: {record['epochs']} epochs in {record['seconds']} s on {record['data']}; validation accuracy "
            f"float {acc['float']}, QAT before {acc['qat_before']}, after {acc['qat_after']}"
        )
    return 0
