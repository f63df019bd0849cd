"""Write the claims page, docs/RESULTS.md, and the README's claims block from
docs/claims.toml and docs/results/*.json.

    python docs/render_claims.py           # rewrite the page
    python docs/render_claims.py --check   # exit 1 if the page differs from what would be written

Each claim's text takes its numbers from the result files through named values: a value is a
path into one JSON file (keys, list positions, or a table that picks the list element whose
fields match), and the text formats it, e.g. ``{gain:+.1%}``. A path starts in the claim's own
study's file, or, where its first step is ``"@name"``, in docs/results/name.json (a claim that
compares two studies). A value can also pool seeds that two runs of one study hold (a table):
``{mean_of = [path, ...]}`` is the mean of all the per-seed values the paths give, with
``relative_to = path`` its gap to that number (mean / number - 1) or ``ratio_to = path`` its
ratio to it (mean / number, for "N times"), and ``{union_of = [path, ...]}`` the sorted seeds
of all of them. tests/test_claims.py fails when the
page is stale or when a claim's text writes a measured number itself.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
# A measured number written by hand: a decimal or a percentage outside placeholders and code.
HAND_WRITTEN = re.compile(r"\d\.\d|\d%")


class ClaimError(ValueError):
    """A claim that does not resolve against its result file."""


def resolve(document: Any, path: list[Any], where: str) -> Any:
    """Follow ``path`` into ``document``: a string is a key, an int a list position, a table
    the one list element whose fields equal its own."""
    value = document
    for step in path:
        if isinstance(step, dict):
            matches = (
                [row for row in value if all(row.get(k) == v for k, v in step.items())]
                if isinstance(value, list)
                else []
            )
            if len(matches) != 1:
                raise ClaimError(f"{where}: {len(matches)} elements match {step}")
            value = matches[0]
        elif isinstance(value, dict) and isinstance(step, str) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
        else:
            raise ClaimError(f"{where}: no {step!r} in the result file")
    return value


def hand_written_numbers(text: str) -> list[str]:
    """The measured-looking numbers of a claim's text that no placeholder fills."""
    bare = re.sub(r"`[^`]*`", "", re.sub(r"\{[^{}]*\}", "", text))
    return HAND_WRITTEN.findall(bare)


def claim_text(claim: dict[str, Any], results: Path) -> str:
    """A claim's title and its text with the numbers filled in from its study's JSON."""
    study = claim["study"]
    source = results / f"{study}.json"
    where = f"claim {claim['title']!r}"

    def lookup(name: str, path: list[Any]) -> Any:
        other = path[0][1:] if path and isinstance(path[0], str) and path[0].startswith("@") else None
        file = results / f"{other}.json" if other else source
        if not file.exists():
            raise ClaimError(f"{where}, value {name!r}: no result file {file.name}")
        return resolve(json.loads(file.read_text()), path[1:] if other else path, f"{where}, value {name!r}")

    def pooled(name: str, paths: list[list[Any]]) -> list[Any]:
        found = [lookup(name, path) for path in paths]
        return [item for part in found for item in (part if isinstance(part, list) else [part])]

    def value(name: str, spec: list[Any] | dict[str, Any]) -> Any:
        if isinstance(spec, list):
            return _plain(lookup(name, spec))
        if "union_of" in spec:
            return _plain(sorted(set(pooled(name, spec["union_of"]))))
        if "mean_of" not in spec:
            raise ClaimError(f"{where}, value {name!r}: a table value takes mean_of or union_of")
        seeds = pooled(name, spec["mean_of"])
        mean = sum(seeds) / len(seeds)
        if "relative_to" in spec:
            return mean / lookup(name, spec["relative_to"]) - 1
        return mean / lookup(name, spec["ratio_to"]) if "ratio_to" in spec else mean

    values = {name: value(name, spec) for name, spec in claim.get("values", {}).items()}
    written = hand_written_numbers(claim["text"])
    if written:
        raise ClaimError(f"{where}: numbers written by hand ({', '.join(written)}); take them from {source.name}")
    try:
        text = claim["text"].strip().format_map(values)
    except (KeyError, ValueError, TypeError) as exc:
        raise ClaimError(f"{where}: {type(exc).__name__} {exc}") from None
    return f"**{claim['title']}** {' '.join(text.split())}"


def render_claim(claim: dict[str, Any], results: Path) -> str:
    """A claim's line on the claims page: its text, the link to its study's page and its command."""
    study = claim.get("page", claim["study"])  # a page shared by several result files names itself
    page = f"results/{study}.md" if (results / f"{study}.md").exists() else f"results/{study}.json"
    return f"- {claim_text(claim, results)} Details: [{page}]({page}); `{claim['command']}`."


def _plain(value: Any) -> Any:
    """A list of numbers (seeds) reads as "0, 1, 2"."""
    return ", ".join(map(str, value)) if isinstance(value, list) else value


