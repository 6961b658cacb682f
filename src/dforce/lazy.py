"""Module attributes built on first access, so that importing a module does not import its heavy dependencies."""

from __future__ import annotations

from typing import Any, Callable


def module_getattr(module: str, builders: dict[str, Callable[[], Any]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) that builds each name in ``builders`` once, on first access.

    ``module`` names the module in the AttributeError for any other name.
    """
    built: dict[str, Any] = {}

    def __getattr__(attr: str) -> Any:
        if attr not in builders:
            raise AttributeError(f"module {module!r} has no attribute {attr!r}")
        if attr not in built:
            built[attr] = builders[attr]()
        return built[attr]

    return __getattr__
