"""The claims page is what docs/render_claims.py writes from the result files, and it refuses
claims whose numbers are typed by hand or point nowhere."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_spec = importlib.util.spec_from_file_location("render_claims", DOCS / "render_claims.py")
render_claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_claims)


def test_the_claims_page_and_the_readme_are_rendered_from_the_current_result_files():
    assert (DOCS / "RESULTS.md").read_text() == render_claims.render(), "run python docs/render_claims.py"
    readme = (DOCS.parent / "README.md").read_text()
    assert readme == render_claims.render_readme(readme), "run python docs/render_claims.py"


def toy_docs(tmp_path: Path, text: str, values: str) -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "study.json").write_text(
        json.dumps(
            {
                "rows": [
                    {"dataset": "A", "variant": "x", "recall@10": {"mean": 0.08421, "gain": 0.163, "ci": [0.11, 0.21]}},
                    {"dataset": "B", "variant": "x", "recall@10": {"mean": 0.05, "gain": -0.02, "ci": [-0.05, 0.01]}},
                ]
            }
        )
    )
    (tmp_path / "claims.toml").write_text(
        f'intro = "I"\noutro = "O"\n[[claims]]\ntitle = "T."\nstudy = "study"\ncommand = "rsir x"\n'
        f'text = "{text}"\n[claims.values]\n{values}\n'
    )
    return tmp_path


def test_a_claim_takes_its_numbers_from_the_json_through_paths(tmp_path):
    docs = toy_docs(
        tmp_path,
        "B gains {g:+.1%} (CI {lo:+.1%} to {hi:+.1%}) at `k = 2.5`.",
        'g = ["rows", {dataset = "B"}, "recall@10", "gain"]\n'
        'lo = ["rows", {dataset = "B"}, "recall@10", "ci", 0]\nhi = ["rows", {dataset = "B"}, "recall@10", "ci", -1]',
    )
    page = render_claims.render(docs)
    assert "- **T.** B gains -2.0% (CI -5.0% to +1.0%) at `k = 2.5`. Details: [results/study.json]" in page
    # A page shared by several result files is named by the claim.
    (docs / "results" / "shared.md").write_text("notes")
    (docs / "claims.toml").write_text(
        (docs / "claims.toml").read_text().replace('study = "study"', 'study = "study"\npage = "shared"')
    )
    assert "Details: [results/shared.md](results/shared.md)" in render_claims.render(docs)


def test_the_readme_lists_claim_titles_and_leaves_out_those_marked_readme_false(tmp_path):
    docs = toy_docs(tmp_path, "A reaches {r:.4f}.", 'r = ["rows", {dataset = "A"}, "recall@10", "mean"]')
    readme = "intro\n<!-- claims:start -->\n- old\n<!-- claims:end -->\nrest\n"
    assert (
        render_claims.render_readme(readme, docs) == "intro\n<!-- claims:start -->\n- T.\n<!-- claims:end -->\nrest\n"
    )
    spec = (docs / "claims.toml").read_text()
    (docs / "claims.toml").write_text(spec.replace('study = "study"', 'study = "study"\nreadme = false'))
    assert "**T.** A reaches 0.0842." in render_claims.render(docs)
    assert render_claims.render_readme(readme, docs) == "intro\n<!-- claims:start -->\n\n<!-- claims:end -->\nrest\n"


def test_a_claim_can_take_a_number_from_another_study(tmp_path):
    docs = toy_docs(
        tmp_path,
        "A reaches {r:.4f} against {o:.4f} elsewhere.",
        'r = ["rows", {dataset = "A"}, "recall@10", "mean"]\no = ["@other", "best", "recall@10"]',
    )
    (docs / "results" / "other.json").write_text(json.dumps({"best": {"recall@10": 0.0912}}))
    assert "A reaches 0.0842 against 0.0912 elsewhere." in render_claims.render(docs)
    (docs / "results" / "other.json").unlink()
    with pytest.raises(render_claims.ClaimError, match="no result file other.json"):
        render_claims.render(docs)


def test_a_claim_pools_the_seeds_two_runs_of_a_study_hold(tmp_path):
    docs = toy_docs(
        tmp_path,
        "Seeds {s}: {m:.4f}, {g:+.1%} against {p:.4f}.",
        's = {union_of = [["rows", {dataset = "A"}, "seeds"], ["@rerun", "rows", {dataset = "A"}, "seeds"]]}\n'
        'm = {mean_of = [["rows", {dataset = "A"}, "values"], ["@rerun", "rows", {dataset = "A"}, "values"]]}\n'
        'g = {mean_of = [["rows", {dataset = "A"}, "values"], ["@rerun", "rows", {dataset = "A"}, "values"]], '
        'relative_to = ["@rerun", "published"]}\n'
        'p = ["@rerun", "published"]',
    )
    study = json.loads((docs / "results" / "study.json").read_text())
    study["rows"][0].update(seeds=[0], values=[0.09])
    (docs / "results" / "study.json").write_text(json.dumps(study))
    rerun = {"published": 0.08, "rows": [{"dataset": "A", "seeds": [2, 1], "values": [0.07, 0.08]}]}
    (docs / "results" / "rerun.json").write_text(json.dumps(rerun))
    assert "Seeds 0, 1, 2: 0.0800, +0.0% against 0.0800." in render_claims.render(docs)
    rerun["rows"][0]["values"] = [0.07, 0.11]
    (docs / "results" / "rerun.json").write_text(json.dumps(rerun))
    assert "Seeds 0, 1, 2: 0.0900, +12.5% against 0.0800." in render_claims.render(docs)


def test_a_claim_gives_a_ratio_of_two_measurements(tmp_path):
    docs = toy_docs(
        tmp_path,
        "A runs {x:.1f}x as fast.",
        'x = {mean_of = [["rsir", "speed"]], ratio_to = ["@peer", "speed"]}',
    )
    (docs / "results" / "study.json").write_text(json.dumps({"rsir": {"speed": 1734.0}}))
    (docs / "results" / "peer.json").write_text(json.dumps({"speed": 100.0}))
    assert "A runs 17.3x as fast." in render_claims.render(docs)


@pytest.mark.parametrize(
    "text, values, message",
    [
        ("A reaches 0.0842.", "", "numbers written by hand (0.0)"),
        ("A gains 16%.", "", "numbers written by hand (6%)"),
        ("A reaches {r:.4f}.", 'r = ["rows", {variant = "x"}, "recall@10", "mean"]', "2 elements match"),
        ("A reaches {r:.4f}.", 'r = ["rows", {dataset = "A"}, "ndcg@10", "mean"]', "no 'ndcg@10' in the result file"),
        ("A reaches {s:.4f}.", 'r = ["rows", {dataset = "A"}, "recall@10", "mean"]', "KeyError 's'"),
    ],
)
def test_hand_written_or_unresolved_numbers_are_refused(tmp_path, text, values, message):
    with pytest.raises(render_claims.ClaimError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render_claims.render(toy_docs(tmp_path, text, values))


def test_the_headline_table_sets_the_round_against_plain_and_the_rival_best_on_validation():
    """Built from a report of the experiment runner's own selection and comparisons: the rival
    shown is the one picked best on validation (not on test), and a round whose rivals have no
    pick yet says so."""
    from rsir.experiments.report import aggregate, picks_head_to_head, select_on_validation
    from rsir.experiments.runner import Cell, Spec

    valid = {"plain": 0.05, "round": 0.07, "insert": 0.06, "distil": 0.055, "other_round": 0.065}
    test = {"plain": 0.10, "round": 0.11, "insert": 0.09, "distil": 0.12, "other_round": 0.10}
    cells = [Cell("d", v, s, "train", {}) for v in valid for s in (0, 1, 2)]
    results = {
        c.key: {
            "rounds": [
                {
                    "round": 0,
                    "test": {
                        m: test[c.variant] * (1 + 0.01 * c.seed * (c.variant != "plain"))
                        for m in ("recall@10", "ndcg@10")
                    },
                    "valid": {"ndcg@20": valid[c.variant]},
                }
            ]
        }
        for c in cells
    }
    groups = {"plain": ["plain"], "round": ["round"], "insert": ["insert"], "distil": ["distil"]}
    groups |= {"other": ["other_round"], "markov": ["markov"]}  # markov never ran: no pick
    rivals = {"round": ["insert", "distil"], "other": ["markov"]}
    spec = Spec("t", cells, "plain", ["recall@10", "ndcg@10"], select=groups, rivals=rivals)
    selection = select_on_validation(spec, aggregate(spec, results))
    report = {
        "selection": selection,
        "picks_head_to_head": picks_head_to_head(spec, selection, results, set(), {}),
        "select_groups": list(groups),
        "rivals": rivals,
    }
    table = render_claims.headline_table(report).splitlines()
    assert len(table) == 4  # header, rule, one row per round
    scale = np.mean([1, 1.01, 1.02])  # every variant but plain grows by 1% a seed
    # insert is best on validation (0.06 > 0.055) though distil is better on test: insert is shown.
    round_gain, insert_gain, head_to_head = 1.1 * scale - 1, 0.9 * scale - 1, 0.11 / 0.09 - 1
    assert table[2] == (
        f"| d | 3 | `plain`: 0.1000 / 0.1000 | `round`: {round_gain:+.1%} / {round_gain:+.1%} "
        f"| `insert`: {insert_gain:+.1%} / {insert_gain:+.1%} | {head_to_head:+.1%} / {head_to_head:+.1%} |"
    )
    other = scale - 1
    assert (
        table[3]
        == f"| d | 3 | `plain`: 0.1000 / 0.1000 | `other_round`: {other:+.1%} / {other:+.1%} | not run | not run |"
    )
    # A rival compared on fewer seeds than its row says how many.
    shown = [r for r in report["picks_head_to_head"] if r["variant"] == "insert"]
    for row in shown:
        row["seeds"] = row["seeds"][:1]
    assert (
        render_claims.headline_table(report)
        .splitlines()[2]
        .endswith(
            f"`insert`: {insert_gain:+.1%} / {insert_gain:+.1%} (seeds: 1) | {head_to_head:+.1%} / {head_to_head:+.1%} |"
        )
    )
