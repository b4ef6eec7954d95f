"""Every script in examples/ runs, in its fast mode (PCVAE_EXAMPLE_FAST=1)."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, capsys):
    monkeypatch.setenv("PCVAE_EXAMPLE_FAST", "1")
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()
