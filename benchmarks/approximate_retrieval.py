"""Exact scan against the FAISS index for generation's fidelity step, on synthetic
catalogues of growing size: time per step, and how often the two agree.

Each catalogue has clustered item embeddings (like a trained model's); each query row is a
hidden state near one cluster, with a generated prefix g of 3 items and a real remainder R
of 10 items, half among the hidden state's exact top 50 and half elsewhere in its cluster,
so that the check passes for about half of the rows. Both modes answer the same step
(:func:`rsir.generation.generate.fidelity_step`) for the same rows.

With ``--checkpoint`` and ``--data``, the same comparison runs on a trained model instead:
each row is a real training sequence cut at a random point, g its prefix and R the rest,
at each of the ``--probes``.

    python benchmarks/approximate_retrieval.py --sizes 10000 100000 1000000 --threads 1 \
        --out docs/results/approximate_retrieval
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from functools import partial

import numpy as np
import torch
from utilisation import matmul_gflops  # benchmarks/ is on the path when run as a script

from rsir.files import atomic_open, write_json
from rsir.generation.generate import GenerationParams, fidelity_step
from rsir.generation.retrieval import build_retriever
from rsir.models import build_backbone
from rsir.training.trainer import use_threads

DIM = 64


def catalogue(n_items: int, rows: int, rng: np.random.Generator):
    """Clustered item embeddings, and per row: hidden state, context g, remainder R."""
    clusters = max(10, n_items // 1000)
    centers = rng.normal(size=(clusters, DIM)).astype(np.float32)
    assignment = rng.integers(0, clusters, n_items)
    items = centers[assignment] + 0.7 * rng.normal(size=(n_items, DIM)).astype(np.float32)
    weights = torch.zeros(n_items + 1, DIM)
    weights[1:] = torch.from_numpy(items) / 4
    taste = rng.integers(0, clusters, rows)
    hidden = torch.from_numpy(centers[taste] + 0.7 * rng.normal(size=(rows, DIM)).astype(np.float32)) / 4
    nearest = torch.topk(hidden @ weights[1:].T, 50, dim=1).indices.numpy() + 1  # exact top 50
    members = [np.flatnonzero(assignment == c) + 1 for c in range(clusters)]
    context = np.stack([rng.choice(nearest[r], 3, replace=False) for r in range(rows)])
    source = np.zeros((rows, 10), dtype=np.int64)
    for r in range(rows):
        near = rng.choice(np.setdiff1d(nearest[r], context[r]), 5, replace=False)
        far = rng.choice(members[taste[r]], 5, replace=False)
        source[r] = np.concatenate([near, far])
    return weights, hidden, torch.from_numpy(context), torch.from_numpy(source)


def real_rows(checkpoint: str, data: str, rows: int, rng: np.random.Generator):
    """A trained model, and per row: the hidden state after a random real prefix g of a
    training sequence, g itself, and the rest of the sequence as R."""
    from rsir.data import leave_one_out, read_dataset
    from rsir.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    train = leave_one_out(read_dataset(data)).train
    chosen = rng.choice(np.flatnonzero(train.lengths >= 3), size=rows, replace=False)
    cut = rng.integers(1, train.lengths[chosen])  # prefix length; R keeps at least one item
    padded = torch.from_numpy(train.padded(chosen, 10**6).astype(np.int64))  # whole sequences, right-padded
    cols = torch.arange(padded.shape[1])
    cut_t = torch.from_numpy(cut)
    context = torch.where(cols < cut_t[:, None], padded, 0)
    source = torch.where(cols >= cut_t[:, None], padded, 0)
    with torch.no_grad():
        hidden = model.last_hidden(context[:, : model.max_len])
    return model, hidden, context, source


def timed(fn, repeats: int):
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    return result, (time.perf_counter() - started) / repeats


def _compare(n_items, rows, truth, guess, exact_s, approx_s, approximate, build_seconds, peak_gflops) -> dict:
    flops = 2 * rows * n_items * DIM  # the exact scan's matrix product
    return {
        "n_items": n_items,
        "rows_per_step": rows,
        "exact_step_ms": round(1000 * exact_s, 2),
        "faiss_step_ms": round(1000 * approx_s, 2),
        "speedup": round(exact_s / approx_s, 1),
        "decision_agreement": round(float((truth.ok == guess.ok).float().mean()), 4),
        "exact_pass_rate": round(float(truth.ok.float().mean()), 4),
        "exploration_choice_agreement": round(
            float((truth.top_items[:, 0] == guess.top_items[:, 0]).float().mean()), 4
        ),
        "faiss_lists": approximate.index.nlist,
        "faiss_probe": approximate.index.nprobe,
        "index_build_s": round(build_seconds, 2),
        "exact_scan_gflops": round(flops / exact_s / 1e9, 1),
        "exact_scan_share_of_matmul_peak": round(flops / exact_s / 1e9 / peak_gflops, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000, 1_000_000])
    parser.add_argument(
        "--rows", type=int, default=256, help="sequences per step (the exact scan holds rows x items scores)"
    )
    parser.add_argument("--tau", type=float, default=10)
    parser.add_argument("--probe", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="a trained model (with --data): compare on its embeddings")
    parser.add_argument("--data", help="the data the checkpoint was trained on")
    parser.add_argument("--probes", type=int, nargs="+", default=[16], help="probes to compare on a trained model")
    parser.add_argument("--out", help="output prefix: writes OUT.md and OUT.json")
    args = parser.parse_args()
    use_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    peak_gflops = matmul_gflops()
    params = GenerationParams(tau=args.tau, faiss_probe=args.probe)
    results = []
    if args.checkpoint:
        model, hidden, context, source = real_rows(
            args.checkpoint, args.data, args.rows, np.random.default_rng(args.seed)
        )
        remaining = source != 0
        tau = torch.full((len(hidden),), args.tau)
        exact = build_retriever("exact", model)
        with torch.no_grad():
            truth, exact_s = timed(
                partial(fidelity_step, model, exact, hidden, context, source, remaining, tau, params), args.repeats
            )
            for probe in args.probes:
                started = time.perf_counter()
                approximate = build_retriever("faiss", model, probe=probe)
                build_seconds = time.perf_counter() - started
                guess, approx_s = timed(
                    partial(fidelity_step, model, approximate, hidden, context, source, remaining, tau, params),
                    args.repeats,
                )
                results.append(
                    _compare(
                        model.n_items,
                        args.rows,
                        truth,
                        guess,
                        exact_s,
                        approx_s,
                        approximate,
                        build_seconds,
                        peak_gflops,
                    )
                )
                print(json.dumps(results[-1]), flush=True)
        args.sizes = []
    for n_items in args.sizes:
        rng = np.random.default_rng(args.seed)
        weights, hidden, context, source = catalogue(n_items, args.rows, rng)
        model = build_backbone("sasrec", n_items, {"dim": DIM, "blocks": 0}, seed=0).eval()
        with torch.no_grad():
            model.item_embedding.weight.copy_(weights)
        remaining = torch.ones_like(source, dtype=torch.bool)
        tau = torch.full((len(hidden),), args.tau)
        exact = build_retriever("exact", model)
        started = time.perf_counter()
        approximate = build_retriever("faiss", model, probe=args.probe)
        build_seconds = time.perf_counter() - started
        with torch.no_grad():
            truth, exact_s = timed(
                partial(fidelity_step, model, exact, hidden, context, source, remaining, tau, params), args.repeats
            )
            guess, approx_s = timed(
                partial(fidelity_step, model, approximate, hidden, context, source, remaining, tau, params),
                args.repeats,
            )
        results.append(
            _compare(n_items, args.rows, truth, guess, exact_s, approx_s, approximate, build_seconds, peak_gflops)
        )
        print(json.dumps(results[-1]), flush=True)
    report = {
        "command": "python " + shlex.join(sys.argv),
        "catalogue": f"trained model {args.checkpoint}" if args.checkpoint else "synthetic, clustered",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, threads {torch.get_num_threads()}",
        "matmul_peak_gflops": round(peak_gflops, 1),
        "tau": args.tau,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "results": results,
    }
    if args.out:
        write_json(args.out + ".json", report)
        lines = [
            "# Fidelity step: exact scan vs FAISS IVF index",
            "",
            f"Command: `{report['command']}`  ",
            f"Catalogue: {report['catalogue']}.  ",
            f"Machine: {report['machine']}; float32 matmul peak {report['matmul_peak_gflops']} GFLOP/s; "
            f"tau {args.tau}; {args.rows} sequences per step; peak RSS {report['peak_rss_mb']} MB.",
            "",
            "| items | exact ms/step | faiss ms/step | speedup | decisions agree | exact pass rate "
            "| exploration choice agrees | lists / probe | index build s | exact scan GFLOP/s (share of peak) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            lines.append(
                f"| {r['n_items']:,} | {r['exact_step_ms']} | {r['faiss_step_ms']} | {r['speedup']}x "
                f"| {100 * r['decision_agreement']:.1f}% | {100 * r['exact_pass_rate']:.1f}% "
                f"| {100 * r['exploration_choice_agreement']:.1f}% | {r['faiss_lists']} / {r['faiss_probe']} "
                f"| {r['index_build_s']} | {r['exact_scan_gflops']} ({100 * r['exact_scan_share_of_matmul_peak']:.0f}%) |"
            )
        with atomic_open(args.out + ".md") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
