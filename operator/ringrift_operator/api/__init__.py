"""Pydantic models of the custom resources, their conditions and the operator settings; the
CRDs are generated from here."""
