"""Fuzz the CLI in-process: malformed overrides, malformed flags and corrupted model files.

Every invocation must exit 0 (valid input) or 2 with exactly one ``dforce ...:`` line on
stderr, no traceback and no "internal error" (an exception the error boundary only caught
as a last resort), and leave the repository's results/ and checkpoints/ untouched.
Seeded and bounded: a few hundred invocations, well under a minute on one core.
"""

import json
import random
import shutil
from pathlib import Path

import pytest

from dforce.cli import main
from helpers import ROOT, train_tiny

KEYS = ["model.width", "model.depth", "model.heads", "model.window", "model.backbone", "diffusion.levels",
        "diffusion.snr_gamma", "diffusion.fused_decay", "diffusion.target", "sampling.steps", "sampling.slope",
        "sampling.eta", "sampling.chunk", "sampling.stabilization", "sampling.scheduling", "data.length",
        "data.sequences", "data.noise", "data.window", "train.lr", "train.steps", "train.batch_size",
        "train.ema_decay", "train.device", "train.seed", "video.size", "planning.maze", "forecast.samples"]
BAD_KEYS = ["model", "model.", ".width", "model..width", "nope.width", "model.widht", "", "a.b.c.d", "train.lr.x"]
VALUES = ["nan", "inf", "-inf", "-1", "0", "1", "3", "0.5", "1e30", "-1e30", "", "@x", "\t", "\t3", "*a", "&a 1",
          "&a", "[1, 2]", "[", "{a: 1}", "{", "null", "~", "true", "yes", str(2**64), str(10**40), "'quoted'",
          "\"", "1e-300", "0x10", "rnn", "pyramid", "%", "`", "!!python/object:os.system", "- x", "a: b", "\n"]
FLAG_VALUES = ["0", "-1", "1", "2", "nan", "inf", "-inf", "1e9", "1e30", "", "abc", "99999999999999999999",
               "0.5", "-0", "3"]
DEVICE_VALUES = ["cpu", "auto", "cuda", "cuda:0", "cuda:99", "cuda:-1", "bogus", "meta", "mps", "cpu:0", "CPU", "0",
                 ""]


def snapshot() -> dict[str, tuple[int, int]]:
    """mtime and size of every file under the repository's results/ and checkpoints/."""
    files = [p for d in ("results", "checkpoints") for p in (ROOT / d).rglob("*") if p.is_file()]
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in files}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("fuzz-model") / "run")


