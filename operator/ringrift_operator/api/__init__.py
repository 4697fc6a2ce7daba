"""Pydantic models of the custom resources and their conditions; the CRDs are generated from here."""
