"""The subnet's static rules for a submitted ``model.py``, as an AST walk over imports, names and calls.

BitMind's SN34 runs every submitted ``model.py`` through a static analyser before it executes it in a
sandbox. Its rules, as published (BitMind-AI/gasbench ``docs/Safetensors.md`` sections 9-10 "Allowed
Packages" / "Blocked Packages", and bitmind-subnet ``docs/Discriminative-Mining.md`` "Sandbox and Import
Restrictions"; both retrieved 2026-11), and as issue 8 restates them:

- every import must be one of :data:`ALLOWED_MODULES` (or a submodule of one, e.g. ``timm.layers`` or
  ``safetensors.torch``);
- blocked outright: system, process, network, serialisation and JIT modules (:data:`BLOCKED_MODULES`),
  and dynamic code execution or reflection builtins (:data:`BLOCKED_CALLS`);
- torch's own escape hatches count as blocked modules when reached through an allowed root
  (``torch.jit.script``, ``torch.hub.load``, pickle-based ``torch.load``, ...: :data:`BLOCKED_ATTRIBUTES`).

We apply the rules at least as strictly as published: the analyser the validators run is not public, so
a file that passes here should pass there, and every rejection names the line and the rule. Relative
imports are rejected (``model.py`` is loaded alone, under another module name), as is any access to the
interpreter's internals through dunder attributes (``__subclasses__``, ``__globals__``, ...), which is
how sandbox escapes reach ``os`` without importing it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = [
    "ALLOWED_MODULES",
    "BLOCKED_ATTRIBUTES",
    "BLOCKED_CALLS",
    "BLOCKED_DUNDERS",
    "BLOCKED_MODULES",
    "Violation",
    "check_model_source",
]

ALLOWED_MODULES: frozenset[str] = frozenset({
    # third-party packages the sandbox provides
    "torch", "torchvision", "transformers", "timm", "einops", "safetensors", "PIL", "cv2", "skimage",
    "decord", "numpy", "scipy",
    # standard modules
    "math", "functools", "typing", "collections", "dataclasses", "enum", "abc", "pathlib",
})
"""Import roots a ``model.py`` may use; a submodule of an allowed root is allowed unless blocked."""

BLOCKED_MODULES: frozenset[str] = frozenset({
    "os", "sys", "subprocess", "pickle", "importlib", "threading", "tempfile", "glob", "shutil", "socket",
    "requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "ftplib", "smtplib", "multiprocessing",
    "concurrent", "asyncio", "ctypes", "cffi", "builtins", "marshal", "shelve", "dill", "cloudpickle",
    "joblib", "io", "inspect", "code", "codeop", "runpy", "signal", "resource", "pty", "platform",
    "numba", "cython", "apex", "deepspeed", "tensorboard", "tensorboardX", "wandb", "mlflow", "boto3",
    "botocore", "google.cloud", "azure", "sqlite3", "psycopg2", "redis", "zipimport", "pkgutil",
    # torch and numpy submodules that reach the file system, the network, pickle or native code
    "torch.jit", "torch.hub", "torch.package", "torch.multiprocessing", "torch.distributed",
    "torch.utils.cpp_extension", "torch.utils.data", "torch.compiler", "torch._dynamo", "torch.ops",
    "torch.classes", "torch.library", "torch.serialization", "numpy.ctypeslib", "numpy.distutils",
})
"""Modules that may not be imported or reached by attribute, even below an allowed root."""

BLOCKED_ATTRIBUTES: frozenset[str] = frozenset({
    "torch.load", "torch.save", "torch.compile", "torch.jit", "torch.hub", "torch.package",
    "torch.ops", "torch.classes", "torch.library", "torch.serialization", "torch.utils.cpp_extension",
    "torch.multiprocessing", "torch.distributed", "numpy.load", "numpy.save", "numpy.ctypeslib",
})
"""Fully qualified names (after resolving import aliases) that may not be referenced."""

BLOCKED_CALLS: frozenset[str] = frozenset({
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "hasattr", "globals",
    "locals", "vars", "open", "input", "breakpoint", "exit", "quit", "help", "memoryview", "__build_class__",
})
"""Builtins that may not be called (nor passed around by name)."""

BLOCKED_DUNDERS: frozenset[str] = frozenset({
    "__builtins__", "__import__", "__subclasses__", "__globals__", "__code__", "__closure__", "__dict__",
    "__getattribute__", "__setattr__", "__delattr__", "__class__", "__bases__", "__mro__", "__base__",
    "__loader__", "__spec__", "__reduce__", "__reduce_ex__", "__func__", "__self__", "__module__",
    "__qualname__", "__traceback__", "__frame__", "f_globals", "f_locals", "f_back", "gi_frame", "tb_frame",
    "co_code",
})
"""Attribute and variable names that reach interpreter internals."""


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes:
        line: 1-based line in ``model.py`` (0 when the file does not parse).
        rule: ``"syntax"``, ``"import"``, ``"relative-import"``, ``"call"``, ``"name"`` or ``"attribute"``.
        detail: what was found, e.g. ``"import os"`` or ``"call to getattr()"``.
    """

    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.detail}"


