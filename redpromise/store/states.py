"""The states of a promise record, defined once: every list of states derives from these.

A record is ``pending`` until one completion moves it to a final state (see
``docs/design.md``, "Promises and their states"); the transition scripts write these
names, and each partition keeps one search index per state (``Keys.index``).
"""

from __future__ import annotations

__all__ = ["COMPLETED", "FAILING", "PENDING", "STATES"]

PENDING = "pending"
COMPLETED = ("resolved", "rejected", "rejected_canceled", "rejected_timedout")
"""The final states, in the order listings show them."""
STATES = (PENDING, *COMPLETED)
"""Every stored state, pending first: the columns of a count, the choices of a filter."""
FAILING = "failing"
"""Not a stored state: what a search calls pending promises with a failed attempt on
record (a filter over the pending index)."""
