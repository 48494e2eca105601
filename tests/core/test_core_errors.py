"""One error root: every exception class of the libraries and the loader derives from EventkitError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import eventkit_core
import pytest
from eventkit_core import errors

PACKAGES = [
    "eventkit_core",
    "eventkit_validators",
    "eventkit_ring_buffer",
    "eventkit_queues",
    "eventkit_storage",
    "eventkit_loader",
]


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [package] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, name + ".")
            if not info.name.endswith("__main__")  # running it would start the CLI
        ]
        for module in modules:
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__.startswith(name):
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_exception_class_has_the_one_root_and_a_builtin() -> None:
    classes = _error_classes()
    assert errors.WarehouseMissingError in classes
    for cls in classes:
        assert issubclass(cls, eventkit_core.EventkitError), cls
        if cls is not eventkit_core.EventkitError:
            builtins = [b for b in cls.__mro__ if b.__module__ == "builtins"]
            assert builtins[0] is not Exception, f"{cls} derives from no matching builtin"


def test_codes_are_stable_strings_and_distinct() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.EventkitError)
    ]
    codes = [c.code for c in classes]
    assert len(set(codes)) == len(codes), codes
    assert errors.StoredFileNotFoundError.code == "not_found"
    assert errors.BackpressureError.code == "overloaded"


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.WarehouseMissingError, LookupError),
        (errors.StoredFileNotFoundError, FileNotFoundError),
        (errors.MissingDependencyError, ImportError),
        (errors.ConfigurationError, ValueError),
    ],
)
def test_each_error_is_caught_as_its_builtin(
    cls: type[errors.EventkitError], builtin: type[Exception]
) -> None:
    with pytest.raises(builtin, match="what to do"):
        raise cls("what to do")
    assert cls("m", code="custom").code == "custom"
