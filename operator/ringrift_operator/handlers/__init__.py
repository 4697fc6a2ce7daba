"""The only package that imports kopf: thin wiring from kopf events to reconcilers."""
