"""The fidelity-controlled generation rule, on a model whose scores are known exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from rsir.data import Sequences
from rsir.errors import ConfigError
from rsir.generation.generate import GenerationParams, generate, own_item_rank_quantiles
from rsir.models import build_backbone
from rsir.models.base import Backbone
from rsir.training.trainer import TrainParams, fit


@dataclass
class TableParams:
    max_len: int = 50


class TransitionTable(Backbone):
    """First-order model: the score of item j after item i is table[i, j]."""

    name = "table"
    Params = TableParams

    def __init__(self, table: list[list[float]]) -> None:
        matrix = torch.tensor(table, dtype=torch.float32)
        super().__init__(len(matrix) - 1, TableParams())
        self.register_buffer("weights", matrix.T.contiguous())

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(items, self.n_items + 1).float()

    def item_weights(self) -> torch.Tensor:
        return self.weights


def table(n: int, preferences: dict[int, list[int]]) -> list[list[float]]:
    """Row i ranks preferences[i] first (in order), every other item after them."""
    rows = [[0.0] * (n + 1) for _ in range(n + 1)]
    for i, order in preferences.items():
        for rank, item in enumerate(order):
            rows[i][item] = 100.0 - rank
        for j in range(1, n + 1):
            if j not in order:
                rows[i][j] = -float(j)  # distinct scores, lower than any preferred item
    return rows


def run(model, sources, **params) -> list[list[int]]:
    defaults = {"attempts": 1, "exploit_prob": 1.0, "min_length": 1, "dedupe": False}
    result = generate(model, Sequences.from_lists(sources), GenerationParams(**{**defaults, **params}), progress=False)
    return result.sequences.to_lists()


def test_accepts_while_a_real_item_is_in_the_top_tau_and_stops_when_none_is_left():
    model = TransitionTable(table(6, {1: [2, 3], 2: [3, 4]}))
    # From seed 1: item 2 (of R = {2, 3}) is top-1 -> continue, exploit picks 2; then 3 is
    # top-1 after 2 -> continue, pick 3; then R is empty -> stop.
    assert run(model, [[1, 2, 3]], tau=1) == [[1, 2, 3]]


def test_failed_check_drops_the_item_that_produced_the_context():
    # After 1 -> 2, the remaining real item 3 ranks 5th: with tau = 2 the check fails, so 2
    # (the item that led there) is rejected and only the seed remains.
    model = TransitionTable(table(6, {1: [2, 3], 2: [4, 5, 6, 1, 3]}))
    assert run(model, [[1, 2, 3]], tau=2) == [[1]]
    # tau = 5 lets it through.
    assert run(model, [[1, 2, 3]], tau=5) == [[1, 2, 3]]


def test_seed_that_fails_the_check_is_kept_but_too_short():
    model = TransitionTable(table(6, {1: [4, 5, 6, 2, 3]}))
    assert run(model, [[1, 2, 3]], tau=2) == [[1]]
    assert run(model, [[1, 2, 3]], tau=2, min_length=3) == []


def test_tau_infinity_never_stops_on_rank():
    model = TransitionTable(table(6, {1: [4, 5, 6, 2, 3], 2: [4, 5, 6, 1, 3], 3: [4, 5, 6, 1, 2]}))
    assert run(model, [[1, 2, 3]], tau=math.inf) == [[1, 2, 3]]


def test_exploration_picks_from_the_whole_catalogue_and_excludes_items_already_in_g():
    model = TransitionTable(table(6, {1: [5, 2, 3], 5: [1, 6, 2, 3], 6: [2, 3]}))
    # p = 0: always the catalogue's best item not in g: 1 -> 5 -> 6 (1 is excluded) -> 2 -> ...
    out = run(model, [[1, 2, 3]], tau=10, exploit_prob=0.0, max_length=4)
    assert out == [[1, 5, 6, 2]]


def test_prefix_seeds_and_dedupe():
    model = TransitionTable(table(6, {1: [2, 3], 2: [3, 4], 3: [4]}))
    out = generate(
        model,
        Sequences.from_lists([[1, 2, 3, 4]]),
        GenerationParams(attempts=6, seed_mode="prefix", tau=3, min_length=1),
        seed=1,
        progress=False,
    )
    # Every attempt ends as [1, 2, 3, 4] whatever its real prefix: dedupe keeps one.
    assert out.sequences.to_lists() == [[1, 2, 3, 4]]
    assert out.stats["attempts"] == 6 and out.stats["kept"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"tau": 0.5},
        {"exploit_prob": 1.5},
        {"seed_mode": "random"},
        {"choice": "beam"},
        {"tau_mode": "per-user"},
        {"tau_quantile": 1.5},
    ],
)
def test_invalid_options(bad):
    with pytest.raises(ConfigError):
        GenerationParams(**bad).validate()


@pytest.fixture(scope="module")
def trained(small_dataset, small_split):
    model = build_backbone("sasrec", small_dataset.n_items, {"dim": 32, "blocks": 1, "heads": 1, "max_len": 20}, seed=0)
    # A larger step than the default: Xavier-initialised blocks learn slowly on a few epochs of toy data.
    fit(model, small_split, TrainParams(max_epochs=5, batch_size=64, lr=1e-2, negatives=32), progress=False)
    return model


def test_exploitation_only_uses_the_users_own_training_items(trained, small_split):
    result = generate(trained, small_split.train, GenerationParams(exploit_prob=1.0, tau=math.inf), progress=False)
    synthetic = result.sequences
    assert len(synthetic) > 0
    source_items = [set(small_split.train[row].tolist()) for row in synthetic.users]
    assert all(set(seq) <= own for seq, own in zip(synthetic.to_lists(), source_items))


def test_validation_and_test_items_never_enter_generation(trained, small_split):
    """Sources are the training part, so held-out items cannot be in R; with p = 1 no
    held-out item (that is not also a training item of that user) can appear."""
    result = generate(trained, small_split.train, GenerationParams(exploit_prob=1.0, tau=5), progress=False)
    for seq, row in zip(result.sequences.to_lists(), result.sequences.users):
        held_out = {int(small_split.valid.targets[row]), int(small_split.test.targets[row])}
        assert not (held_out - set(small_split.train[row].tolist())) & set(seq)


def test_generation_is_seeded_and_batch_size_invariant(trained, small_split):
    params = dict(choice="topk", top_k=5, exploit_prob=0.5, tau=10)
    a = generate(trained, small_split.train, GenerationParams(**params), seed=3, progress=False).sequences
    b = generate(trained, small_split.train, GenerationParams(**params), seed=3, progress=False).sequences
    assert a.to_lists() == b.to_lists()
    greedy = dict(exploit_prob=1.0, tau=10)
    c = generate(trained, small_split.train, GenerationParams(**greedy, attempt_batch=7), progress=False).sequences
    d = generate(trained, small_split.train, GenerationParams(**greedy, attempt_batch=4096), progress=False).sequences
    assert sorted(map(tuple, c.to_lists())) == sorted(map(tuple, d.to_lists()))
    lengths = c.lengths
    assert lengths.min() >= 3 and len({tuple(s) for s in c.to_lists()}) == len(c)


def test_without_the_check_only_exploring_rows_score_the_catalogue_and_nothing_changes(trained, small_split):
    """tau = inf skips the catalogue for the rows that exploit (pool_step); a threshold that
    admits the whole catalogue runs the full check on every row. The same sequences come out."""
    unchecked = generate(trained, small_split.train, GenerationParams(tau=math.inf), seed=5, progress=False)
    checked = generate(trained, small_split.train, GenerationParams(tau=trained.n_items - 1), seed=5, progress=False)
    assert checked.stats["acceptance_by_step"] == [1.0] * len(checked.stats["acceptance_by_step"])
    assert unchecked.sequences.to_lists() == checked.sequences.to_lists()
    assert unchecked.stats["generated_items"] > 2 * len(small_split.train)  # both pools were used over many steps


def test_faiss_index_scanning_every_list_decides_as_the_exact_scan(trained, small_split):
    """An IVF index that probes all its lists is an exact search: the same generation."""
    params = dict(attempts=2, tau=5, exploit_prob=0.5)
    exact = generate(trained, small_split.train, GenerationParams(**params), progress=False)
    full_probe = GenerationParams(**params, retrieval="faiss", faiss_lists=4, faiss_probe=4)
    probed = generate(trained, small_split.train, full_probe, progress=False)
    assert exact.stats["acceptance_by_step"] == probed.stats["acceptance_by_step"]
    assert {tuple(s) for s in exact.sequences.to_lists()} == {tuple(s) for s in probed.sequences.to_lists()}


def test_faiss_with_few_probes_stays_close_to_the_exact_scan(trained, small_split):
    params = dict(attempts=2, tau=5, exploit_prob=0.5)
    exact = generate(trained, small_split.train, GenerationParams(**params), progress=False)
    coarse = generate(
        trained, small_split.train, GenerationParams(**params, retrieval="faiss", faiss_probe=1), progress=False
    )
    first_step = exact.stats["acceptance_by_step"][0], coarse.stats["acceptance_by_step"][0]
    assert abs(first_step[0] - first_step[1]) < 0.05  # both answer the same first question for every attempt
    assert 0.7 < coarse.stats["kept"] / exact.stats["kept"] < 1.3


def test_unknown_retrieval_is_a_clear_error():
    with pytest.raises(ConfigError, match="did you mean 'faiss'"):
        GenerationParams(retrieval="fais").validate()


def test_own_item_rank_quantiles_on_known_scores():
    model = TransitionTable(table(6, {1: [2, 3], 2: [3, 4]}))
    # [1, 2, 3]: 2 ranks 1st after 1, 3 ranks 1st after 2. [1, 3, 5]: 3 ranks 2nd after 1;
    # after 3 (a row without preferences) all 6 items tie, so 5 ranks 6th (ties count
    # against it). [4]: nothing to rank.
    seqs = Sequences.from_lists([[1, 2, 3], [1, 3, 5], [4]])
    assert own_item_rank_quantiles(model, seqs, 0.0).tolist() == [1, 2, math.inf]
    assert own_item_rank_quantiles(model, seqs, 1.0).tolist() == [1, 6, math.inf]


def test_adaptive_tau_holds_each_sequence_to_how_its_own_items_rank():
    # After 1 the catalogue's best is 4, and the real items 2, 3 rank 2nd and 3rd.
    model = TransitionTable(table(6, {1: [4, 2, 3], 2: [3, 4]}))
    assert run(model, [[1, 2, 3]], tau=2) == [[1, 2, 3]]
    # Its own items rank 2nd (2 after 1) and 1st (3 after 2): the strictest quantile gives
    # tau 1 for this user, so the first step fails; the loosest gives 2 and passes.
    assert run(model, [[1, 2, 3]], tau=10, tau_mode="adaptive", tau_quantile=0.0) == [[1]]
    assert run(model, [[1, 2, 3]], tau=10, tau_mode="adaptive", tau_quantile=1.0) == [[1, 2, 3]]
    # tau stays the cap: a per-user threshold of 2 capped at 1 fails again.
    assert run(model, [[1, 2, 3]], tau=1, tau_mode="adaptive", tau_quantile=1.0) == [[1]]


def test_approximate_entropy_and_the_rounds_shares_follow_their_definitions():
    """ApEn(1, r=0) per sequence against its textbook form (windows counted one by one), and
    the novel-transition and own-item shares against set membership, on sequences with
    repeats, a constant one, one without repeats and one too short."""
    from collections import Counter

    import numpy as np

    from rsir.generation.analysis import analyse_round, approximate_entropy

    lists = [[1, 2, 1, 2, 1, 2], [3, 3, 3, 3], [1, 2, 3, 4, 5], [7, 8], [5, 1, 5, 2, 5, 1, 4]]

    def phi(seq, k):
        windows = [tuple(seq[i : i + k]) for i in range(len(seq) - k + 1)]
        counts = Counter(windows)
        return sum(math.log(counts[w] / len(windows)) for w in windows) / len(windows)

    got = approximate_entropy(Sequences.from_lists(lists))
    for seq, value in zip(lists, got):
        if len(seq) < 3:
            assert math.isnan(value)
        else:
            assert value == pytest.approx(phi(seq, 1) - phi(seq, 2), abs=1e-12)
    real = Sequences.from_lists(lists)
    synthetic = Sequences.from_lists([[1, 2, 9], [3, 4, 3]], users=np.array([0, 1]), origin=1)
    stats = analyse_round(real, real, synthetic, 9)
    real_pairs = {(a, b) for s in lists for a, b in zip(s, s[1:])}
    pairs = [(1, 2), (2, 9), (3, 4), (4, 3)]
    assert stats["novel_transition_share"] == pytest.approx(sum(p not in real_pairs for p in pairs) / len(pairs))
    own = [i in lists[0] for i in (1, 2, 9)] + [i in lists[1] for i in (3, 4, 3)]
    assert stats["own_item_share"] == pytest.approx(sum(own) / len(own))


def test_duplicates_are_found_by_content_and_the_first_of_each_is_kept():
    import numpy as np

    from rsir.generation.generate import first_of_each_content

    rng = np.random.default_rng(0)
    for _ in range(50):
        lists = [rng.integers(1, 4, rng.integers(1, 5)).tolist() for _ in range(int(rng.integers(1, 40)))]
        seen: set[tuple[int, ...]] = set()
        expected = [i for i, s in enumerate(lists) if not (tuple(s) in seen or seen.add(tuple(s)))]
        assert first_of_each_content(Sequences.from_lists(lists)).tolist() == expected
