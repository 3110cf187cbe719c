"""A per-domain memory bank of normal patch features, with exact or faiss approximate search.

The patches are the source of truth (they are what the store saves, in
safetensors); any index is rebuilt from them on load, so nothing pickled or
opaque ever sits in the model store.

Exact search (the default) is one BLAS matrix product per bank chunk,
``|q|² − 2 q·x + |x|²``: on this 2-core CPU it measured about 4× faster than
faiss's own ``IndexFlatL2`` for PatchCore's shape (784 queries × 30k × 152).
faiss serves the approximate indexes.
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
        self._sq = np.einsum("ij,ij->i", patches, patches)
        self.index, self._keepalive = (None, None) if index_type == "flat" or len(patches) < 1024 else \
            self._build(patches, index_type, seed)

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
        if kind == "hnsw":
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
        if self.index is not None:
            d2, idx = self.index.search(q, k)
        else:
            d2, idx = self._exact(q, k)
        return np.sqrt(np.maximum(d2, 0)), idx

    def _exact(self, q: np.ndarray, k: int, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN by chunked matrix products (memory stays at len(q) × chunk floats)."""
        q_sq = np.einsum("ij,ij->i", q, q)[:, None]
        best_d = np.full((len(q), k), np.inf, np.float32)
        best_i = np.zeros((len(q), k), np.int64)
        rows = np.arange(len(q))[:, None]
        for start in range(0, len(self.patches), chunk):
            x = self.patches[start:start + chunk]
            d = q @ x.T
            d *= -2.0
            d += self._sq[start:start + chunk]
            d += q_sq
            if k == 1:
                j = np.argmin(d, axis=1)
                dj = d[rows[:, 0], j][:, None]
                better = dj < best_d
                best_d = np.where(better, dj, best_d)
                best_i = np.where(better, j[:, None] + start, best_i)
                continue
            kk = min(k, d.shape[1])
            part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
            cand_d = np.concatenate([best_d, d[rows, part]], axis=1)
            cand_i = np.concatenate([best_i, part + start], axis=1)
            order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
            best_d, best_i = cand_d[rows, order], cand_i[rows, order]
        return best_d, best_i
