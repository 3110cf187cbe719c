import numpy as np
import pytest
import torch

from core.features import FeatureExtractor, extract


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor()


def _images(n, rng, size=224):
    return [rng.random((size, size), dtype=np.float32) for _ in range(n)]


def test_shapes_and_dim(extractor, rng):
    pre = extractor.preprocessing()
    feats = extract(extractor, pre, _images(2, rng))
    assert feats.shape == (2, 28 * 28, 152)
    assert extractor.get_params()["dim"] == 152


def test_deterministic_and_batch_invariant(extractor, rng):
    pre = extractor.preprocessing()
    imgs = _images(3, rng)
    a = extract(extractor, pre, imgs)
    b = extract(extractor, pre, imgs)
    assert np.array_equal(a, b)
    single = np.concatenate([extract(extractor, pre, [im]) for im in imgs])
    np.testing.assert_allclose(single, a, rtol=1e-4, atol=1e-4)


def test_paper_aggregation_keeps_the_28x28_grid(rng):
    fe = FeatureExtractor(aggregation="paper")
    pre = fe.preprocessing("resize_crop")
    feats = extract(fe, pre, _images(1, rng, 300))
    assert feats.shape == (1, 784, 152)


def test_random_projection_reduction_is_seeded(rng):
    a = FeatureExtractor(reduction="random_projection", target_dim=64, seed=3)
    b = FeatureExtractor(reduction="random_projection", target_dim=64, seed=3)
    x = torch.randn(1, 3, 224, 224)
    assert a(x).shape == (1, 784, 64)
    assert torch.equal(a(x), b(x))
    assert a.get_params()["reduction"] == "random_projection"


def test_reduction_needs_a_smaller_target():
    with pytest.raises(ValueError, match="target_dim"):
        FeatureExtractor(reduction="random_projection", target_dim=999)


def test_auto_precision_is_checked_against_fp32(extractor):
    # auto picks mixed precision only if it stayed within tolerance on the probe; record what was used
    assert extractor.dtype_used in ("fp32", "bf16", "fp16")
    if extractor.dtype_used != "fp32":
        x = torch.rand(1, 3, 224, 224) * 2 - 1
        ref = FeatureExtractor(precision="fp32")(x)
        assert (torch.linalg.vector_norm(ref - extractor(x)) / torch.linalg.vector_norm(ref)) < 0.01
