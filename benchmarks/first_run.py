"""The README's first commands, timed: ``rsir train`` and ``rsir improve`` with no options
(the built-in data) in fresh directories, their wall time, peak memory and results, as JSON.

    python benchmarks/first_run.py --out docs/results/first_run.json --note "idle machine"

Extra arguments after ``--`` go to both commands (e.g. ``-- --threads 1``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rsir.rundir import provenance

# Runs a command and writes the peak resident memory (kB) of the largest process it started to
# the file named first: a fresh process per command, so each peak is that command's own.
_PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)"
)


def timed(command: list[str], *, quiet: bool = True) -> tuple[float, int]:
    """Wall seconds and the peak resident memory (kB) of the largest process ``command``
    starts, run to its end (``quiet``: its output dropped); raises CalledProcessError if it fails."""
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        tick = time.perf_counter()
        output = subprocess.DEVNULL if quiet else None
        subprocess.run(
            [sys.executable, "-c", _PEAK, str(peak_file), *command], check=True, stdout=output, stderr=output
        )
        return time.perf_counter() - tick, int(peak_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", required=True, help="the machine's state while it ran")
    parser.add_argument("extra", nargs="*", help="options for both commands (after --)")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for command in ("train", "improve"):
            out = Path(scratch) / command
            argv = ["rsir", command, "--out", str(out), *args.extra]
            seconds, peak = timed(argv)
            metrics = json.loads((out / "metrics.json").read_text())
            config = yaml.safe_load((out / "config.yaml").read_text())
            runs.append(
                {
                    "command": shlex.join(argv).replace(str(out), f"/tmp/first_{command}"),
                    "wall_seconds": round(seconds, 2),
                    "max_rss_kb": peak,
                    "rounds": metrics["rounds"],
                    **(
                        {
                            # the round it timed (the default round changes over time)
                            "round": {
                                "successor": config["improve"]["successor"],
                                "synthetic_per_epoch": config["train"]["synthetic_per_epoch"],
                            },
                            "report": (out / "metrics.md").read_text(),
                        }
                        if command == "improve"
                        else {}
                    ),
                }
            )
            print(f"rsir {command}: {seconds:.0f} s", file=sys.stderr)
    result = {"name": "first_run", "note": args.note, "rsir": provenance(), "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
