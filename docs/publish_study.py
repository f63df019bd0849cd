"""Publish an experiment's report as a study of docs/results: NAME.json (the report with how it
was made), NAME.md and NAME.png, from the finished cells in the experiment's run directory.

    python docs/publish_study.py experiments/cheap_round.toml \\
        --command "rsir experiment experiments/cheap_round.toml --jobs 1 --only 'Beauty/*/s0'" \\
        --machine "2-core x86_64 CPU, one torch thread per cell, two cells at a time" \\
        --note "what a reader must know to read the numbers"

The finished cells are first archived in docs/results/cells/NAME (configs, metrics and users'
test ranks, no models: small enough to commit), and the cells archived there earlier that the
run directory lacks are restored into it, so that a study grows across sessions whose runs/ did
not survive. The report is then rewritten from the cells (as ``rsir experiment SPEC
--report-only``). The commits are those each cell's runs recorded in their metrics.json; the
seeds are the spec's. Then ``python docs/render_claims.py`` carries any claim's numbers to the
pages.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rsir.experiments.archive import archive_cells, restore_cells
from rsir.experiments.report import write_report
from rsir.experiments.runner import load_spec

RESULTS = Path(__file__).resolve().parent / "results"


def cell_provenance(out: Path) -> tuple[list[str], list[dict]]:
    """The rsir commits and the numerical environments the finished cells' runs recorded, each
    in order of first appearance (runs before 2026-12-07 recorded no environment)."""
    commits: list[str] = []
    environments: list[dict] = []
    for metrics in sorted(out.glob("*/*/s*/run/**/metrics.json")):
        origin = json.loads(metrics.read_text()).get("rsir") or {}
        commit, environment = origin.get("commit"), origin.get("environment")
        if commit and commit not in commits:
            commits.append(commit)
        if environment and environment not in environments:
            environments.append(environment)
    return commits, environments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--out", help="the experiment's run directory (default runs/experiments/NAME)")
    parser.add_argument("--name", help="the study's name in docs/results (default the spec's name)")
    parser.add_argument("--command", required=True, help="the command that ran the cells")
    parser.add_argument("--machine", required=True, help="where and how the cells ran (load, threads)")
    parser.add_argument("--note", default="", help="what a reader must know to read the numbers")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    out = Path(args.out or Path("runs") / "experiments" / spec.name)
    name = args.name or spec.name
    restored = restore_cells(spec, out, RESULTS / "cells" / name)
    write_report(spec, out)
    report = json.loads((out / "report.json").read_text())
    target = RESULTS / f"{name}.json"
    if target.exists() and (before := json.loads(target.read_text())["cells_done"]) > report["cells_done"]:
        # Its cells predate the archive, or the run directory is not this study's: nothing is dropped.
        raise SystemExit(
            f"publish_study: {target} reports {before} finished cells and {out} with the archive only "
            f"{report['cells_done']}; publish these under another --name"
        )
    archived = archive_cells(spec, out, RESULTS / "cells" / name)
    print(f"archived {len(archived)} finished cells, restored {len(restored)} archived ones")
    commits, environments = cell_provenance(out)
    published = {
        "command": args.command,
        "commits": commits,
        "environments": environments,
        "machine": args.machine,
        "seeds": sorted({cell.seed for cell in spec.cells}),
        "note": args.note,
        **report,
        "name": name,
    }
    target.write_text(json.dumps(published, indent=2) + "\n")
    shutil.copyfile(out / "report.md", RESULTS / f"{name}.md")
    if (out / "report.png").exists():
        shutil.copyfile(out / "report.png", RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json, .md{' and .png' if (out / 'report.png').exists() else ''}")


if __name__ == "__main__":
    main()
