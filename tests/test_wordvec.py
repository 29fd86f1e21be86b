import os
from pathlib import Path

import numpy as np
import pytest

from hashbench.datasets.wordvec import class_word_vectors

SHARED = os.environ.get("HASHBENCH_SHARED_DATA")


def test_missing_files_give_none(tmp_path):
    assert class_word_vectors("cifar10", tmp_path, 10) is None
    assert class_word_vectors("digits", tmp_path, 10) is None
    assert class_word_vectors("cifar10", None, 10) is None


def test_row_count_is_checked(tmp_path):
    (tmp_path / "wordvec").mkdir()
    np.savetxt(tmp_path / "wordvec" / "cifar10_wordvec.txt", np.ones((9, 300)))
    with pytest.raises(ValueError, match="9 word vectors for 10 classes"):
        class_word_vectors("cifar10", tmp_path, 10)


@pytest.mark.skipif(not SHARED or not (Path(SHARED) / "wordvec").exists(), reason="HASHBENCH_SHARED_DATA unset")
def test_real_cifar10_vectors_have_cat_closest_to_dog():
    v = class_word_vectors("cifar10", Path(SHARED), 10)
    assert v.shape == (10, 300)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = u @ u.T
    np.fill_diagonal(cos, -1)
    assert cos[3].argmax() == 5  # cat ↔ dog (label order airplane, automobile, bird, cat, deer, dog, ...)
    assert class_word_vectors("nuswide81", Path(SHARED), 81).shape == (81, 300)
