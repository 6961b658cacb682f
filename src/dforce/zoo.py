"""The model zoo: shipped checkpoints by name, and the Hugging Face Hub format.

A model directory is ``config.json`` + ``model.safetensors`` (what
``DiffusionForcingModel.save_pretrained`` writes), which is also the layout of a Hugging
Face Hub model repository, so a directory can be uploaded as is and downloaded back.

``checkpoints/zoo.json`` in the repository lists the shipped checkpoints: for each name,
its directory (relative to ``checkpoints/``), task, the command that trained it, and
where its score is recorded (a results JSON and the key path of the metric in it).
``resolve(name_or_path)`` turns a zoo name (``"exchange"``), a directory, or
``hf://owner/repo[@revision]`` (downloaded with ``huggingface_hub``, cached by it) into a
local directory. No account is needed for any of this; only ``push_to_hub`` needs one.

The shipped checkpoints are read from the repository's ``checkpoints/``; an install that
is not an editable one from a clone can point ``$DFORCE_CHECKPOINTS`` at a copy of that
directory (read when dforce is imported).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS = Path(os.environ.get("DFORCE_CHECKPOINTS") or Path(__file__).resolve().parents[2] / "checkpoints")
HUB_PREFIX = "hf://"


@dataclass(frozen=True)
class Entry:
    """One shipped checkpoint (see the module docstring)."""

    name: str
    directory: Path
    task: str
    command: str
    result: str | None = None        # results JSON, relative to the repository root
    metric: str | None = None        # dotted key path of the score in that JSON, e.g. "metrics.score_mean"
    chosen: str | None = None        # how this checkpoint was chosen (on which data, against what)
    metric_name: str | None = None   # what ``dforce models`` calls the score (default: the metric's last key)

    def size_mb(self) -> float:
        """Size of the directory's files in MB (0 when missing)."""
        if not self.directory.is_dir():
            return 0.0
        return sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file()) / 1e6

    def score(self) -> Any:
        """The recorded score (None when the results file or key is missing)."""
        if not self.result or not self.metric:
            return None
        path = CHECKPOINTS.parent / self.result
        try:
            value: Any = json.loads(path.read_text())
            for key in self.metric.split("."):
                value = value[int(key)] if isinstance(value, list) else value[key]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None
        return value


def entries(root: Path = CHECKPOINTS) -> dict[str, Entry]:
    """The zoo's entries by name, from ``root/zoo.json`` (empty when there is none)."""
    index = root / "zoo.json"
    if not index.is_file():
        return {}
    rows = json.loads(index.read_text())
    return {r["name"]: Entry(r["name"], root / r["directory"], r["task"], r["command"], r.get("result"), r.get("metric"),
                             r.get("chosen"), r.get("metric_name")) for r in rows}


def resolve(name_or_path: str | Path, root: Path = CHECKPOINTS) -> Path:
    """A local model directory for a directory path, a zoo name, or ``hf://owner/repo[@revision]``."""
    text = str(name_or_path)
    if text.startswith("hf:/") and not text.startswith(HUB_PREFIX):   # Path("hf://a/b") collapses the "//"
        text = HUB_PREFIX + text[len("hf:/"):]
    if text.startswith(HUB_PREFIX):
        return download(text[len(HUB_PREFIX):])
    path = Path(name_or_path)
    if path.exists() or path.with_name(path.name + ".old").exists():   # .old: an interrupted atomic replace
        return path
    zoo = entries(root)
    if text in zoo:
        if not zoo[text].directory.is_dir():
            raise ValueError(f"zoo model {text!r} is listed but {zoo[text].directory} is missing")
        return zoo[text].directory
    names = ", ".join(sorted(zoo)) or "none shipped"
    raise ValueError(f"{text!r} is not a dforce model directory, a zoo name ({names}) or hf://owner/repo")


def download(repo: str) -> Path:
    """``owner/repo[@revision]`` from the Hugging Face Hub into its cache; returns the local directory."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise ImportError("hf:// models need huggingface_hub: pip install huggingface_hub") from err
    repo_id, _, revision = repo.partition("@")
    return Path(snapshot_download(repo_id=repo_id, revision=revision or None,
                                  allow_patterns=["config.json", "model.safetensors", "*.md", "*.json"]))


def push_to_hub(model: Any, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload dforce model") -> str:
    """Upload ``model.save_pretrained`` output to ``repo_id`` on the Hub (needs an account token); returns its URL."""
    import tempfile

    try:
        from huggingface_hub import HfApi
    except ImportError as err:
        raise ImportError("push_to_hub needs huggingface_hub: pip install huggingface_hub") from err
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(folder)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    return f"https://huggingface.co/{repo_id}"


def table(root: Path = CHECKPOINTS) -> str:
    """The zoo as a plain-text table (``dforce models``)."""
    rows = [("name", "task", "size", "score", "trained by")]
    for e in entries(root).values():
        score = e.score()
        shown = "-" if score is None else (f"{score:.4g}" if isinstance(score, float) else str(score))
        metric = "" if score is None else f" ({e.metric_name or e.metric.rsplit('.', 1)[-1]})"
        rows.append((e.name, e.task, f"{e.size_mb():.1f} MB" if e.directory.is_dir() else "missing",
                     shown + metric, e.command))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for row, entry in zip(rows, [None, *entries(root).values()]):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if entry is not None and entry.chosen:
            lines.append(" " * (widths[0] + 2) + f"chosen: {entry.chosen}")
    return "\n".join(lines)
