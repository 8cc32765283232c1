"""The seed's credit rates and estimate formulas."""

import math

from shared.catalogue import stage_cost
from shared.credits import IDEAS_PER_CLUSTER, KEYWORDS_PER_CLUSTER, estimate_from_counts


def test_stage_rates_follow_the_seed():
    assert [stage_cost(1, n) for n in (1, 5, 6, 20)] == [1, 1, 2, 4]
    assert stage_cost(2, 3) == 6
    assert stage_cost(3, 50) == 0
    assert stage_cost(4, 2) == 10
    assert stage_cost(5, 2) == 4
    assert stage_cost(6, 4) == 8
    assert stage_cost(7, 9) == 0


def test_estimate_uses_the_seed_formulas_on_projected_counts():
    estimate = estimate_from_counts({1: 200, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0})
    clusters = math.ceil(200 / KEYWORDS_PER_CLUSTER)
    content = clusters * IDEAS_PER_CLUSTER
    assert estimate.per_stage == {1: 40, 2: clusters * 2, 3: 0, 4: content * 5, 5: content * 2, 6: content * 8, 7: 0}
    assert estimate.required(1.2) == math.ceil(estimate.total * 1.2)


def test_nothing_to_do_costs_nothing():
    assert estimate_from_counts(dict.fromkeys(range(1, 7), 0)).total == 0
