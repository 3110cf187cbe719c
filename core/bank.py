"""A per-domain memory bank of normal patch features behind a faiss index.

The patches are the source of truth (they are what the store saves, in
safetensors); the faiss index is rebuilt from them on load, so nothing
pickled or opaque ever sits in the model store.
"""
from __future__ import annotations

import faiss
import numpy as np

INDEX_TYPES = ("flat", "hnsw", "ivf", "ivfpq")


class MemoryBank:
    """Exact (``flat``) nearest-neighbour search by default.

    Approximate variants for large banks: ``hnsw`` (graph, M = 32), ``ivf``
    (√n inverted lists, probing 1/8 of them) and ``ivfpq`` (product quantised,
    8 bits per sub-vector). Their recall against exact search is measured in
    ``benchmarks/bench_core.py``.
    """

    def __init__(self, patches: np.ndarray, index_type: str = "flat", seed: int = 0):
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}")
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        if patches.ndim != 2 or len(patches) == 0:
            raise ValueError("a memory bank needs a non-empty N × D array of patches")
        self.patches = patches
        self.index_type = index_type
        self.index, self._keepalive = self._build(patches, index_type, seed)

    def __len__(self) -> int:
        return len(self.patches)

    @property
    def dim(self) -> int:
        return self.patches.shape[1]

    @property
    def nbytes(self) -> int:
        return self.patches.nbytes

    @staticmethod
    def _build(x: np.ndarray, kind: str, seed: int):
        """(index, quantizer): the quantizer must outlive an IVF index, so the bank holds it too."""
        n, d = x.shape
        quantizer = None
        if kind == "flat" or n < 1024:  # small banks: exact is as fast as anything
            index = faiss.IndexFlatL2(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, 32)
            index.hnsw.efSearch = 64
        else:
            nlist = max(4, int(np.sqrt(n)))
            quantizer = faiss.IndexFlatL2(d)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, d, nlist)
            else:
                m = next(m for m in (16, 12, 8, 4, 2, 1) if d % m == 0)
                index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8)
            index.cp.seed = seed
            index.train(x)
            index.nprobe = max(1, nlist // 8)
        index.add(x)
        return index, quantizer

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances (not squared) and indices of the ``k`` nearest patches."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self))
        d2, idx = self.index.search(q, k)
        return np.sqrt(np.maximum(d2, 0)), idx
