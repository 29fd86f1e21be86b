"""hashbench: a multi-method deep hashing benchmark suite.

One import namespace over the repository's three folders (mapped by ``package-dir`` in
``pyproject.toml``, so the design card's layout stays as it is):

- :mod:`hashbench.benchmark`: the harness (runner, CLI, metrics, search backends, store, report);
- :mod:`hashbench.methods`: the method registry and the learning-to-hash methods;
- :mod:`hashbench.datasets`: the dataset registry, loaders and split protocols.

The command line is the ``hashbench`` console script, or ``python -m hashbench``.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hashbench")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
