"""Regression tests for `dforce train` under damage and interruption, one per failure an
adversarial evaluation found: damaged checkpoints, a broken `latest`, leftovers of killed
writes, non-finite weights, foreign or busy run directories, changed configs on resume,
duplicated metrics rows, permissions, and signals (SIGKILL/SIGTERM/SIGINT, torchrun)."""

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dforce.cli import main
from dforce.train import checkpoint
from helpers import ROOT, TINY, dforce, env

STEPS, EVERY = 12, 4
ARGS = ["train", "default", *TINY, f"train.steps={STEPS}", f"train.checkpoint_every={EVERY}", "train.log_every=1"]


def out(run: Path) -> list[str]:
    """The options after the overrides (argparse takes no overrides after an option)."""
    return ["--out", str(run), "--no-progress"]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, str]]:
    """Every file and directory under ``root`` (but ``skip``) with its mode and content hash."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        out[str(path.relative_to(root))] = (path.lstat().st_mode, sha(path) if path.is_file() else "")
    return out


def one_error(capsys, argv: list[str], code: int = 2) -> str:
    """Run the CLI in-process; it must exit ``code`` with exactly one line on stderr and no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def metric_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished tiny run (12 steps, checkpoints at 8 and 12 kept); tests copy it, never change it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main([*ARGS, *out(run)]) == 0
    return run


