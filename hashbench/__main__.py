"""``python -m hashbench``: the command line of :mod:`hashbench.benchmark.cli`."""
from hashbench.benchmark.cli import main

raise SystemExit(main())