def render(docs: Path = DOCS) -> str:
    spec = tomllib.loads((docs / "claims.toml").read_text())
    claims = "\n".join(render_claim(claim, docs / "results") for claim in spec["claims"])
    return f"# Results\n\n{spec['intro'].strip()}\n\n## Claims\n\n{claims}\n\n{spec['outro'].strip()}\n"


README_MARKERS = ("<!-- claims:start -->\n", "<!-- claims:end -->")
HEADLINE_MARKERS = ("<!-- headline:start -->\n", "<!-- headline:end -->")


def _gain(row: dict[str, Any] | None, metric: str) -> str:
    if row is None:
        return "not run"
    gain = row[metric]
    ci = f" [{100 * gain['ci'][0]:+.1f}, {100 * gain['ci'][1]:+.1f}]" if gain.get("ci") else ""
    return f"{100 * gain['gain']:+.1f}%{ci}" if gain.get("gain") is not None else "n/a"


def _other_seeds(row: dict[str, Any] | None, seeds: int) -> str:
    """A comparison on another number of seeds than its table row's says how many."""
    return f" (seeds: {len(row['seeds'])})" if row is not None and len(row["seeds"]) != seeds else ""


def headline_table(report: dict[str, Any]) -> str:
    """The README's headline, from a study that picks on validation (``select``) and names
    rivals: per data set and round, the plain pick's test metrics, the round's gain over it, the
    gain of the rival picked best on validation, and the round against that rival (paired by
    seed, 95% seed x user bootstrap intervals)."""
    first = report["select_groups"][0]
    picks = {(r["dataset"], r["group"]): r for r in report["selection"]}
    versus = {(r["dataset"], r["group"], r["against_group"]): r for r in report["picks_head_to_head"]}

    def validation(pick: dict[str, Any]) -> float:
        return next(c["valid"] for c in pick["candidates"] if c["variant"] == pick["pick"])

    metrics = "Recall@10 / NDCG@10"
    lines = [
        f"| data set | seeds | plain: test {metrics} | round: gain over plain | best rival on validation: "
        "gain over plain | round against that rival |",
        "|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in report["selection"]):
        plain = picks.get((dataset, first))
        for group, rivals in report["rivals"].items():
            mine = picks.get((dataset, group))
            if plain is None or mine is None:
                continue
            found = [(rival, picks[(dataset, rival)]) for rival in rivals if (dataset, rival) in picks]
            best = max(found, key=lambda pair: validation(pair[1]), default=None)
            over_plain = versus.get((dataset, group, first))
            rival_over_plain = versus.get((dataset, best[0], first)) if best else None
            against_rival = versus.get((dataset, group, best[0])) if best else None
            both = " / ".join
            seeds = len((over_plain or mine)["seeds"])
            lines.append(
                f"| {dataset} | {seeds} "
                f"| `{plain['pick']}`: {plain['test']['recall@10']['mean']:.4f} / {plain['test']['ndcg@10']['mean']:.4f} "
                f"| `{mine['pick']}`: {both(_gain(over_plain, m) for m in ('recall@10', 'ndcg@10'))} "
                + (
                    f"| `{best[1]['pick']}`: {both(_gain(rival_over_plain, m) for m in ('recall@10', 'ndcg@10'))}"
                    f"{_other_seeds(rival_over_plain, seeds)} "
                    f"| {both(_gain(against_rival, m) for m in ('recall@10', 'ndcg@10'))}{_other_seeds(against_rival, seeds)} |"
                    if best
                    else "| not run | not run |"
                )
            )
    return "\n".join(lines)


def render_readme(readme: str, docs: Path = DOCS) -> str:
    """The README with its claims block (between the markers): the titles of the same claims,
    less those marked ``readme = false``, so a newcomer reads what holds in a few lines (the
    claims page has every claim's numbers, seeds and command)."""
    start, end = README_MARKERS
    before, rest = readme.split(start, 1)
    after = rest.split(end, 1)[1]
    spec = tomllib.loads((docs / "claims.toml").read_text())
    lines = "\n".join(f"- {claim['title']}" for claim in spec["claims"] if claim.get("readme", True))
    readme = f"{before}{start}{lines}\n{end}{after}"
    if "headline" in spec and HEADLINE_MARKERS[0] in readme:
        start, end = HEADLINE_MARKERS
        before, rest = readme.split(start, 1)
        after = rest.split(end, 1)[1]
        report = json.loads((docs / "results" / f"{spec['headline']['study']}.json").read_text())
        readme = f"{before}{start}{headline_table(report)}\n{end}{after}"
    return readme


def main(argv: list[str]) -> int:
    readme = DOCS.parent / "README.md"
    pages = {DOCS / "RESULTS.md": render(), readme: render_readme(readme.read_text())}
    if "--check" in argv:
        stale = [str(path) for path, text in pages.items() if path.read_text() != text]
        if stale:
            print(f"{', '.join(stale)} stale: run python docs/render_claims.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in pages.items():
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