def _root_allowed(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


def _blocked(name: str, table: frozenset[str]) -> str | None:
    """The entry of ``table`` that ``name`` is, or lies under; ``None`` when none."""
    for entry in table:
        if name == entry or name.startswith(entry + "."):
            return entry
    return None


class _Walker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        # local name -> fully qualified module/attribute it stands for
        self.aliases: dict[str, str] = {}

    def _add(self, node: ast.AST, rule: str, detail: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0), rule, detail))

    def _check_module(self, node: ast.AST, module: str, shown: str) -> None:
        hit = _blocked(module, BLOCKED_MODULES)
        if hit is not None:
            self._add(node, "import", f"{shown}: module {hit!r} is blocked")
        elif not _root_allowed(module):
            self._add(node, "import", f"{shown}: {module!r} is not among the allowed modules")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name, f"import {alias.name}")
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self._add(node, "relative-import", f"from {'.' * node.level}{node.module or ''} import ...")
            return
        module = node.module or ""
        self._check_module(node, module, f"from {module} import ...")
        for alias in node.names:
            if alias.name == "*":
                continue
            full = f"{module}.{alias.name}"
            # `from torch import jit` imports a blocked module by another spelling.
            for table, rule in ((BLOCKED_MODULES, "import"), (BLOCKED_ATTRIBUTES, "attribute")):
                hit = _blocked(full, table)
                if hit is not None:
                    self._add(node, rule, f"from {module} import {alias.name}: {hit!r} is blocked")
                    break
            if alias.name in BLOCKED_CALLS or alias.name in BLOCKED_DUNDERS:
                self._add(node, "name", f"from {module} import {alias.name}: {alias.name!r} is blocked")
            self.aliases[alias.asname or alias.name] = full
        self.generic_visit(node)

    def _qualified(self, node: ast.AST) -> str | None:
        """``a.b.c`` with ``a`` resolved through the import aliases; ``None`` for other expressions."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self.aliases.get(node.id)
        if base is None:
            return None
        return ".".join([base, *reversed(parts)])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in BLOCKED_DUNDERS:
            self._add(node, "attribute", f"access to .{node.attr}")
        name = self._qualified(node)
        if name is not None:
            for table in (BLOCKED_ATTRIBUTES, BLOCKED_MODULES):
                hit = _blocked(name, table)
                if hit is not None:
                    self._add(node, "attribute", f"{name}: {hit!r} is blocked")
                    return  # report the outermost chain once, not each prefix
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        # A blocked builtin passed around by name (`f = getattr`) is as good as a call to it.
        if node.id in BLOCKED_CALLS or node.id in BLOCKED_DUNDERS:
            self._add(node, "name", f"reference to {node.id}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in BLOCKED_CALLS:
            self._add(node, "call", f"call to {node.func.id}()")
            for child in (*node.args, *node.keywords):
                self.visit(child)
            return
        self.generic_visit(node)


def check_model_source(source: str, filename: str = "model.py") -> list[Violation]:
    """Apply the subnet's static rules to the text of a ``model.py``.

    Args:
        source: the file's text.
        filename: name used in syntax-error messages.

    Returns:
        Every violation found, in line order; an empty list means the file passes. A file that does not
        parse gives a single ``"syntax"`` violation. The file must also define a top-level
        ``load_model`` function (rule ``"entry-point"``).
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        return [Violation(int(e.lineno or 0), "syntax", f"{filename} does not parse: {e.msg}")]
    walker = _Walker()
    walker.visit(tree)
    found = walker.violations
    entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_model"]
    if not entry:
        found.append(Violation(0, "entry-point", "no top-level `def load_model(weights_path, num_classes=2)`"))
    else:
        args = entry[0].args
        names = [a.arg for a in (*args.posonlyargs, *args.args)]
        if not names or names[0] != "weights_path":
            found.append(Violation(entry[0].lineno, "entry-point",
                                   "load_model's first parameter must be `weights_path`"))
        if "num_classes" not in names + [a.arg for a in args.kwonlyargs] and args.kwarg is None:
            found.append(Violation(entry[0].lineno, "entry-point", "load_model must accept `num_classes`"))
    unique = {(v.line, v.rule, v.detail): v for v in found}
    return sorted(unique.values(), key=lambda v: (v.line, v.rule, v.detail))
