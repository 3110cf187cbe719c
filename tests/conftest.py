import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# no test may reach the network: the hub clients fail fast instead of trying
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TIMM_OFFLINE", "1")
sys.path.insert(0, str(ROOT))
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small offline benchmark from real images (MNI152 brain slices, a CR chest radiograph, histology)."""
    from core.demo import make_demo

    root = tmp_path_factory.mktemp("demo")
    make_demo(root, domains=("brain", "chest", "histology"), n_train=30, n_valid=4, n_test=12, seed=0)
    return root


def pngs(root, domain, split):
    return sorted((Path(root) / domain / split).glob("*.png"))


@pytest.fixture(scope="session")
def demo_files(demo_root):
    def get(domain, split):
        return pngs(demo_root, domain, split)
    return get


@pytest.fixture(scope="session")
def two_domain_model(demo_files):
    """brain then chest, with a budget that binds (each domain keeps fewer patches than it has)."""
    from core import PatchCoreCL

    model = PatchCoreCL(budget=12_000, seed=0)
    model.enroll("brain", demo_files("brain", "train/good"))
    before = {"brain": _auroc(model, demo_files, "brain")}
    model.enroll("chest", demo_files("chest", "train/good"))
    return model, before


def _auroc(model, demo_files, domain):
    from sklearn.metrics import roc_auc_score

    good, bad = demo_files(domain, "test/good"), demo_files(domain, "test/Ungood/img")
    feats = model.features(good + bad)
    scores = [model.score_in_domain(f, domain)[0] for f in feats]
    return roc_auc_score([0] * len(good) + [1] * len(bad), scores)


@pytest.fixture
def auroc(demo_files):
    return lambda model, domain: _auroc(model, demo_files, domain)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
