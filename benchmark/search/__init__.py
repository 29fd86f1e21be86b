"""Search backends, one per code type (pure numpy in/out; faiss and torch underneath).

- binary:   dense ±1 codes -> exact Hamming scan (IndexBinaryFlat) or hash lookup (IndexBinary(Multi)Hash)
- additive: additive / residual / product codes -> LUT scorer or faiss index with injected codebooks
- sparse:   bucket sets (DHT family) -> inverted table, candidate union with expansion, re-ranking
- flat:     float embeddings -> exact k-NN (IndexFlatL2 / IndexFlatIP)
- timing:   best-of-N wall-clock with fixed thread counts
"""

from hashbench.benchmark.search.additive import (
    FaissAdditiveIndex,
    lookup_tables,
    lut_scores,
    lut_topk,
    pq_as_additive,
    reconstruct,
    reconstruction_sq_norms,
)
from hashbench.benchmark.search.binary import MISSING_DIST, BinaryFlatIndex, BinaryHashIndex, pack_bits
from hashbench.benchmark.search.flat import exact_knn
from hashbench.benchmark.search.sparse import (
    Candidates,
    HashTableIndex,
    InvertedHashTable,
    SparseSearchResult,
    candidates,
    search,
)
from hashbench.benchmark.search.timing import time_call

__all__ = [
    "BinaryFlatIndex",
    "BinaryHashIndex",
    "Candidates",
    "FaissAdditiveIndex",
    "HashTableIndex",
    "InvertedHashTable",
    "MISSING_DIST",
    "SparseSearchResult",
    "candidates",
    "exact_knn",
    "lookup_tables",
    "lut_scores",
    "lut_topk",
    "pack_bits",
    "pq_as_additive",
    "reconstruct",
    "reconstruction_sq_norms",
    "search",
    "time_call",
]
