"""AI functions behind one provider interface; `make_provider` picks the backend from settings."""

from __future__ import annotations

import importlib

from ai.base import AIProvider
from shared.settings import Settings


def make_provider(settings: Settings) -> AIProvider:
    """The configured backend; the pipeline never knows which one it has."""
    if ":" in settings.ai_provider:
        module_name, factory = settings.ai_provider.split(":")
        return getattr(importlib.import_module(module_name), factory)(settings)  # type: ignore[no-any-return]
    if settings.ai_provider == "openai":
        from ai.openai_provider import OpenAIProvider

        return OpenAIProvider(settings)
    if settings.ai_provider == "simulated":
        from ai.simulated import SimulatedProvider

        return SimulatedProvider(settings.ai_latency_ms)
    from ai.local import LocalProvider

    return LocalProvider()
