"""Per-target negatives, the two ways of scoring them side by side: a product with every
distinct drawn item (``scores_by_product``) and each target's own gathered negatives
(``scores_by_gather``), forward and backward of the sampled softmax, over catalogue sizes. The
crossover sets ``GATHER_ABOVE`` in ``rsir/training/losses.py``.

    python benchmarks/negatives_scoring.py --threads 1 --out docs/results/negatives_scoring.json
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time

import torch

from rsir.files import write_json
from rsir.rundir import provenance
from rsir.training.losses import GATHER_ABOVE, scores_by_gather, scores_by_product
from rsir.training.trainer import use_threads


def seconds(score, hidden: torch.Tensor, table: torch.Tensor, negatives: torch.Tensor, repeats: int) -> float:
    """The fastest of ``repeats`` timed forward-and-backward passes, after one untimed."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        score(hidden, table, negatives).logsumexp(-1).sum().backward()
        times.append(time.perf_counter() - started)
        hidden.grad = table.grad = None
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--targets", type=int, default=730, help="targets per step (Beauty's default: about 730)")
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--items", type=int, nargs="+", default=[500, 12101, 18357, 50000, 100000])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    use_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for dim in args.dims:
        for n_items in args.items:
            table = torch.randn(n_items + 1, dim, generator=generator).requires_grad_()
            hidden = torch.randn(args.targets, dim, generator=generator).requires_grad_()
            negatives = torch.randint(1, n_items + 1, (args.targets, args.negatives), generator=generator)
            product = seconds(scores_by_product, hidden, table, negatives, args.repeats)
            gather = seconds(scores_by_gather, hidden, table, negatives, args.repeats)
            rows.append(
                {
                    "items": n_items,
                    "dim": dim,
                    "product_seconds": round(product, 4),
                    "gather_seconds": round(gather, 4),
                    "gather_vs_product": round(gather / product, 3),
                    "rsir_uses": "gather" if n_items > GATHER_ABOVE * args.negatives else "product",
                }
            )
            print(rows[-1], file=sys.stderr)
    write_json(
        args.out,
        {
            "name": "negatives_scoring",
            "command": "python " + shlex.join(sys.argv),
            "rsir": provenance(),
            "machine": f"{platform.machine()}, {args.threads} thread(s)",
            "targets": args.targets,
            "negatives": args.negatives,
            "gather_above": GATHER_ABOVE,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
