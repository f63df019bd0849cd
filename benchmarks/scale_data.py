"""Data at scale (issue 50): the built-in generator's long-tailed log of 10^6 users x 10^5
items written as Parquet, then read back into the compact store, each step in its own
process so that its peak memory is its own.

    python benchmarks/scale_data.py --out docs/results/scale_data.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rsir.files import write_json
from rsir.rundir import provenance

STEP = """
import json, resource, sys, time
started = time.perf_counter()
from rsir.data import make_synthetic, read_dataset, write_dataset
if sys.argv[1] == "write":
    data = make_synthetic(int(sys.argv[3]), int(sys.argv[4]), seed=0)
    write_dataset(data, sys.argv[2])
else:
    data = read_dataset(sys.argv[2])
s = data.sequences
store = s.items.nbytes + s.offsets.nbytes + s.users.nbytes + s.origin.nbytes + data.item_ids.nbytes + data.user_ids.nbytes
store += data.timestamps.nbytes if data.timestamps is not None else 0
print(json.dumps({"seconds": round(time.perf_counter() - started, 1), "users": data.n_users, "items": data.n_items,
                  "interactions": int(s.n_interactions), "store_mb": round(store / 1e6, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
                  "fingerprint": data.fingerprint()}))
"""


def step(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", STEP, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--file", default="/tmp/rsir_scale.parquet")
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", default="", help="the machine's state while it ran")
    args = parser.parse_args()
    started = time.perf_counter()
    written = step("write", args.file, str(args.users), str(args.items))
    read = step("read", args.file)
    raw_mb = read["interactions"] * 3 * 8 / 1e6  # user, item and time columns as 8-byte values
    write_json(
        args.out,
        {
            "name": "scale_data",
            "command": "python " + shlex.join(sys.argv),
            "rsir": provenance(),
            "seed": 0,
            "file_mb": round(Path(args.file).stat().st_size / 1e6, 1),
            "write": written,
            "read": read,
            "raw_columns_mb": round(raw_mb, 1),
            "same_data": written["fingerprint"] == read["fingerprint"],
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores" + (f"; {args.note}" if args.note else ""),
            "max_rss_this_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
        },
    )


if __name__ == "__main__":
    main()
