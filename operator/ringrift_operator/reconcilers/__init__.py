"""Observe, decide (managers), act (kube, state), return the new status."""
