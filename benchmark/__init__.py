"""hashbench harness: composes methods × datasets, evaluates codes, stores and reports results."""
