"""Durable stores behind one interface (:class:`dirac_like.store.base.Store`)."""

from dirac_like.store.base import Store, open_store

__all__ = ["Store", "open_store"]
