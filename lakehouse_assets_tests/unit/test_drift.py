"""The drift statistic: zero-inflated PSI, and training customers matched to the scoring ones'
tenures."""

import numpy as np
import pytest

from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.model.drift import (
    PSI_WARNING,
    compare,
    tenure_weights,
    zero_inflated_psi,
)


@pytest.fixture
def training() -> np.ndarray:
    return np.random.default_rng(0).normal(size=5000)


def zero_inflated(seed: int, zeros: float = 0.86, scale: float = 1.0, n: int = 20_000):
    """A CDNOW-like activity feature: `zeros` of the customers bought nothing in the window,
    the others spent lognormal amounts times `scale`."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < zeros, 0.0, scale * rng.lognormal(3.0, 0.8, n))


def test_identical_distributions_do_not_drift(training):
    assert zero_inflated_psi(training, training) == pytest.approx(0.0, abs=1e-12)


def test_another_sample_of_the_same_distribution_stays_small(training):
    scoring = np.random.default_rng(1).normal(size=5000)
    assert zero_inflated_psi(training, scoring) < 0.02


def test_a_shifted_distribution_warns(training):
    scoring = np.random.default_rng(1).normal(loc=1.0, size=5000)
    assert zero_inflated_psi(training, scoring) > PSI_WARNING


def test_a_hand_computed_index():
    # 2 zeros and 1..8: a zero bin of 20%, and the deciles of the 8 non-zero values cut each
    # into its own bin of 10%. All the scoring values are 8: its bin holds 100%, the others
    # sit at the 1e-4 floor.
    expected = np.array([0.0, 0.0, *range(1, 9)])
    actual = np.full(10, 8.0)
    floor = 1e-4
    psi = 7 * (floor - 0.1) * np.log(floor / 0.1) + (1 - 0.1) * np.log(1 / 0.1)
    psi += (floor - 0.2) * np.log(floor / 0.2)
    assert zero_inflated_psi(expected, actual) == pytest.approx(psi)


def test_an_empty_bin_counts_and_stays_finite(training):
    scoring = np.full(1000, training.max() + 1)  # every value above the training range
    psi = zero_inflated_psi(training, scoring)
    assert np.isfinite(psi) and psi > PSI_WARNING


def test_a_constant_feature_has_one_bin_and_no_drift():
    assert zero_inflated_psi(np.ones(100), np.ones(50)) == pytest.approx(0.0)
    assert zero_inflated_psi(np.zeros(100), np.zeros(50)) == pytest.approx(0.0)


def test_a_shift_among_the_buyers_is_seen_when_most_customers_bought_nothing():
    """86% zeros, as `amount_last_90d` on CDNOW: the buyers spend 5 times more."""
    before, same, shifted = zero_inflated(0), zero_inflated(1), zero_inflated(1, scale=5.0)
    assert zero_inflated_psi(before, same) < 0.02
    assert zero_inflated_psi(before, shifted) > PSI_WARNING
    # Bins at the deciles of all values would all be zero but one or two: blind to it.
    edges = np.unique(np.quantile(before, np.linspace(0, 1, 11)[1:-1]))
    e, a = (
        np.maximum(
            np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1) / len(x),
            1e-4,
        )
        for x in (before, shifted)
    )
    classic = np.sum((a - e) * np.log(a / e))
    assert classic < 0.1


def test_a_change_in_the_share_of_zeros_is_seen():
    assert (
        zero_inflated_psi(zero_inflated(0, zeros=0.86), zero_inflated(1, zeros=0.60)) > PSI_WARNING
    )


def test_the_weights_count_as_customers():
    """Weight 2 on a value is the value twice."""
    expected, actual = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 1.0, 3.0, 3.0, 5.0])
    twice = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 3.0])
    weighted = zero_inflated_psi(expected, actual, weights=np.array([2.0, 1.0, 1.0, 2.0]))
    assert weighted == pytest.approx(zero_inflated_psi(twice, actual))


def ageing_populations(scoring_age_shift: float, n: int = 20_000, seed: int = 0):
    """Customers whose features depend only on their tenure (the windows' shares shrink as a
    customer ages), in a training population younger than the scoring one."""
    rng = np.random.default_rng(seed)

    def population(max_tenure):
        tenure = rng.uniform(1, max_tenure, n)
        share = np.minimum(1.0, 90 / tenure) * rng.uniform(0.5, 1.0, n)
        return {c: share for c in FEATURE_COLUMNS} | {"tenure_days": tenure}

    return population(270), population(270 + scoring_age_shift)


def test_a_population_that_only_aged_does_not_drift_at_matching_tenures():
    training, scoring = ageing_populations(scoring_age_shift=180)
    drift = compare(training, scoring)
    assert drift.matched and drift.matched_share == pytest.approx(0.6, abs=0.02)
    assert drift.drifted == {}
    # The same customers compared as they are: every share "drifts".
    unweighted = zero_inflated_psi(training["txn_share_90d"], scoring["txn_share_90d"])
    assert unweighted > PSI_WARNING


def test_a_population_older_than_every_training_customer_is_compared_as_it_is():
    training, scoring = ageing_populations(scoring_age_shift=0)
    scoring = scoring | {"tenure_days": scoring["tenure_days"] + 400}
    drift = compare(training, scoring)
    assert not drift.matched and drift.matched_share == 0.0
    assert drift.drifted == {}  # the features themselves are the same


def test_tenure_weights_give_training_the_scoring_mix():
    training = np.repeat([10.0, 10.0, 10.0, 20.0], 100)  # 3/4 young
    scoring = np.repeat([10.0, 20.0, 20.0, 20.0, 500.0], 100)  # 1/4 young among those matched
    weights, covered = tenure_weights(training, scoring)
    assert covered.tolist() == [True] * 400 + [False] * 100
    young = weights[training == 10.0].sum() / weights.sum()
    assert young == pytest.approx(0.25)


def test_the_weights_remove_a_difference_in_tenure_mix_within_the_overlap():
    """Scoring customers skewed young, inside the training tenures: trimming to the overlap
    alone still compares different mixes; the weights make them alike."""
    rng = np.random.default_rng(3)
    training, _ = ageing_populations(scoring_age_shift=0)
    young = rng.random(20_000) < 0.7
    tenure = np.where(young, rng.uniform(1, 60, 20_000), rng.uniform(60, 270, 20_000))
    share = np.minimum(1.0, 90 / tenure) * rng.uniform(0.5, 1.0, 20_000)
    scoring = {c: share for c in FEATURE_COLUMNS} | {"tenure_days": tenure}
    assert zero_inflated_psi(training["txn_share_90d"], share) > PSI_WARNING
    assert compare(training, scoring).psi["txn_share_90d"] < 0.05


def test_a_few_old_training_customers_do_not_stand_in_for_a_decile():
    """One training customer far older than the rest must not carry a tenth of the weight."""
    training, scoring = ageing_populations(scoring_age_shift=180)
    training = {c: np.append(v, 449.0 if c == "tenure_days" else 0.9) for c, v in training.items()}
    drift = compare(training, scoring)
    assert drift.matched and drift.drifted == {}


def test_missing_values_are_left_out_and_counted():
    training, scoring = ageing_populations(scoring_age_shift=0)
    scoring = scoring | {"gap_cv": np.where(np.arange(20_000) < 500, np.nan, scoring["gap_cv"])}
    drift = compare(training, scoring)
    training_missing, scoring_missing = drift.missing["gap_cv"]  # among the customers compared
    assert training_missing == 0 and 450 < scoring_missing <= 500
    assert np.isfinite(drift.psi["gap_cv"])
    assert drift.drifted == {}
