"""The adapter to the API server: list/watch/create/bind/patch and snapshots."""
