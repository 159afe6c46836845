"""The population stability index between the training and the scoring features."""

import numpy as np
import pytest

from lakehouse_assets.lib.model.drift import PSI_WARNING, population_stability_index


@pytest.fixture
def training() -> np.ndarray:
    return np.random.default_rng(0).normal(size=5000)


def test_identical_distributions_do_not_drift(training):
    assert population_stability_index(training, training) == pytest.approx(0.0, abs=1e-12)


def test_another_sample_of_the_same_distribution_stays_small(training):
    scoring = np.random.default_rng(1).normal(size=5000)
    assert population_stability_index(training, scoring) < 0.02


def test_a_shifted_distribution_warns(training):
    scoring = np.random.default_rng(1).normal(loc=1.0, size=5000)
    assert population_stability_index(training, scoring) > PSI_WARNING


def test_a_hand_computed_index():
    # Deciles of 0..9 cut every value into its own bin: 10 bins of 10%. All the scoring
    # values fall in the last bin: 9 bins at the 1e-4 floor and one at 100%.
    expected = np.arange(10.0)
    actual = np.full(10, 9.0)
    floor, share = 1e-4, 0.1
    psi = 9 * (floor - share) * np.log(floor / share) + (1 - share) * np.log(1 / share)
    assert population_stability_index(expected, actual) == pytest.approx(psi)


def test_an_empty_bin_counts_and_stays_finite(training):
    scoring = np.full(1000, training.max() + 1)  # every value above the training range
    psi = population_stability_index(training, scoring)
    assert np.isfinite(psi) and psi > PSI_WARNING


def test_tied_quantiles_merge_bins():
    """A mostly-zero feature (no purchase in 30 days): its deciles tie, and the bins merge."""
    expected = np.array([0.0] * 80 + [1.0] * 10 + [2.0] * 10)
    assert population_stability_index(expected, expected.copy()) == pytest.approx(0.0)
    fewer_zeros = np.array([0.0] * 40 + [1.0] * 30 + [2.0] * 30)
    # Bins after merging: {0}, {1}, {2} with shares 0.8/0.1/0.1 against 0.4/0.3/0.3.
    hand = sum((a - e) * np.log(a / e) for e, a in [(0.8, 0.4), (0.1, 0.3), (0.1, 0.3)])
    assert population_stability_index(expected, fewer_zeros) == pytest.approx(hand)


def test_a_constant_feature_has_one_bin_and_no_drift():
    assert population_stability_index(np.ones(100), np.ones(50)) == pytest.approx(0.0)
