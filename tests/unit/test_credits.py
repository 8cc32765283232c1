"""The seed's credit rates and estimate formulas."""

import math

from shared.credits import IDEAS_PER_CLUSTER, KEYWORDS_PER_CLUSTER, estimate_from_counts, stage_cost


def test_stage_rates_follow_the_seed():
    assert [stage_cost(1, n) for n in (1, 5, 6, 20)] == [1, 1, 2, 4]
    assert stage_cost(2, 3) == 6
    assert stage_cost(3, 50) == 0
    assert stage_cost(4, 2) == 10
    assert stage_cost(5, 2) == 4
    assert stage_cost(6, 4) == 8
    assert stage_cost(7, 9) == 0


def test_estimate_uses_the_seed_formulas_on_projected_counts():
    estimate = estimate_from_counts(keywords=200, clusters=0, ideas=0, tasks=0, drafts=0, pending_images=0)
    clusters = math.ceil(200 / KEYWORDS_PER_CLUSTER)
    content = clusters * IDEAS_PER_CLUSTER
    assert estimate.per_stage == {1: 40, 2: clusters * 2, 3: 0, 4: content * 5, 5: content * 2, 6: content * 8, 7: 0}
    assert estimate.required(1.2) == math.ceil(estimate.total * 1.2)


def test_nothing_to_do_costs_nothing():
    assert estimate_from_counts(0, 0, 0, 0, 0, 0).total == 0
