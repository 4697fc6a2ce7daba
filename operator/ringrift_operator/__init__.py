"""ringrift-operator: runs RingRift's self-improvement loop (self-play, sync, training, gauntlet,
promotion) on a Kubernetes GPU cluster.

Layers, top to bottom (checked by import-linter): ``cli`` → ``handlers`` (the only kopf importer)
→ ``loops``/``web`` → ``reconcilers`` → ``kube``/``state``/``agent``/``workload`` → ``managers``
(pure domain logic) → ``api`` (pydantic models of the resources).
"""

__version__ = "0.1.0"
