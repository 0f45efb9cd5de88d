"""Data flows one way: preprocessing -> temporal_models -> vidfake. Lower layers never import upper ones.

``temporal_models`` imports nothing from ``preprocessing`` or the rest of vidfake. ``preprocessing``
imports only itself and :mod:`vidfake.errors` (the error bases), which imports nothing from vidfake and
whose package ``__init__`` is light; the tests below keep it that way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEUTRAL = "vidfake.errors"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in a file, including those inside functions; relative
    imports are resolved against the package the folder is installed as."""
    package = {"temporal_models": "vidfake.temporal_models", "preprocessing": "vidfake.preprocessing"}[
        path.parent.name
    ]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .weights import y
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module in ("vidfake", "vidfake.preprocessing", "vidfake.temporal_models"):
                # `from vidfake import preprocessing` imports the submodule by another spelling
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def layer_violations(folder: str, own: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """Imports of a vidfake module other than the folder's own package and ``allowed``."""
    bad = []
    for path in sorted((ROOT / folder).glob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] != "vidfake" or module == "vidfake":
                continue  # third party, or `from vidfake import X` (X is listed as vidfake.X)
            if module in allowed or module == own or module.startswith(own + "."):
                continue
            bad.append(f"{folder}/{path.name}:{line} imports {module}")
    return bad


@pytest.mark.parametrize(
    ("folder", "own", "allowed"),
    [("temporal_models", "vidfake.temporal_models", ()),
     ("preprocessing", "vidfake.preprocessing", (NEUTRAL,))],
)
def test_lower_layers_import_only_themselves(folder, own, allowed):
    assert layer_violations(folder, own, allowed) == []


def test_the_walker_sees_a_forbidden_import(tmp_path):
    # The check above is only worth something if it can fail.
    pkg = tmp_path / "temporal_models"
    pkg.mkdir()
    (pkg / "bad.py").write_text(
        "from vidfake.errors import VidfakeError\n"
        "def f():\n    from vidfake.preprocessing.errors import MediaError\n"
        "from vidfake import detector\n"
        "import vidfake.cli\n"
    )
    modules = [m for _, m in imported_modules(pkg / "bad.py")]
    assert "vidfake.preprocessing.errors" in modules
    assert "vidfake.detector" in modules
    assert "vidfake.cli" in modules


def test_error_bases_load_no_layer():
    # Importing the neutral module must not pull in preprocessing, temporal_models or the detector.
    code = (
        "import sys, vidfake.errors; "
        "print(sorted(m for m in sys.modules if m.startswith('vidfake')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['vidfake', 'vidfake.errors']"


def test_one_error_family_for_media_and_a_self_contained_weights_error():
    from vidfake.errors import SourcedError, VidfakeError
    from vidfake.preprocessing import errors as media_errors
    from vidfake.temporal_models.weights import WeightsError

    assert media_errors.VidfakeError is VidfakeError
    assert media_errors.SourcedError is SourcedError
    assert issubclass(media_errors.MediaError, SourcedError)
    err = WeightsError("w.safetensors", "truncated")
    assert isinstance(err, RuntimeError) and str(err) == "w.safetensors: truncated"
