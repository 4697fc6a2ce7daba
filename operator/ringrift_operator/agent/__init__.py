"""The node agent: data-directory manifest, file serving and pulls (the data plane of SyncPlan)."""
