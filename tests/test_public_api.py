"""The public surface: what ``import redpromise`` exports, and the exception tree."""

from __future__ import annotations

import inspect
from types import ModuleType

import redpromise
from redpromise.core import errors as _errors


def test_all_imports_are_exported() -> None:
    public = sorted(
        name
        for name, value in vars(redpromise).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    )
    assert redpromise.__all__ == public


def test_public_names_are_pinned() -> None:
    assert redpromise.__all__ == [
        "ApplicationError",
        "ConfigurationError",
        "Constant",
        "Context",
        "CorruptRecord",
        "CrossSlot",
        "Exponential",
        "Handle",
        "InvalidCron",
        "InvalidId",
        "LeaseLost",
        "Linear",
        "Never",
        "NondeterminismError",
        "Options",
        "PayloadError",
        "PayloadTooLarge",
        "PromiseCanceled",
        "PromiseInfo",
        "PromiseNotFound",
        "PromiseRejected",
        "PromiseTimedOut",
        "Redpromise",
        "RedpromiseError",
        "RetryPolicy",
        "SearchPage",
        "Settings",
        "StoreError",
        "StoreUnavailable",
        "run_worker",
    ]


def _exception_classes() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in vars(_errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == _errors.__name__
    }


def test_every_exception_is_a_redpromise_error_and_exported() -> None:
    classes = _exception_classes()
    assert set(classes) == set(_errors.__all__)
    for name, cls in classes.items():
        assert issubclass(cls, redpromise.RedpromiseError), name
        assert getattr(redpromise, name) is cls, f"{name} is not exported by redpromise"


def test_exported_exceptions_all_come_from_errors_module() -> None:
    exported = [
        getattr(redpromise, n)
        for n in redpromise.__all__
        if inspect.isclass(getattr(redpromise, n))
        and issubclass(getattr(redpromise, n), BaseException)
    ]
    assert {e.__name__ for e in exported} == set(_exception_classes())


def test_exception_tree_docstring_names_every_exception_under_its_parent() -> None:
    doc = _errors.__doc__ or ""
    lines = [line for line in doc.splitlines() if line.strip()]
    tree = [line for line in lines if line.lstrip(" │├└─").split(" ")[0] in _exception_classes()]
    named = {line.lstrip(" │├└─").split(" ")[0]: line for line in tree}
    assert set(named) == set(_exception_classes())
    # Indentation shows the parent: each class is drawn under its direct base.
    depth = {name: len(line) - len(line.lstrip(" │├└─")) for name, line in named.items()}
    order = [line.lstrip(" │├└─").split(" ")[0] for line in tree]
    for i, name in enumerate(order):
        if name == "RedpromiseError":
            continue
        parent = next(p for p in reversed(order[:i]) if depth[p] < depth[name])
        assert parent in {b.__name__ for b in _exception_classes()[name].__bases__}, name
