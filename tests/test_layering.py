"""The core stays pure: diffusion/ imports only torch (and the standard library's typing helpers),
models/ never reaches up into training, data, tasks or the CLI."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dforce"
STDLIB_OK = {"__future__", "typing", "dataclasses", "math"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_diffusion_imports_only_torch_and_itself():
    for path in (SRC / "diffusion").glob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            ok = name.startswith(".") and not name.startswith("..") or top == "torch" or top in STDLIB_OK
            assert ok, f"{path.name} imports {name}"


def test_models_do_not_import_upper_layers():
    upper = ("train", "data", "tasks", "cli", "pipeline", "config")
    for path in (SRC / "models").glob("*.py"):
        for name in _imports(path):
            stripped = name.lstrip(".")
            assert not (name.startswith("..") and stripped.split(".")[0] in upper), f"{path.name} imports {name}"
            assert not stripped.startswith(("omegaconf", "tqdm", "matplotlib", "wandb")), f"{path.name} imports {name}"


def test_core_needs_no_logging_or_plotting_library():
    for path in SRC.rglob("*.py"):
        assert "wandb" not in _imports(path), path


DOMAINS = ("synthetic", "imitation", "forecasting", "planning")            # domain packages over the core, as they are rebuilt
# envs/ holds the Maze2D physics that planning and imitation share, below both (DESIGN.md section 2)
CORE = ("diffusion", "models", "train", "data", "envs", "config", "pipeline", "records", "results", "atomic", "stats",
        "devices")


def _top(name: str) -> str:
    """The dforce module a relative import of a file one package deep names ('..data.x' -> 'data')."""
    return name.lstrip(".").split(".")[0] if name.startswith("..") else ""


def test_domain_packages_import_the_core_and_no_other_domain():
    above = ("tasks", "tables", "cli", *DOMAINS)
    for domain in DOMAINS:
        for path in (SRC / domain).glob("*.py"):
            for name in _imports(path):
                top = _top(name)
                assert not (top in above and top != domain), f"{domain}/{path.name} imports {name}"
                assert not name.startswith("dforce."), f"{domain}/{path.name} imports {name} absolutely"


def test_core_imports_no_domain():
    files = [p for c in CORE for p in ([SRC / f"{c}.py"] if (SRC / f"{c}.py").is_file() else (SRC / c).rglob("*.py"))]
    assert files
    for path in files:
        for name in _imports(path):
            stripped = name.lstrip(".").split(".")[0]
            assert stripped not in DOMAINS, f"{path.relative_to(SRC)} imports {name}"
