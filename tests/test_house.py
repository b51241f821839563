"""The house's rules that import-linter cannot see: core never names a feature by string."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from core import FEATURES, TOOLS, create_app

ROOT = Path(__file__).resolve().parent.parent
NAMED = (*FEATURES, *TOOLS)
# The templates core renders, and the one every page extends.
CORE_TEMPLATES = ("base.html", "error.html", "dashboard.html", "imports.html", "import_batch.html", "auth", "admin")


@pytest.fixture(scope="module")
def endpoints() -> set[str]:
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://", "SECRET_KEY": "house"})
    return set(app.view_functions)


def _names_a_feature(value: str, endpoints: set[str]) -> bool:
    """``"segments"``, ``"segments.profiles"`` (a module) or ``"campaigns.index"`` (an endpoint);
    a dotted job id or audit action such as ``"campaigns.dates"`` names neither."""
    package, _, rest = value.partition(".")
    if package not in NAMED:
        return False
    if not rest:
        return True
    module = ROOT / package / Path(*rest.split("."))
    return module.with_suffix(".py").exists() or (module / "__init__.py").exists() or value in endpoints


def _dynamic_names(tree: ast.AST):
    """The first argument of each ``import_module(...)``/``url_for(...)``/``find_spec(...)`` call, and
    every dotted string (a bare word like ``"experiments"`` is a label key unless it is imported)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("import_module", "url_for", "find_spec", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            yield node.lineno, node.value


def test_core_modules_never_name_a_feature_by_string(endpoints):
    """``import_module("segments.profiles")`` or ``url_for("campaigns.index")`` in core would be an
    arrow the wrong way that import-linter does not see; only the composition root lists them."""
    offences = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        if path == ROOT / "core" / "__init__.py":  # the composition root: FEATURES and TOOLS
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offences += [
            f"{path.relative_to(ROOT)}:{lineno}: {value!r}"
            for lineno, value in _dynamic_names(tree)
            if _names_a_feature(value, endpoints)
        ]
    assert offences == []


def test_core_templates_never_name_a_feature_endpoint():
    """The base template and core's own pages reach features through the registry (navigation,
    admin links, dashboard panels), never by an endpoint's name."""
    pattern = re.compile(r"""url_for\(\s*['"](%s)\.""" % "|".join(NAMED))
    offences = []
    for name in CORE_TEMPLATES:
        target = ROOT / "templates" / name
        for path in [target] if target.is_file() else sorted(target.rglob("*.html")):
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offences.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offences == []


def test_the_detector_sees_a_feature_named_by_string(endpoints):
    """The check above can fail: the shapes it must catch are caught."""
    tree = ast.parse(
        'import_module("segments.profiles")\nurl_for("campaigns.index")\nx = "experiments.stats"\n'
        'y = "campaigns.dates"\n'
    )
    found = {value for _line, value in _dynamic_names(tree) if _names_a_feature(value, endpoints)}
    assert found == {"segments.profiles", "campaigns.index", "experiments.stats"}


# Modules that test the dialect by name, or compile an expression for one engine. core/sql.py and
# core/sql_expressions.py are its home; the benchmark makes a scratch database per engine it is
# asked for and compares the engines' own bulk loads and exports (its baselines).
DIALECT_HOME = {
    "core/sql.py",
    "core/sql_expressions.py",
    "benchmarks/harness.py",
    "benchmarks/steps.py",
    "benchmarks/duck.py",
}
DIALECT_TEST = re.compile(
    r"""dialect\.name|dialect\s*[!=]=|dialect_name\(|==\s*["'](postgresql|sqlite)["']|@compiles\(\w+,\s*["']\w+["']\)"""
)


def _dialect_tests(source: str) -> list[int]:
    return [
        n
        for n, line in enumerate(source.splitlines(), 1)
        if DIALECT_TEST.search(line) and not line.lstrip().startswith("#")
    ]


def test_only_the_dialect_module_tests_the_dialect():
    """Features say what they need of the database (core/sql.py, core/sql_expressions.py); they never
    ask which engine runs, nor write SQL for one."""
    offences = []
    for package in (*FEATURES, *TOOLS, "core"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name in DIALECT_HOME:
                continue
            offences += [f"{name}:{n}" for n in _dialect_tests(path.read_text(encoding="utf-8"))]
    assert offences == []


def test_the_dialect_detector_sees_each_shape():
    source = (
        'if session.get_bind().dialect.name == "postgresql":\n'
        "if self.dialect == 'sqlite':\n"
        "x = dialect_name(session)\n"
        "# a comment that says dialect.name\n"
        '@compiles(day_of, "sqlite")\n'
        "@compiles(day_of)\n"
    )
    assert _dialect_tests(source) == [1, 2, 3, 5]


# A module a reader can hold in mind: the packages' modules stay about 700 lines or under (as
# formatted by `ruff format`, which .ci/run checks); a larger one is split by concept.
MODULE_LINES_LIMIT = 720


def test_no_module_of_the_packages_outgrows_the_limit():
    too_long = []
    for package in ("core", "segments", "campaigns", "experiments", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MODULE_LINES_LIMIT:
                too_long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert too_long == []
