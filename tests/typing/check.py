"""Run mypy --strict and pyright (strict) over user code, as `nox -s typing` does.

1. `correct.py` and the README's Python examples must pass both checkers.
2. `wrong.py`: each line marked ``# wrong`` must be reported by both, and no other line.

Usage: ``python tests/typing/check.py`` from the repository root.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
MARK = "# wrong"


def readme_examples(readme: Path) -> str:
    """Every ```python block of the README as one module; fragments become coroutine bodies.

    A fragment (code using ``await`` or ``async with`` at top level, as a notebook would run
    it) gets its imports hoisted and the rest indented into ``async def``, with ``prompts``
    as its only free name.
    """
    imports: list[str] = ["from __future__ import annotations", "import anyio"]
    bodies: list[str] = []
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    for n, block in enumerate(blocks):
        lines = block.splitlines()
        imports += [line for line in lines if line.startswith(("import ", "from "))]
        rest = [line for line in lines if not line.startswith(("import ", "from "))]
        code = "\n".join(rest)
        if re.search(r"^(async with|await |async for)", code, re.M):
            bodies.append(
                f"async def example_{n}(prompts: list[str]) -> None:\n"
                + textwrap.indent(code, "    ")
            )
        else:
            bodies.append(code)
    return "# pyright: strict\n" + "\n".join(dict.fromkeys(imports)) + "\n\n" + "\n\n".join(bodies)


def reported_lines(files: list[Path], cwd: Path) -> tuple[dict[tuple[str, str], set[int]], str]:
    """The lines each checker reports an error on, by (checker, file name); one run each.

    Run from `cwd` outside the checkout, as a user's project would: `flowmusic_async` is then
    the installed package (its own modules are not re-checked with this repo's settings).
    """
    names = [str(f) for f in files]
    mypy = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", "--no-incremental"),
            *("--python-version", "3.10", "--cache-dir", str(cwd / ".mypy_cache")),
            *names,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    pyright = subprocess.run(
        [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *names],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    found: dict[tuple[str, str], set[int]] = {
        (checker, f.name): set() for checker in ("mypy", "pyright") for f in files
    }
    patterns = {"mypy": r"(.+?):(\d+): error:", "pyright": r"\s*(.+?):(\d+):\d+ - error:"}
    for checker, result in (("mypy", mypy), ("pyright", pyright)):
        for line in result.stdout.splitlines():
            match = re.match(patterns[checker], line)
            if match:
                key = (checker, Path(match.group(1)).name)
                if key not in found:  # an error outside the checked files: show it, fail
                    found[key] = set()
                found[key].add(int(match.group(2)))
    return found, mypy.stdout + pyright.stdout


def main() -> int:
    failures: list[str] = []
    wrong = HERE / "wrong.py"
    marked = {
        n for n, line in enumerate(wrong.read_text().splitlines(), start=1) if line.endswith(MARK)
    }
    with tempfile.TemporaryDirectory() as tmp:
        readme = Path(tmp) / "readme_examples.py"
        readme.write_text(readme_examples(ROOT / "README.md"), encoding="utf-8")
        found, output = reported_lines([HERE / "correct.py", readme, wrong], cwd=Path(tmp))
        for (checker, name), lines in sorted(found.items()):
            if name != wrong.name and lines:
                failures.append(f"{checker} reports {name} lines {sorted(lines)}")
            if name == wrong.name and (missed := marked - lines):
                failures.append(f"{checker} no longer reports {name} lines {sorted(missed)}")
            if name == wrong.name and (extra := lines - marked):
                failures.append(f"{checker} reports unmarked {name} lines {sorted(extra)}")
        if failures:
            print(output)
            print(readme.read_text(encoding="utf-8"))
            print("\n".join(failures))
            return 1
    print(f"typing: correct code and README pass; all {len(marked)} wrong lines reported by both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
