"""Fixtures of the CDK tests: each configuration is synthesized once per session."""

from __future__ import annotations

import pytest
from cdk_synth import CONFIGURATIONS, Synthesis, synthesize

_CACHE: dict[str, Synthesis] = {}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory):
    """Return a function that synthesizes a named configuration once per session."""

    def get(name: str) -> Synthesis:
        if name not in _CACHE:
            outdir = tmp_path_factory.mktemp(f"cdk-{name}")
            _CACHE[name] = synthesize(CONFIGURATIONS[name], outdir)
        return _CACHE[name]

    return get
