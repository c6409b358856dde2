"""The core stays free of Textual (DESIGN.md): checked by import-linter and in a fresh interpreter."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.paths import REPO, SEED

CORE = ["runbook_tui.model", "runbook_tui.parse", "runbook_tui.parse.markdown", "runbook_tui.parse.yaml",
        "runbook_tui.parse.lint", "runbook_tui.engine", "runbook_tui.audit", "runbook_tui.integrations",
        "runbook_tui.cli"]


def test_import_linter_contracts_hold() -> None:
    linter = shutil.which("lint-imports")
    assert linter, "import-linter is a test dependency (pip install -e '.[test]')"
    result = subprocess.run([linter, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout
    assert "Integrations do not depend on the engine that drives them KEPT" in result.stdout


def test_core_modules_do_not_load_textual() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_check_command_does_not_load_textual() -> None:
    code = (
        "import sys\n"
        "from runbook_tui.cli import main\n"
        f"try:\n    main(['check', {str(SEED)!r}])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('textual' in sys.modules, code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "False 0", result.stdout + result.stderr
