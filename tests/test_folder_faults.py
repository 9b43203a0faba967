"""The run folder under faults, in this process (signals and kills need subprocesses:
test_faults.py). Readers never modify a folder; a write that fails stops the run with one line and
leaves it resumable; a damaged checkpoint, cache file or log line is skipped or refused in one
line; a ``.lock`` that is not a regular file is refused; flags that would be ignored are refused
or honoured.

One tiny PPO run is trained once (module fixture) and copied for each fault. Its configuration is
test_faults.py's, so the two modules share their compiled programs through the compilation cache.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax import cli
from pgjax.algorithms import ppo
from pgjax.run import episodes, runner
from pgjax.run import folder as run_folder
from pgjax.run import loggers
from pgjax.run.checkpoints import Checkpoints, to_savable
from pgjax.run.loggers import WriteFailed

CONFIG = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=8 * 64,
                    epochs=1, minibatches=2, hidden_sizes=(8,))
HPARAMS = ppo.Hparams(learning_rate=3e-3)
SEEDS = [0, 1]
STEP = CONFIG.steps_per_update  # 64 env steps per update
# 8 updates in chunks of 2, a checkpoint after every chunk (latest keeps 256, 384, 512), evaluations
# (and the best checkpoint) after updates 4 and 8
OPTIONS = runner.RunOptions(eval_episodes=4, cache_episodes=1, num_evals=2, chunk_updates=2,
                            checkpoint_every=2 * STEP, tensorboard=False, plots=False,
                            log_every_seconds=0)
TRAIN = ["train", "ppo", "--seeds", "2", "--eval-episodes", "4", "--cache-episodes", "1",
         "--num-evals", "2", "--checkpoint-every", str(2 * STEP), "--no-plots",
         "--log-every-seconds", "0",
         *[f"--set={k}={v}" for k, v in (("num_envs", 4), ("rollout_length", 16),
                                         ("total_steps", 8 * 64), ("epochs", 1), ("minibatches", 2),
                                         ("hidden_sizes", 8), ("learning_rate", 0.003))]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, tmp_path_factory.mktemp("finished") / "run",
                      options=OPTIONS, out=io.StringIO())


def _copy(finished, tmp_path, name="run") -> Path:
    return Path(shutil.copytree(finished.run_dir, tmp_path / name, symlinks=True))


def _digest(root: Path, skip=()) -> dict[str, str]:
    """Every file (its bytes' SHA-256), folder and link under ``root`` by relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if name in skip:
            continue
        found[name] = (f"link -> {os.readlink(path)}" if path.is_symlink() else "folder" if path.is_dir()
                       else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _final_evaluation(run_dir: Path) -> list[float]:
    return [r["eval_return_mean"] for r in _rows(run_dir / "eval.jsonl") if r["update"] == 8]


def _damage(step_dir: Path) -> None:
    """Truncate every data file of a checkpoint step to 10 bytes (a disk that filled, a copy cut
    short); its metadata stays readable."""
    for path in step_dir.rglob("d/*"):
        with open(path, "r+b") as handle:
            handle.truncate(10)


def _assert_same_state(a, b) -> None:
    for x, y in zip(jax.tree.leaves(to_savable(a)), jax.tree.leaves(to_savable(b)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _assert_each_update_once(run_dir: Path) -> None:
    for name, per_update in (("metrics.jsonl", 2), ("metrics_settings.jsonl", 1)):
        updates = sorted(r["update"] for r in _rows(run_dir / name))
        assert updates == sorted(list(range(1, 9)) * per_update), name


def _resume(run_dir: Path):
    return runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, run_dir, options=OPTIONS, resume=True,
                      out=io.StringIO())


# --------------------------------------------------------------------------- readers

def test_readers_leave_a_read_only_folder_byte_identical(finished, tmp_path, capsys):
    """`pgjax eval` (latest and best) and `pgjax episodes` on a read-only copy that holds a
    half-written save in latest/ and in best/: every file stays as it was (the temporary folders
    too: a reader cleaning them up would destroy the save a training run is writing), and the
    evaluation agrees with the run's own final one (same fixed keys, same parameters)."""
    run_dir = _copy(finished, tmp_path)
    for kind in ("latest", "best"):
        half = run_dir / "checkpoints" / kind / f"{9 * STEP}.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
        half.mkdir(parents=True)
        (half / "manifest.ocdbt").write_bytes(b"half a save")
    for path in [run_dir, *run_dir.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _digest(run_dir)
    try:
        assert cli.main(["eval", str(run_dir), "--episodes", "4"]) == 0
        latest = capsys.readouterr()
        assert cli.main(["eval", str(run_dir), "--episodes", "4", "--best"]) == 0
        best = capsys.readouterr()
        assert cli.main(["episodes", str(run_dir)]) == 0
        summary = capsys.readouterr()
        assert cli.main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
        capsys.readouterr()
        assert _digest(run_dir) == before  # root ignores the write bits: nothing wrote
    finally:
        for path in [run_dir, *run_dir.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    for result in (latest, best):
        assert f"checkpoint at step {8 * STEP:,d}" in result.out
        for mean in _final_evaluation(finished.run_dir):
            assert f"| {mean:.2f} |" in result.out
        assert result.err == ""
    assert f"| {8 * STEP:,d} | 8 |" in summary.out
    assert (tmp_path / "report" / "report.md").is_file()


def test_eval_records_rows_only_where_asked(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    before = _digest(run_dir)
    out = tmp_path / "evals" / "reeval.jsonl"
    out.parent.mkdir()
    assert cli.main(["eval", str(run_dir), "--episodes", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    assert _digest(run_dir) == before
    rows = _rows(out)
    final = _final_evaluation(finished.run_dir)
    assert [r["member"] for r in rows] == list(range(len(final)))
    assert [round(r["eval_return_mean"], 2) for r in rows] == [round(m, 2) for m in final]


def test_eval_prints_the_result_then_warns_when_it_cannot_record_it(finished, tmp_path, capsys,
                                                                    monkeypatch):
    run_dir = _copy(finished, tmp_path)
    out = tmp_path / "reeval.jsonl"
    real_open = open

    def read_only_open(file, mode="r", *args, **kwargs):
        if Path(file) == out and mode != "r":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(loggers, "open", read_only_open, raising=False)
    assert cli.main(["eval", str(run_dir), "--episodes", "4", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"| {_final_evaluation(finished.run_dir)[0]:.2f} |" in captured.out
    assert captured.err == (f"pgjax: warning: the result above was not recorded (cannot write "
                            f"{out}: [Errno 30] Read-only file system)\n")


# --------------------------------------------------------------------------- damaged files

def test_a_damaged_newest_checkpoint_is_skipped_by_eval_and_by_resume(finished, tmp_path, capsys):
    """Step 512's data files truncated: `pgjax eval` evaluates step 384 with one warning naming
    512 and changes nothing; a resume starts from 384, saves step 512 again in place of the
    damaged one and trains to the very state of the uninterrupted run."""
    run_dir = _copy(finished, tmp_path)
    _damage(run_dir / "checkpoints" / "latest" / str(8 * STEP))
    before = _digest(run_dir)
    assert cli.main(["eval", str(run_dir), "--episodes", "4"]) == 0
    captured = capsys.readouterr()
    assert f"latest checkpoint at step {6 * STEP:,d}" in captured.out
    assert captured.err.count("\n") == 1, captured.err
    assert (f"pgjax: warning: checkpoint {run_dir / 'checkpoints' / 'latest' / str(8 * STEP)} is "
            f"damaged") in captured.err and f"skipped; using step {6 * STEP}" in captured.err
    assert _digest(run_dir) == before
    with pytest.warns(UserWarning, match=f"latest/{8 * STEP} is damaged .*skipped \\(saved again "
                                         f"when training reaches it\\); using step {6 * STEP}"):
        resumed = _resume(run_dir)
    assert resumed.status == runner.COMPLETED
    _assert_same_state(resumed.final_state, finished.final_state)
    _assert_each_update_once(run_dir)
    checkpoints = Checkpoints(run_dir, read_only=True)  # the new save of 512 reads back
    _, meta = checkpoints.restore(jax.eval_shape(lambda: resumed.final_state))
    checkpoints.close()
    assert checkpoints.restored_step == 8 * STEP and meta["update"] == 8


def test_no_intact_checkpoint_is_refused_in_one_line(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    for step in (4, 6, 8):
        _damage(run_dir / "checkpoints" / "latest" / str(step * STEP))
    assert cli.main(["eval", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pgjax: error: no intact latest checkpoint in {run_dir / 'checkpoints' / 'latest'}: ")
    assert err.count("\n") == 1, err
    before = _digest(run_dir)
    assert cli.main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "no intact latest checkpoint" in err and err.count("\n") == 1, err
    assert _digest(run_dir) == before  # status.json still says how the run ended


def test_an_edited_config_json_is_refused_naming_the_first_leaf(finished, tmp_path, capsys,
                                                               monkeypatch):
    """hidden_sizes edited from 8 to 16 in config.json: eval and resume are refused in one line
    naming the first leaf whose shape differs, before anything is compiled or written."""
    run_dir = _copy(finished, tmp_path)
    record = json.loads((run_dir / "config.json").read_text())
    record["config"]["hidden_sizes"] = [16]
    (run_dir / "config.json").write_text(json.dumps(record))
    before = _digest(run_dir)
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, *a, **k: compiles.append(1))
    leaf = ("params.params.actor_torso.Dense_0.bias is float32[2, 16] in the configuration but "
            "float32[2, 8] in the checkpoint")
    for argv in (["eval", str(run_dir)], ["train", "--resume", str(run_dir)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert leaf in err and err.count("\n") == 1, err
    assert not compiles and _digest(run_dir) == before


def test_a_partial_last_line_of_every_log_is_dropped_on_resume(finished, tmp_path):
    """A run killed (or stopped by a full disk) while writing a line, with its checkpoint at 256
    and a save of the best checkpoint cut short: the resume drops the cut lines with the rows after
    the checkpoint, keeps the rest, removes the unfinished save (the trainer cleans what readers
    leave alone) and ends bit-identical with every update logged once."""
    run_dir = _copy(finished, tmp_path)
    for step in (6, 8):
        shutil.rmtree(run_dir / "checkpoints" / "latest" / str(step * STEP))
    for name in ("metrics.jsonl", "metrics_settings.jsonl", "eval.jsonl"):
        with open(run_dir / name, "a") as handle:
            handle.write('{"member": 0, "update": 9, "episode_ret')
    unfinished = run_dir / "checkpoints" / "best" / f"{6 * STEP}.orbax-checkpoint-tmp"
    unfinished.mkdir()
    (unfinished / "_CHECKPOINT_METADATA").write_text("{")
    resumed = _resume(run_dir)
    _assert_same_state(resumed.final_state, finished.final_state)
    _assert_each_update_once(run_dir)
    assert _rows(run_dir / "eval.jsonl") == _rows(finished.run_dir / "eval.jsonl")
    assert not unfinished.exists()


def test_a_damaged_line_before_the_last_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"update": 1}\n{"upd\n{"update": 2}\n{"update": 3}\n{"update": 4')
    with pytest.warns(UserWarning, match=r"metrics.jsonl: line\(s\) \[2\] are not JSON rows"):
        loggers.truncate_jsonl(path, lambda row: row["update"] <= 2)
    assert path.read_text() == '{"update": 1}\n{"update": 2}\n'


def test_a_damaged_episode_cache_file_is_one_line(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    damaged = run_dir / "eval" / f"step_{8 * STEP:012d}.npz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    assert cli.main(["episodes", str(run_dir)]) == 0  # the intact one is still summarised
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and f"{damaged} is damaged" in captured.err, captured.err
    expected = episodes.load(finished.run_dir, 4 * STEP)["returns"].mean()
    assert f"| {4 * STEP} | 8 | {expected:.2f} |" in captured.out
    assert f"| {8 * STEP} |" not in captured.out
    assert cli.main(["episodes", str(run_dir), "--step", str(8 * STEP)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{damaged} is damaged" in err, err


# --------------------------------------------------------------------------- the lock

@pytest.mark.parametrize("kind", ["symbolic link", "directory"])
def test_a_lock_that_is_not_a_regular_file_is_refused(finished, tmp_path, capsys, kind):
    """`.lock` as a link to a file outside the runs folder would have the resume truncate and
    overwrite that file; as a directory it cannot be locked. Either is refused in one line naming
    it, and the file it points to is untouched."""
    run_dir = _copy(finished, tmp_path)
    outside = tmp_path / "notes.txt"
    outside.write_text("not pgjax's")
    lock = run_dir / ".lock"
    lock.unlink()
    if kind == "directory":
        lock.mkdir()
    else:
        lock.symlink_to(outside)
    assert cli.main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err == (f"pgjax: error: run_dir={str(run_dir)!r} is not allowed: its lock {lock} is a "
                   f"{kind}; a run folder's lock must be a regular file (pgjax never follows or "
                   "replaces it): remove it\n")
    assert outside.read_text() == "not pgjax's"
    assert not run_folder.is_locked(run_dir) and run_folder.holder_pid(run_dir) is None


# --------------------------------------------------------------------------- flags

def test_resume_refuses_a_name_runs_dir_or_config_it_would_ignore(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path / "runs")
    other = json.loads((run_dir / "config.json").read_text())
    other["hparams_settings"][0]["learning_rate"] = 0.01
    (tmp_path / "other.json").write_text(json.dumps(other))
    before = _digest(run_dir)
    for flag, value, what in (("--name", "other", "--name='other'"),
                              ("--runs-dir", str(tmp_path), f"--runs-dir={str(tmp_path)!r}"),
                              ("--config", str(tmp_path / "other.json"), "--config=")):
        assert cli.main(["train", "--resume", str(run_dir), flag, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pgjax: error: {what}") and "is not allowed with --resume" in err
        assert err.count("\n") == 1, err
    assert "differs in hyperparameters" in err
    assert _digest(run_dir) == before
    # the same values as the run's own are accepted: the finished run has nothing left to do
    assert cli.main(["train", "--resume", str(run_dir), "--name", run_dir.name, "--runs-dir",
                     str(run_dir.parent), "--config", str(finished.run_dir / "config.json")]) == 0
    assert "has already run all 8 updates" in capsys.readouterr().out


def test_episodes_honours_step_and_refuses_what_only_a_gif_uses(finished, tmp_path, capsys):
    run_dir = finished.run_dir
    assert cli.main(["episodes", str(run_dir), "--step", str(4 * STEP)]) == 0
    out = capsys.readouterr().out
    expected = episodes.load(run_dir, 4 * STEP)
    assert f"| {4 * STEP} | 8 | {expected['returns'].mean():.2f} |" in out
    assert f"| {8 * STEP} |" not in out
    assert f"episode lengths at step {4 * STEP}" in out
    for argv, message in ((["--gif", str(tmp_path)], f"--gif={str(tmp_path)!r} is not allowed: it is a directory"),
                          (["--member", "1"], "--member is not allowed without --gif")):
        assert cli.main(["episodes", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pgjax: error: {message}") and err.count("\n") == 1, err


# --------------------------------------------------------------------------- write failures

def test_an_os_error_inside_tensorstore_reads_as_errno():
    """tensorstore reports the operating system's error inside a ValueError (this is the text of a
    save that hit RLIMIT_FSIZE, shortened); it reads as Python's OSError does."""
    text = ('OUT_OF_RANGE: Error opening "zarr" driver: Error writing "b/.zarray" in OCDBT database '
            'at local file "/r/checkpoints/latest/1.orbax-checkpoint-tmp/state/": Failed writing: '
            '"/r/checkpoints/latest/1.orbax-checkpoint-tmp/state/d/c1": Failed to write 64136 bytes '
            "to file 7: File too large [os_error_code='27'] [tensorstore_spec='{\"context\":{}}']")
    assert loggers.describe_error(ValueError(text)) == "[Errno 27] File too large"
    assert str(WriteFailed(Path("runs/x/metrics.jsonl"), OSError(errno.EFBIG, "File too large"))) == \
        "cannot write runs/x/metrics.jsonl: [Errno 27] File too large"


def test_status_and_episode_cache_writes_raise_write_failed(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(loggers.os, "replace", full)
    with pytest.raises(WriteFailed, match=r"cannot write .*status.json: \[Errno 28\] No space left"):
        run_folder.write_status(tmp_path, run_folder.RUNNING, 3)
    monkeypatch.undo()
    monkeypatch.setattr(episodes.np, "savez_compressed", full)
    result = {"returns": np.zeros((2, 3)), "lengths": np.ones((2, 3), np.int32)}
    with pytest.raises(WriteFailed, match=r"cannot write .*step_000000000064.npz: \[Errno 28\]"):
        episodes.save(tmp_path, 64, result, [0, 1], True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["eval"]  # no half-written file left


def _failing_write(monkeypatch, where: str, after: int):
    """Make the ``after``-th write of one kind fail, once: TensorBoard's event records, the episode
    cache, status.json, or orbax's rename of a latest checkpoint's folder into place."""
    calls = {"n": 0}

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] == after

    if where == "tensorboard":
        from tensorboardX import event_file_writer
        write_event = event_file_writer.EventsWriter.write_event

        def write(self, event):
            if due():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write_event(self, event)

        monkeypatch.setattr(event_file_writer.EventsWriter, "write_event", write)
    elif where == "episode cache":
        savez = np.savez_compressed

        def save(*args, **kwargs):
            if due():
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return savez(*args, **kwargs)

        monkeypatch.setattr(episodes.np, "savez_compressed", save)
    elif where == "status":
        replace = os.replace

        def rename(source, target):
            if Path(target).name == "status.json" and due():
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return replace(source, target)

        monkeypatch.setattr(loggers.os, "replace", rename)
    else:
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def rename_into_place(self, *args, **kwargs):
            if Path(str(self.get_final())).parent.name == "latest" and due():  # a step's folder
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return await finalize(self, *args, **kwargs)

        monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", rename_into_place)


@pytest.mark.parametrize("where, after, file, reason", [
    ("tensorboard", 40, r"tb/seed[01]/events\.out\.tfevents\.[^:]+", "[Errno 28] No space left on device"),
    ("episode cache", 1, rf"eval/step_{4 * STEP:012d}\.npz", "[Errno 5] Input/output error"),
    ("status", 3, "status.json", "[Errno 5] Input/output error"),
    ("checkpoint", 2, f"checkpoints/latest/{4 * STEP}", "[Errno 5] Input/output error"),
])
def test_a_failed_write_stops_the_run_in_one_line_and_it_resumes(finished, tmp_path, capfd,
                                                                monkeypatch, where, after, file, reason):
    """A write that fails (injected once, at a hook) stops `pgjax train` within seconds with one
    line naming the file and the error, exit status 4 and status.json 'failed' (the earlier status
    write that failed is retried by the failure's own); the folder then resumes to the uninterrupted
    run's state. (TensorBoard's writer thread used to die on the error and hang the run for good;
    a failed checkpoint printed hundreds of lines of orbax's tracebacks.)"""
    _failing_write(monkeypatch, where, after)
    outcome = {}
    train = threading.Thread(target=lambda: outcome.setdefault("code", cli.main(
        [*TRAIN, "--runs-dir", str(tmp_path), "--name", "run"])), daemon=True)
    train.start()
    train.join(timeout=120)
    assert not train.is_alive(), "the run did not stop"
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert outcome["code"] == 4 and len(lines) == 1, err
    assert re.fullmatch(rf"pgjax: error: cannot write {re.escape(str(tmp_path / 'run'))}/{file}: "
                        rf"{re.escape(reason)}", lines[0]), lines[0]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and lines[0][len("pgjax: error: "):] in status["message"]
    monkeypatch.undo()
    resumed = runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, tmp_path / "run", resume=True,
                         options=runner.RunOptions(**{**vars(OPTIONS), "tensorboard": True}),
                         out=io.StringIO())
    _assert_same_state(resumed.final_state, finished.final_state)
    _assert_each_update_once(tmp_path / "run")
    assert not list((tmp_path / "run").glob("checkpoints/*/*tmp*"))
