"""The README as a newcomer reads it: its commands parse and every Python block runs as written."""

import re
import shlex
from pathlib import Path

import matplotlib
import pytest

from pcvae_sklearn.cli import _parser

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S)


def _commands(prefix):
    """Every README command that starts with ``prefix`` (after the last ``&&``), comments stripped."""
    found = []
    for block in BASH_BLOCKS:
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            command = line.split("&&")[-1].strip()
            if command.startswith(prefix):
                found.append(shlex.split(command))
    return found


def test_the_readme_has_its_two_commands_and_ci_runs_the_second():
    first = re.search(r"^# 1\..*\n(.+)$", TEXT, flags=re.M).group(1)
    second = re.search(r"^# 2\..*\n(.+)$", TEXT, flags=re.M).group(1)
    assert 'pip install -e ".[io,plot]"' in first and "pcvae demo" in first
    assert 'pip install -e ".[test]"' in second and second.endswith("python3 -m pytest -q")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "awk '/^# 2\\./" in ci and "venv" in ci


def test_every_pcvae_command_in_the_readme_parses():
    commands = _commands("pcvae ")
    assert len(commands) >= 5
    parser = _parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])  # SystemExit (a failure) on an unknown option
        assert args.out is not None


@pytest.mark.slow
def test_every_python_block_runs_as_written(tmp_path, monkeypatch):
    assert len(PYTHON_BLOCKS) >= 4
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # anything a block writes lands here
    namespace = {"__name__": "__readme__"}
    for i, block in enumerate(PYTHON_BLOCKS, start=1):
        exec(compile(block, f"README.md, Python block {i}", "exec"), namespace)
    assert namespace["radius"].shape == (20, 2)
    assert list(namespace["result"].bin_table["bin"]) == list(range(1, 21))
    import matplotlib.pyplot as plt

    plt.close("all")
