"""The seed's credit rates and the estimate's projection through the stages."""

import math

from shared.catalogue import stage_cost
from shared.credits import DEFAULT_YIELDS, Yields, estimate_from_counts


def test_stage_rates_follow_the_seed():
    assert [stage_cost(1, n) for n in (1, 5, 6, 20)] == [1, 1, 2, 4]
    assert stage_cost(2, 3) == 6
    assert stage_cost(3, 50) == 0
    assert stage_cost(4, 2) == 10
    assert stage_cost(5, 2) == 4
    assert stage_cost(6, 4) == 8
    assert stage_cost(7, 9) == 0


def test_a_fresh_sites_keywords_are_projected_through_every_stage():
    estimate = estimate_from_counts({1: 200, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0})
    clusters = math.ceil(200 / DEFAULT_YIELDS.keywords_per_cluster)
    content = math.ceil(200 * DEFAULT_YIELDS.ideas_per_keyword)
    images = math.ceil(content * DEFAULT_YIELDS.images_per_content)
    assert estimate.per_stage == {1: 40, 2: clusters * 2, 3: 0, 4: content * 5, 5: content * 2, 6: images * 2, 7: 0}
    assert estimate.required(1.2) == math.ceil(estimate.total * 1.2)


def test_the_sites_own_yields_replace_the_defaults():
    lean = Yields(keywords_per_cluster=10, ideas_per_keyword=0.1, images_per_content=2, source="site")
    estimate = estimate_from_counts({1: 200, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0}, lean)
    assert estimate.counts == {"keywords": 200, "clusters": 20, "ideas": 20, "tasks": 20, "content": 20, "images": 40}
    assert estimate.yields == "site"


def test_the_rest_of_a_run_counts_only_the_stages_to_come_with_their_exact_inputs():
    # at stage 4: 30 tasks wait, 7 new keywords arrived meanwhile (the next run's)
    estimate = estimate_from_counts({1: 7, 2: 0, 3: 0, 4: 30, 5: 0, 6: 0}, from_stage=4)
    images = math.ceil(30 * DEFAULT_YIELDS.images_per_content)
    assert estimate.per_stage == {1: 0, 2: 0, 3: 0, 4: 150, 5: 60, 6: images * 2, 7: 0}
    # at stage 6 the images are known exactly
    assert estimate_from_counts({1: 7, 2: 0, 3: 0, 4: 0, 5: 0, 6: 33}, from_stage=6).total == 66


def test_nothing_to_do_costs_nothing():
    assert estimate_from_counts(dict.fromkeys(range(1, 7), 0)).total == 0
