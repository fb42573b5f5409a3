"""The examples in toykit's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import toykit


def _modules() -> list[str]:
    names = (info.name for info in pkgutil.walk_packages(toykit.__path__, prefix="toykit."))
    return sorted(name for name in names if not name.endswith("__main__"))  # importing __main__ runs the CLI


def _with_examples(name: str) -> bool:
    module = importlib.import_module(name)
    return any(test.examples for test in doctest.DocTestFinder().find(module))


MODULES = [name for name in _modules() if _with_examples(name)]


def test_some_modules_have_examples():
    assert "toykit.cache" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples in {name} failed (output above)"
