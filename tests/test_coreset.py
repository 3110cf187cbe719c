import numpy as np
import pytest

from core.coreset import greedy_coreset, jl_min_dim, naive_greedy_coreset, resolve_projection


def _clustered(rng, n=3000, d=24, k=12):
    centres = rng.normal(0, 5, (k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def _radius(x, picks):
    d = np.linalg.norm(x[:, None, :] - x[picks][None], axis=2)
    return d.min(axis=1).max()


def test_matches_the_straightforward_reference(rng):
    x = _clustered(rng, n=1500)
    assert np.array_equal(greedy_coreset(x, 120, projection="none", start=0), naive_greedy_coreset(x, 120, start=0))


def test_greedy_picks_are_nested_so_shrinking_is_a_prefix(rng):
    x = _clustered(rng)
    big = greedy_coreset(x, 400, projection="none", seed=1)
    small = greedy_coreset(x, 150, projection="none", seed=1)
    assert np.array_equal(big[:150], small)
    # and re-running greedy on the reduced bank (same start) gives that same prefix
    again = greedy_coreset(x[big], 150, projection="none", start=0)
    assert np.array_equal(big[again], small)


def test_covers_better_than_random(rng):
    x = _clustered(rng, n=2000)
    picks = greedy_coreset(x, 50, projection="none", seed=0)
    assert len(set(picks.tolist())) == 50
    random_picks = rng.choice(len(x), 50, replace=False)
    assert _radius(x, picks) < _radius(x, random_picks)


def test_projection_rules():
    # the published rule asks for a JL dimension; narrow features fall back to raw (the paper code's silent case)
    assert jl_min_dim(100_000, 0.9) > 152
    assert resolve_projection(100_000, 152, "sparse", 0.9, None) == ("none", 152)
    assert resolve_projection(100_000, 1536, "sparse", 0.9, None) == ("sparse", jl_min_dim(100_000, 0.9))
    assert resolve_projection(10, 1536, "auto", 0.9, None) == ("sparse", 64)
    assert resolve_projection(10, 48, "auto", 0.9, None) == ("none", 48)


def test_projected_coreset_is_seeded(rng):
    x = rng.normal(size=(2000, 300)).astype(np.float32)
    a = greedy_coreset(x, 64, seed=7)
    assert np.array_equal(a, greedy_coreset(x, 64, seed=7))


def test_edge_cases(rng):
    x = rng.normal(size=(10, 4)).astype(np.float32)
    assert np.array_equal(greedy_coreset(x, 50), np.arange(10))
    with pytest.raises(ValueError):
        greedy_coreset(x, 0)
    with pytest.raises(ValueError):
        greedy_coreset(x[0], 2)
