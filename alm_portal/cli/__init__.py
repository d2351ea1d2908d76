"""almctl, the ALM Portal's command-line client for CI pipelines (see almctl.py)."""
