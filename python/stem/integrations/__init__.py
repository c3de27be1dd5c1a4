"""Integrations of libstem with model frameworks (import on demand)."""
