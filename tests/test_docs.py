"""The documentation's examples run: a user copying them gets working code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_pytest_fixture_example_in_docs_testing_runs(tmp_path: Path) -> None:
    """docs/testing.md's fixture example is the first thing users copy into their own suites."""
    text = (ROOT / "docs" / "testing.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    (tmp_path / "test_example.py").write_text(example)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
