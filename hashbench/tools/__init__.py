"""Tools over the harness that tests exercise, each a module with a ``main`` (``python -m hashbench.tools.<name>``):

- :mod:`hashbench.tools.compare_stores`: cell-by-cell agreement of two run stores, per-cell start-up times;
- :mod:`hashbench.tools.search_scale`: the search-at-scale benchmark (synthetic databases up to 10^7 items);
- :mod:`hashbench.tools.scale_report`: tables and QPS–recall figures of that benchmark's rows;
- :mod:`hashbench.tools.bn_check`: leave-one-out mAP of backbone features under each batch-norm policy.

Standalone benchmarks, GPU scripts, migrations and experiment drivers stay in ``scripts/``.
"""