@pytest.fixture
def stopped(finished, tmp_path) -> Path:
    """A copy of the finished run as a run killed after step 8 would leave it: no step-12, no model/."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.rmtree(run / "checkpoints" / "step-00000012")
    shutil.rmtree(run / "model")
    (run / "checkpoints" / "latest").write_text("step-00000008\n")
    return run


def resume(run: Path, *extra: str) -> list[str]:
    return [*ARGS, *extra, *out(run), "--resume"]


# ---- 1. checkpoint integrity ----------------------------------------------------------------
DAMAGES = {
    "flipped": lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:],
    "truncated": lambda b: b[:len(b) // 3],
    "zeroed": lambda b: bytes(len(b)),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("name", ["model.safetensors", "weights.safetensors", "optimizer.pt"])
def test_damaged_checkpoint_file_is_named_by_its_hash(stopped, tmp_path, capsys, name, damage):
    file = stopped / "checkpoints" / "step-00000008" / name
    file.write_bytes(DAMAGES[damage](file.read_bytes()))
    before = snapshot(tmp_path, skip=stopped)
    err = one_error(capsys, resume(stopped))
    assert str(file) in err and "sha256" in err
    assert snapshot(tmp_path, skip=stopped) == before
    assert not (stopped / "model").exists()


def _rewrite_manifest(ckpt: Path) -> None:
    """Re-hash a damaged checkpoint, as if it had been written damaged: the readers must still name the file."""
    manifest = json.loads((ckpt / checkpoint.MANIFEST).read_text())
    manifest["sha256"] = {name: checkpoint.sha256(ckpt / name) for name in checkpoint.FILES}
    (ckpt / checkpoint.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("name, damage, message", [
    ("model.safetensors", DAMAGES["truncated"], "SafetensorError"),
    ("weights.safetensors", DAMAGES["zeroed"], "SafetensorError"),
    ("optimizer.pt", DAMAGES["truncated"], "unreadable"),
    ("trainer.json", lambda b: b'{"loss": 1.0}', "no valid 'step'"),
])
def test_unreadable_file_behind_a_valid_manifest_is_named(stopped, capsys, name, damage, message):
    ckpt = stopped / "checkpoints" / "step-00000008"
    (ckpt / name).write_bytes(damage((ckpt / name).read_bytes()))
    _rewrite_manifest(ckpt)
    err = one_error(capsys, resume(stopped))
    assert str(ckpt / name) in err and message in err


def test_weights_of_other_shapes_are_named_even_when_forced(stopped, capsys):
    err = one_error(capsys, resume(stopped, "model.width=8", "--force"))
    assert str(stopped / "checkpoints" / "step-00000008" / "weights.safetensors") in err and "size mismatch" in err


def test_checkpoint_without_manifest_as_older_dforce_wrote_loads_and_still_names_damage(finished, stopped, capsys):
    ckpt = stopped / "checkpoints" / "step-00000008"
    (ckpt / checkpoint.MANIFEST).unlink()
    optimizer = (ckpt / "optimizer.pt").read_bytes()
    (ckpt / "optimizer.pt").write_bytes(optimizer[:200])
    err = one_error(capsys, resume(stopped))
    assert str(ckpt / "optimizer.pt") in err and "unreadable" in err
    (ckpt / "optimizer.pt").write_bytes(optimizer)
    assert main(resume(stopped)) == 0
    assert sha(stopped / "model" / "model.safetensors") == sha(finished / "model" / "model.safetensors")


# ---- 2. `latest` fallback, a `checkpoints` file, stale temporaries --------------------------
LATEST = {
    "missing": lambda p: p.unlink(),
    "dangling": lambda p: p.write_text("step-00000099\n"),
    "garbage": lambda p: p.write_bytes(b"\xff\xfe\x00"),
    "directory": lambda p: (p.unlink(), p.mkdir(), (p / "x").write_text("x")),
    "dangling-symlink": lambda p: (p.unlink(), p.symlink_to("nowhere")),
}


@pytest.mark.parametrize("how", LATEST)
def test_broken_latest_falls_back_to_newest_complete_checkpoint(finished, stopped, how):
    rows_before = (stopped / "metrics.jsonl").read_text().splitlines()[:8]
    LATEST[how](stopped / "checkpoints" / "latest")
    assert main(resume(stopped)) == 0
    # resumed from step 8, not 0: the rows of steps 1..8 were kept as written (elapsed_s included)
    assert (stopped / "metrics.jsonl").read_text().splitlines()[:8] == rows_before
    assert metric_steps(stopped) == list(range(1, STEPS + 1))
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["latest", "step-00000008", "step-00000012"]
    assert sha(stopped / "model" / "model.safetensors") == sha(finished / "model" / "model.safetensors")


def test_fallback_skips_a_damaged_newest_checkpoint_and_never_prunes_ahead(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.rmtree(run / "model")
    (run / "checkpoints" / "latest").unlink()
    weights = run / "checkpoints" / "step-00000012" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert checkpoint.latest(run).name == "step-00000008"
    assert main(resume(run)) == 0
    assert sha(run / "model" / "model.safetensors") == sha(finished / "model" / "model.safetensors")
    checkpoint.verify(run / "checkpoints" / "step-00000012")   # rewritten whole


def test_no_verifiable_checkpoint_is_an_error_not_a_restart_from_zero(stopped, capsys):
    (stopped / "checkpoints" / "latest").unlink()
    (stopped / "checkpoints" / "step-00000008" / "optimizer.pt").write_bytes(b"")
    err = one_error(capsys, resume(stopped))
    assert "no checkpoint verifies" in err and "optimizer.pt" in err
    assert (stopped / "checkpoints" / "step-00000008").is_dir()


def test_checkpoints_being_a_file_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*ARGS, "train.steps=2", *out(run)]) == 0
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a directory")
    before = snapshot(tmp_path)
    assert "checkpoints is not a directory" in one_error(capsys, [*ARGS, "train.steps=2", *out(run), "--resume"])
    assert snapshot(tmp_path) == before


def test_stale_temporaries_of_killed_writes_are_removed(stopped):
    leftovers = [stopped / "checkpoints" / ".step-00000012.tmp-k1ll3d", stopped / ".model.tmp-abc123"]
    for d in leftovers:
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"half")
    (stopped / "checkpoints" / ".latest.tmp-xyz").write_text("step-0000")
    (stopped / ".metrics.jsonl.tmp-q").write_text("{")
    assert main(resume(stopped)) == 0
    assert not [p for p in stopped.rglob(".*") if p.name != ".lock"]
    assert metric_steps(stopped) == list(range(1, STEPS + 1))


# ---- 3. non-finite weights --------------------------------------------------------------------
@pytest.mark.parametrize("lr", ["inf", "nan", "-inf", "1e300"])
def test_non_finite_lr_is_refused_before_anything_is_written(tmp_path, capsys, lr):
    err = one_error(capsys, [*ARGS, f"train.lr={lr}", "train.steps=1", *out(tmp_path / "run")])
    assert f"train.lr={lr.replace('1e300', '1e+300')}" in err
    assert list(tmp_path.iterdir()) == []


def test_weights_going_non_finite_after_an_update_stop_before_any_write(tmp_path, capsys, monkeypatch):
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:    # the loss before this update was finite: only a check after it can see this
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    run = tmp_path / "run"
    err = one_error(capsys, [*ARGS, *out(run)], code=1)
    assert "weights became non-finite after the update at step 6" in err and "step-00000004" in err
    assert not (run / "model").exists() and checkpoint.latest(run).name == "step-00000004"
    for file in run.rglob("*.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(str(file)).values()), file


# ---- 5. run directory ownership ---------------------------------------------------------------
@pytest.mark.parametrize("content", ["model-only", "unrelated"])
def test_foreign_non_empty_out_is_refused_without_force(tmp_path, capsys, content):
    run = tmp_path / "run"
    if content == "model-only":
        (run / "model").mkdir(parents=True)
        (run / "model" / "config.json").write_text("{}")
    else:
        run.mkdir()
        (run / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path)
    for extra in ([], ["--resume"]):
        assert "not made by dforce train" in one_error(capsys, [*ARGS, "train.steps=2", *extra, *out(run)])
        assert snapshot(tmp_path) == before
    assert main([*ARGS, "train.steps=2", *out(run), "--force"]) == 0
    assert (run / "model" / "model.safetensors").is_file()


def test_out_being_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run").write_text("x")
    assert "is a file" in one_error(capsys, [*ARGS, *out(tmp_path / "run")])


def test_resume_onto_a_missing_directory_is_an_error(tmp_path, capsys):
    assert "does not exist" in one_error(capsys, resume(tmp_path / "nowhere"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("changes, keys", [
    (["train.lr=1e-3", "train.seed=3"], ["train.lr", "train.seed"]),
    (["train.steps=20"], ["train.steps"]),
    (["model.width=8"], ["model.width"]),
    (["data.name=cross", "data.sequences=32"], ["data.name", "data.sequences"]),   # another task's run
])
def test_resume_with_a_changed_config_lists_the_keys(stopped, tmp_path, capsys, changes, keys):
    before = snapshot(tmp_path)
    err = one_error(capsys, resume(stopped, *changes))
    assert "--force" in err and all(key in err for key in keys), err
    assert snapshot(tmp_path) == before


def test_resume_with_a_changed_config_is_accepted_with_force(stopped):
    assert main(resume(stopped, "train.lr=1e-3", "--force")) == 0
    assert json.loads((stopped / "run.json").read_text())["config"]["train"]["lr"] == 1e-3   # the new record
    assert (stopped / "model" / "model.safetensors").is_file()


def test_run_with_checkpoints_is_not_restarted_even_with_force(stopped, capsys):
    assert "--resume" in one_error(capsys, [*ARGS, *out(stopped), "--force"])


def test_second_run_on_a_locked_directory_fails_at_once(stopped, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); f.flush(); print('held', flush=True); "
                               "time.sleep(60)", str(stopped / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(tmp_path)
        tic = time.time()
        err = one_error(capsys, resume(stopped))
        assert "in use by another dforce train (pid 4242" in err and time.time() - tic < 5
        assert snapshot(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    assert main(resume(stopped)) == 0, "the lock dies with its holder"


# ---- 6. metrics rows ----------------------------------------------------------------------------
def test_resume_before_the_first_checkpoint_does_not_duplicate_metrics(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "model")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 13, "lo')                   # a row torn by SIGKILL
    assert main(resume(run)) == 0
    assert metric_steps(run) == list(range(1, STEPS + 1))
    assert sha(run / "model" / "model.safetensors") == sha(finished / "model" / "model.safetensors")


# ---- 7. permissions ------------------------------------------------------------------------------
def test_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        assert main([*ARGS, "train.steps=2", *out(tmp_path / "run")]) == 0
    finally:
        os.umask(old)
    mode = (lambda p: stat.S_IMODE(p.stat().st_mode))
    run = tmp_path / "run"
    assert mode(run / "model") == 0o755 and mode(run / "model" / "model.safetensors") == 0o644
    assert mode(run / "checkpoints" / "latest") == 0o644 and mode(run / "checkpoints" / "step-00000002") == 0o755
    assert mode(run / "run.json") == 0o644 and mode(run / "metrics.jsonl") == 0o644


# ---- 4. signals -------------------------------------------------------------------------------------
KILL_STEPS = 40
KILL_ARGS = [*ARGS, f"train.steps={KILL_STEPS}", "train.checkpoint_every=10"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> str:
    run = tmp_path_factory.mktemp("whole") / "run"
    assert main([*KILL_ARGS, *out(run)]) == 0
    return sha(run / "model" / "model.safetensors")


def _wait_for_step(run: Path, proc: subprocess.Popen, step: int) -> None:
    """Poll (lightly: the child needs the CPU) until the run has logged ``step``."""
    deadline, size = time.time() + 60, -1
    while time.time() < deadline and proc.poll() is None:
        path = run / "metrics.jsonl"
        if path.is_file() and path.stat().st_size != size:
            size = path.stat().st_size
            lines = path.read_text().splitlines()
            if lines and lines[-1].endswith("}") and json.loads(lines[-1])["step"] >= step:
                return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or stalled before step {step}; the test proves nothing")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_at_a_random_step_then_resume_is_bit_identical(tmp_path, capsys, uninterrupted, sig, seed):
    run = tmp_path / "run"
    proc = dforce(*KILL_ARGS, *out(run))
    target = random.Random(f"{sig.name}{seed}").randint(2, KILL_STEPS - 12)
    _wait_for_step(run, proc, target)
    proc.send_signal(signal.SIGSTOP)   # paused, so it cannot finish (and release its lock) before the signal
    if sig == signal.SIGTERM:   # while it runs, a second run on the same directory is refused by the lock
        assert "in use by another dforce train" in one_error(capsys, [*KILL_ARGS, *out(run), "--resume"])
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err
        ours = [line for line in err.splitlines() if line.startswith("dforce train:")]
        assert len(ours) == 1 and f"stopped by {sig.name} at step" in ours[0], err
        stopped_at = int(ours[0].split(" at step ")[1].split()[0])
        assert target <= stopped_at < KILL_STEPS and checkpoint.latest(run).name == f"step-{stopped_at:08d}"
    assert main([*KILL_ARGS, *out(run), "--resume"]) == 0
    assert sha(run / "model" / "model.safetensors") == uninterrupted
    assert metric_steps(run) == list(range(1, KILL_STEPS + 1)), "the resumed run repeated or lost metric rows"


def _children(pid: int) -> list[int]:
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat_file.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_torchrun_workers_die_with_a_killed_launcher_and_resume_bit_identical(tmp_path):
    def torchrun(run: Path, *extra: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dforce", *KILL_ARGS, "train.device=cpu", f"train.steps={4 * KILL_STEPS}", *out(run), *extra]
        return subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    whole, killed = torchrun(tmp_path / "whole"), torchrun(tmp_path / "killed")
    _wait_for_step(tmp_path / "killed", killed, 25)
    workers = _children(killed.pid)
    assert len(workers) == 2
    killed.kill()                 # SIGKILL: the launcher cannot forward anything
    deadline = time.time() + 30
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers)), "workers outlived their launcher"
    _, err = killed.communicate(timeout=30)   # the workers wrote to the launcher's (inherited) stderr
    stops = {line.split(" at step ")[1].split()[0] for line in err.splitlines() if "stopped by SIGTERM" in line}
    stopped_at = int(checkpoint.latest(tmp_path / "killed").name.split("-")[1])
    assert stops == {str(stopped_at)} and err.count("stopped by SIGTERM") == 2, err[-3000:]   # agreed; rank 0 saved
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:]
    resumed = torchrun(tmp_path / "killed", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    assert sha(tmp_path / "killed" / "model" / "model.safetensors") == sha(tmp_path / "whole" / "model" / "model.safetensors")
    steps = metric_steps(tmp_path / "killed")
    assert steps == list(range(1, 4 * KILL_STEPS + 1))
