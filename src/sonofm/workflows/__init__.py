"""Runs that chain runs: the demo, k-fold cross-validation, the label-efficiency study."""
