"""Deployable services built on redpromise: the HTTP gateway and the worker."""