def check(capsys, argv: list[str], allow_ok: bool = True) -> int:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err, (argv, err)
    if code == 0:
        assert allow_ok, (argv, "accepted a broken input")
        return code
    assert code == 2, (argv, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dforce"), (argv, err)
    assert "internal error" not in lines[0], (argv, lines[0])
    return code


def corruptions(rng: random.Random):
    """(name, function(model_dir)) pairs that break a copy of a model directory."""
    def weights(fn):
        def apply(d: Path):
            p = d / "model.safetensors"
            p.write_bytes(fn(p.read_bytes()))
        return apply

    def config(fn):
        def apply(d: Path):
            p = d / "config.json"
            p.write_text(json.dumps(fn(json.loads(p.read_text()))))
        return apply

    def drop(key):
        return lambda m: {k: v for k, v in m.items() if k != key}

    def cut(b: bytes) -> bytes:
        return b[:rng.randrange(len(b))]

    def flip(b: bytes) -> bytes:
        a = bytearray(b)
        for _ in range(rng.randint(1, 8)):
            a[rng.randrange(8, len(a))] = rng.randrange(256)   # past the header length: often still loads
        return bytes(a)

    out = [("truncate", weights(cut)), ("zero", weights(lambda b: bytes(len(b)))),
           ("random", weights(lambda b: bytes(rng.randrange(256) for _ in b))),
           ("empty", weights(lambda b: b"")), ("flip", weights(flip)),
           ("text", lambda d: (d / "config.json").write_text(rng.choice(["", "{", "[]", "null", "\"x\"", "1", "{]"])))]
    for key in ("token_shape", "cond_dim", "model", "diffusion", "sampling", "format", "format_version"):
        out.append((f"drop-{key}", config(drop(key))))
    for key, value in [("format_version", 99), ("format_version", 0), ("format_version", "two"),
                       ("format_version", True), ("token_shape", []), ("token_shape", [0]), ("token_shape", "2"),
                       ("token_shape", [10**12]), ("cond_dim", -1), ("cond_dim", 1.5), ("cond_dim", 5),
                       ("model", [1]), ("extra", "x")]:
        out.append((f"{key}={value!r}", config(lambda m, k=key, v=value: {**m, k: v})))
    for section, key, value in [("model", "width", 32), ("model", "width", 10**6), ("model", "depth", 0),
                                ("model", "backbone", "lstm"), ("model", "wdth", 3), ("diffusion", "levels", 3),
                                ("sampling", "slope", "nan"), ("sampling", "steps", 10**6), ("sampling", "eta", 2)]:
        out.append((f"{section}.{key}={value!r}",
                    config(lambda m, s=section, k=key, v=value: {**m, s: {**m[s], k: v}})))
    return out


def test_fuzz_overrides(capsys, monkeypatch, tmp_path):
    rng = random.Random(0)
    monkeypatch.chdir(tmp_path)
    before = snapshot()
    codes = []
    for _ in range(220):
        overrides = []
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(KEYS) if rng.random() < 0.85 else rng.choice(BAD_KEYS)
            overrides.append(f"{key}={rng.choice(VALUES)}" if rng.random() < 0.95 else rng.choice(VALUES + BAD_KEYS))
        codes.append(check(capsys, ["show-config", "default", *overrides]))
    assert codes.count(2) > 100 and codes.count(0) > 0     # both kinds were exercised
    assert snapshot() == before


def test_fuzz_flags(model_dir, capsys, monkeypatch, tmp_path):
    rng = random.Random(1)
    monkeypatch.chdir(tmp_path)
    before = snapshot()
    sample_flags = ["--length", "--context", "--batch", "--slope", "--steps", "--chunk", "--stabilization", "--seed",
                    "--scheduling", "--device", "--bogus"]
    schedule_flags = ["--horizon", "--steps", "--slope"]
    codes = []
    for i in range(120):
        if rng.random() < 0.6:
            flags = rng.sample(sample_flags, rng.randint(1, 2))
            argv = ["sample", str(model_dir), "--out", str(tmp_path / "out"), "--length", "4", "--batch", "2"]
        else:
            flags = rng.sample(schedule_flags, rng.randint(1, 2))
            argv = ["schedule", rng.choice(["pyramid", "full_sequence", "autoregressive", "trapezoid", "", "zig"])]
        for flag in flags:
            extra = {"--scheduling": ["pyramid", "", "zig"], "--device": DEVICE_VALUES}.get(flag, [])
            argv += [flag, rng.choice(FLAG_VALUES + extra)]
        codes.append(check(capsys, argv))
    assert codes.count(2) > 50 and codes.count(0) > 0
    assert snapshot() == before


def test_fuzz_corrupted_model_files(model_dir, capsys, monkeypatch, tmp_path):
    rng = random.Random(2)
    monkeypatch.chdir(tmp_path)
    before = snapshot()
    cases = corruptions(rng)
    commands = [lambda d: ["sample", str(d), "--out", str(tmp_path / "o"), "--length", "4", "--batch", "2"],
                lambda d: ["forecast", str(d), "--out", str(tmp_path / "f")],
                lambda d: ["eval", "likelihood", "--checkpoints", str(d), "--out", str(tmp_path / "l")]]
    for i, (name, corrupt) in enumerate(cases * 2):
        broken = tmp_path / f"m{i}"
        shutil.copytree(model_dir, broken)
        corrupt(broken)
        # a bit flip inside the tensor data still loads (finite values): valid input, exit 0 is right
        allow_ok = name in ("flip",)
        check(capsys, rng.choice(commands)(broken), allow_ok=allow_ok)
        shutil.rmtree(broken)
    assert snapshot() == before


def test_fuzz_device(model_dir, capsys, monkeypatch, tmp_path):
    """Every device spelling, on every command that loads a model: it runs (a device that exists here)
    or is one line and exit 2 (``cuda`` without CUDA, unknown or unsupported names)."""
    monkeypatch.chdir(tmp_path)
    before = snapshot()
    commands = [["sample", str(model_dir), "--out", str(tmp_path / "o"), "--length", "4", "--batch", "2"],
                ["forecast", str(model_dir), "--out", str(tmp_path / "f")],
                ["eval", "likelihood", "--checkpoints", str(model_dir), "--out", str(tmp_path / "l")]]
    ran = 0
    for device in DEVICE_VALUES:
        for argv in commands:
            ran += check(capsys, [*argv, "--device", device]) == 0
    assert ran >= 3                                      # cpu, auto and cpu:0 sample
    assert snapshot() == before
