"""The library's shape stays as issue 13 left it: no import cycles, the student side never imports the
command-line side, private Keras state is read only in tlcourse.diagnose, one layer walk, and a model's
identity (its backbone tag) decides its preprocessing without the name being passed again."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tlcourse"

COMMAND_PACKAGE = "tlcourse.cli"
"""The instructor and admin side: the ``tlcourse`` command's parser and every sub-command's module."""


def _command_side(name: str) -> bool:
    """True for modules only the ``tlcourse`` command imports (``tlcourse.cli`` and below, ``__main__``)."""
    return name == COMMAND_PACKAGE or name.startswith(COMMAND_PACKAGE + ".") or name == "tlcourse.__main__"


PRIVATE_KERAS = re.compile(
    r"_flatten_layers|_inbound_nodes|_keras_history|_nodes_by_depth|_compiled_trainable_state"
    r"|_trainable_variables|[.\"']_functional\b|[.\"']_layers\b"
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """tlcourse modules imported anywhere in ``path`` (inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tlcourse"):
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                found.add(qualified if qualified in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tlcourse."))
    return {name for name in found if name in known and name != "tlcourse"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def test_tlcourse_imports_form_no_cycle_even_counting_imports_inside_functions():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                cycles.append([*path[path.index(child) :], child])
            elif child not in state:
                visit(child, [*path, child])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_student_facing_modules_never_import_the_command_line_side():
    graph = _graph()
    offenders = {
        name: sorted(dep for dep in deps if _command_side(dep))
        for name, deps in graph.items()
        if not _command_side(name) and any(_command_side(dep) for dep in deps)
    }
    assert not offenders, f"student-facing modules importing the command side: {offenders}"


def test_the_command_side_is_one_package_with_the_pipeline_runner_and_grader_in_it():
    modules = _modules()
    command = {"tlcourse.cli", "tlcourse.cli.pipeline", "tlcourse.cli.runner", "tlcourse.cli.grade"}
    assert command <= set(modules)
    old_homes = {f"tlcourse.{name}" for name in ("pipeline", "runner", "grade")}
    assert not old_homes & set(modules)
    assert "tlcourse.cli.runner" not in _graph()["tlcourse.cli.reports"]  # reports never run a notebook


def test_the_fast_path_sits_on_train_and_train_never_imports_it():
    graph = _graph()
    assert "tlcourse.train" in graph["tlcourse.fastpath"]
    assert "tlcourse.fastpath" not in graph["tlcourse.train"]


def test_private_keras_state_is_read_only_in_diagnose():
    offenders = []
    for name, path in _modules().items():
        if name == "tlcourse.diagnose":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRIVATE_KERAS.search(code):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "private Keras attributes outside tlcourse.diagnose:\n" + "\n".join(offenders)


def test_the_private_keras_pattern_catches_what_it_is_meant_to():
    assert PRIVATE_KERAS.search("layers = model._flatten_layers()")
    assert PRIVATE_KERAS.search('getattr(model, "_functional", None)')
    assert PRIVATE_KERAS.search("for sub in layer._layers:")
    assert not PRIVATE_KERAS.search("for layer in model.layers:")
    assert not PRIVATE_KERAS.search("self._layers_seen = 1")


def test_only_backend_walks_nested_layers():
    """No module but backend recurses over ``.layers`` itself: one layer walk (backend.walk_layers)."""
    offenders = []
    for name, path in _modules().items():
        if name == "tlcourse.backend":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            calls_itself = any(
                isinstance(n, ast.Call) and getattr(n.func, "id", None) == function.name
                for n in ast.walk(function)
            )
            reads_layers = any(
                (isinstance(n, ast.Attribute) and n.attr == "layers")
                or (isinstance(n, ast.Constant) and n.value == "layers")  # getattr / hasattr(x, "layers")
                for n in ast.walk(function)
            )
            if calls_itself and reads_layers:
                offenders.append(f"{path.name}: {function.name}")
    assert not offenders, f"recursive layer walks outside backend: {offenders}"


def test_a_resnet_base_gets_resnet_preprocessing_without_its_name_being_passed():
    keras = pytest.importorskip("keras")
    from tlcourse import features, models

    base = models.build_backbone("resnet50", image_size=32, weights="random", seed=0)
    assert models.spec_of(base).name == "resnet50"
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected_input = keras.applications.resnet50.preprocess_input(pixels.copy())
    expected = np.asarray(base(expected_input, training=False)).mean(axis=(1, 2))
    extractor = features.feature_extractor(base)  # no backbone_name: the tag decides
    np.testing.assert_allclose(np.asarray(extractor(pixels, training=False)), expected, rtol=1e-4, atol=1e-4)
    classifier = models.build_classifier(base, 2)
    mobilenet_input = keras.applications.mobilenet_v2.preprocess_input(pixels.copy())
    assert not np.allclose(expected_input, mobilenet_input)  # the two preprocessings really differ
    layers = classifier.layers
    preprocessing = layers[layers.index(base) - 1]  # build_classifier: input -> preprocessing -> base -> ...
    np.testing.assert_allclose(np.asarray(preprocessing(pixels)), expected_input, rtol=1e-5, atol=1e-3)


def test_every_subpackage_is_listed_for_installation_in_pyproject():
    """setuptools installs only the packages pyproject lists: a missing one works in an editable checkout and
    breaks every real install (Binder, Colab, pip install .)."""
    import tomllib

    listed = set(
        tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {_module_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert found == listed, (
        f"unlisted: {sorted(found - listed)}; listed but missing: {sorted(listed - found)}"
    )
