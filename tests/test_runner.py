"""Experiment tooling: exact resume, SIGINT and SIGTERM in-process (SIGKILL and every other
fault in a subprocess: test_faults.py), the non-finite guard, a diverging member, the evaluation
cache, TensorBoard events, `pgjax eval`, incompatible resumes, counters past 2^31.

One tiny PPO configuration is trained once uninterrupted (module fixture) and compared against
interrupted-and-resumed copies of itself."""

from __future__ import annotations

import io
import json
import signal
import struct
import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from progress_signals import SignalOnProgress

from pgjax import cli
from pgjax.run import episodes, runner
from pgjax.algorithms import ppo
from pgjax.run.checkpoints import Checkpoints
from pgjax.config import config_to_dict, hparams_to_dict

CONFIG = ppo.Config(env_id="CartPole-v1", num_envs=4, rollout_length=16, total_steps=8 * 64,
                    epochs=2, minibatches=2, hidden_sizes=(16,))
HPARAMS = ppo.Hparams(learning_rate=3e-3)
SEEDS = [0, 1]
OPTIONS = runner.RunOptions(eval_episodes=6, cache_episodes=3, num_evals=2, chunk_updates=2,
                            plots=False, log_every_seconds=0)  # 8 updates in chunks of 2; evaluations after 4 and 8


def _train(run_dir, out=None, resume=False, options=OPTIONS):
    return runner.run(ppo.NAME, CONFIG, HPARAMS, SEEDS, run_dir, options=options, resume=resume,
                      out=out or io.StringIO())


def _rows(path, drop=("fps",)):
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in Path(path).read_text().splitlines()]


def _assert_trees_equal(a, b):
    from pgjax.run.checkpoints import to_savable
    for x, y in zip(jax.tree.leaves(to_savable(a)), jax.tree.leaves(to_savable(b)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    return _train(run_dir)





def test_sigint_saves_and_resume_is_bit_identical(reference, tmp_path):
    run_dir = tmp_path / "interrupted"
    stopped = _train(run_dir, out=SignalOnProgress(signal.SIGINT, at=1))
    assert stopped.status == runner.INTERRUPTED and "SIGINT" in stopped.message
    assert Checkpoints(run_dir).steps() == [2 * CONFIG.steps_per_update]  # after the first chunk
    assert len(_rows(run_dir / "metrics.jsonl")) == 2 * len(SEEDS)
    resumed = _train(run_dir, resume=True)
    assert resumed.status == runner.COMPLETED
    _assert_trees_equal(resumed.final_state, reference.final_state)
    # the logs continue exactly: same rows as the uninterrupted run (wall-clock fps aside)
    assert _rows(run_dir / "metrics.jsonl") == _rows(reference.run_dir / "metrics.jsonl")
    assert _rows(run_dir / "eval.jsonl") == _rows(reference.run_dir / "eval.jsonl")
    np.testing.assert_array_equal(resumed.eval_returns, reference.eval_returns)


def test_sigterm_exits_cleanly_with_a_checkpoint(tmp_path):
    stopped = _train(tmp_path / "term", out=SignalOnProgress(signal.SIGTERM, at=2))
    assert stopped.status == runner.INTERRUPTED and "SIGTERM" in stopped.message
    assert Checkpoints(tmp_path / "term").steps() == [4 * CONFIG.steps_per_update]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from pgjax.run import chunks
    compile_chunk = chunks.compile_chunk
    calls = []

    def poisoned(config, state, max_updates, shardings=None):
        compiled = compile_chunk(config, state, max_updates, shardings)

        def call(state, frozen, n):
            calls.append(1)
            if len(calls) == 3:  # NaN parameters going into the third chunk (updates 5-6)
                state = state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params))
            return compiled(state, frozen, n)
        return call

    monkeypatch.setattr(chunks, "compile_chunk", poisoned)
    options = runner.RunOptions(eval_episodes=4, cache_episodes=0, num_evals=1, chunk_updates=2,
                                plots=False, checkpoint_every=5 * CONFIG.steps_per_update,
                                on_nonfinite="stop", log_every_seconds=0)
    result = _train(tmp_path / "nan", options=options)
    assert result.status == runner.NON_FINITE
    assert "at update 5" in result.message
    assert any(name in result.message for name in ("loss", "grad_norm")), result.message
    assert "at update 5" in capsys.readouterr().err
    checkpoints = Checkpoints(tmp_path / "nan")
    assert checkpoints.steps()[-1] == 4 * CONFIG.steps_per_update  # the state before the bad chunk
    like = jax.eval_shape(lambda: jax.vmap(lambda k: ppo.init(CONFIG, HPARAMS, k))(
        jax.random.split(jax.random.key(0), 2)))
    state, meta = checkpoints.restore(like)
    assert meta["update"] == 4
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    assert not (tmp_path / "nan" / "summary.json").exists()
    assert json.loads((tmp_path / "nan" / "status.json").read_text())["status"] == "diverged"


def test_incompatible_resume_names_the_fields(reference, capsys, monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda self, *a, **k: compiles.append(1))
    code = cli.main(["train", "--resume", str(reference.run_dir), "--set", "num_envs=8",
                     "--set", "hidden_sizes=32,32", "--env", "Acrobot-v1"])
    err = capsys.readouterr().err
    assert code == 2 and not compiles
    for field in ("num_envs (saved 4, requested 8)", "hidden_sizes", "env_id (saved 'CartPole-v1'"):
        assert field in err, err
    assert cli.main(["train", "a2c", "--resume", str(reference.run_dir)]) == 2
    assert "algorithm (saved 'ppo', requested 'a2c')" in capsys.readouterr().err
    from pgjax.config import ConfigError
    with pytest.raises(ConfigError, match=r"hidden_sizes \(saved \(16,\), requested \(32,\)\)"):
        runner.run(ppo.NAME, dataclasses.replace(CONFIG, hidden_sizes=(32,)), HPARAMS, SEEDS,
                   reference.run_dir, options=OPTIONS, resume=True)
    with pytest.raises(ConfigError, match="seeds"):
        runner.run(ppo.NAME, CONFIG, HPARAMS, [0, 2], reference.run_dir, options=OPTIONS, resume=True)


def test_eval_cache_round_trip(reference):
    run_dir = reference.run_dir
    assert episodes.cached_steps(run_dir) == [4 * CONFIG.steps_per_update, 8 * CONFIG.steps_per_update]
    cache = episodes.load(run_dir)
    rows = [r for r in _rows(run_dir / "eval.jsonl") if r["update"] == 8]
    np.testing.assert_allclose(cache["returns"].mean(axis=1), [r["eval_return_mean"] for r in rows])
    np.testing.assert_allclose(cache["returns"].mean(axis=1), reference.eval_returns)
    valid = cache["valid"]                                   # [M, L, K]
    assert valid.shape[0] == 2 and valid.shape[2] == 3
    np.testing.assert_allclose((cache["rewards"] * valid).sum(axis=1), cache["returns"][:, :3])
    np.testing.assert_array_equal(valid.sum(axis=1), cache["lengths"][:, :3])
    # the cached env state before each step is what the agent observed: CartPole's obs = (x, ẋ, θ, θ̇)
    np.testing.assert_allclose(cache["state.x"][valid], cache["obs"][..., 0][valid], rtol=1e-6)
    np.testing.assert_allclose(cache["state.theta"][valid], cache["obs"][..., 2][valid], rtol=1e-6)
    from pgjax.envs import make
    env, params = make("CartPole-v1")
    _, like = env.reset(jax.random.key(0), params)
    length = cache["lengths"][1, 2]
    states = episodes.episode_states(cache, like, member=1, episode=2)
    assert states.x.shape == (length + 1,)  # the states acted in, then the one it ended in
    np.testing.assert_array_equal(states.theta[:-1], cache["state.theta"][1, :length, 2])
    np.testing.assert_array_equal(states.time, np.arange(length + 1))  # CartPole counts its steps
    # the episode ended because the final state left CartPole's bounds (or hit the time limit)
    assert abs(states.theta[-1]) > params.theta_threshold_radians or abs(states.x[-1]) > \
        params.x_threshold or length == params.max_steps_in_episode
    text = episodes.summary(run_dir)
    assert f"| {8 * CONFIG.steps_per_update:,d} | 12 | {cache['returns'].mean():.2f} |" in text


def test_reading_a_run_imports_no_jax(reference):
    from test_layers import assert_reads_without_jax
    assert_reads_without_jax(reference.run_dir)


def test_checkpoints_follow_wall_time_and_the_best_is_written_with_them(reference, tmp_path):
    """By default a run saves at its end (and by wall time, and when stopped), not at each
    evaluation: the reference's latest checkpoints are its last step alone. The best slot holds
    the evaluation whose mean over members is highest (a NumPy argmax over eval.jsonl), written
    with that save, not one write per evaluation."""
    end = 8 * CONFIG.steps_per_update
    checkpoints = Checkpoints(reference.run_dir, read_only=True)
    assert checkpoints.steps() == [end]
    rows = _rows(reference.run_dir / "eval.jsonl")
    steps = sorted({r["env_steps"] for r in rows})
    means = [np.mean([r["eval_return_mean"] for r in rows if r["env_steps"] == s]) for s in steps]
    assert checkpoints.steps("best") == [steps[int(np.argmax(means))]]
    checkpoints.close()
    # an offer is held until the next save, and only one that beats the best so far
    state = reference.final_state
    writer = Checkpoints(tmp_path / "run")
    assert writer.offer_best(64, state, {"update": 1}, 10.0)
    assert writer.offer_best(128, state, {"update": 2}, 30.0)
    assert not writer.offer_best(192, state, {"update": 3}, 20.0)
    assert writer.steps("best") == []  # nothing written yet
    writer.save(192, state, {"update": 3})
    assert writer.steps("best") == [128] and writer.best_return() == 30.0
    assert not writer.offer_best(256, state, {"update": 4}, 30.0)  # a tie keeps the first
    writer.close()


def test_pgjax_eval_reproduces_the_final_evaluation(reference, capsys, tmp_path):
    assert cli.main(["eval", str(reference.run_dir), "--episodes", "6", "--out",
                     str(tmp_path / "reeval.jsonl")]) == 0
    out = capsys.readouterr().out
    rows = _rows(tmp_path / "reeval.jsonl")
    np.testing.assert_allclose([r["eval_return_mean"] for r in rows], reference.eval_returns)
    assert f"{reference.eval_returns[0]:.2f}" in out
    assert cli.main(["eval", str(reference.run_dir), "--step", "7"]) == 2
    assert "step=7 is not allowed" in capsys.readouterr().err


def _tensorboard_scalars(folder: Path, tag: str) -> dict[int, float]:
    """Read scalar ``tag`` from TFRecord event files (length, crc, Event proto, crc)."""
    from tensorboardX.proto import event_pb2
    values = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12: offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return values


def test_tensorboard_events_hold_the_logged_metrics(reference):
    logged = {r["env_steps"]: r["policy_loss"] for r in _rows(reference.run_dir / "metrics.jsonl")
              if r["seed"] == 1}
    events = _tensorboard_scalars(reference.run_dir / "tb" / "seed1", "train/policy_loss")
    assert sorted(events) == sorted(logged)
    np.testing.assert_allclose([events[s] for s in sorted(logged)], [logged[s] for s in sorted(logged)],
                               rtol=1e-6)
    evals = _tensorboard_scalars(reference.run_dir / "tb" / "seed0", "eval/return_mean")
    assert sorted(evals) == [4 * CONFIG.steps_per_update, 8 * CONFIG.steps_per_update]


def test_sweep_member_matches_the_single_setting_run(reference, tmp_path):
    """A sweep over learning rates is one vmapped program (same shapes as the reference run, so the
    compiled chunk is reused); its first member is the reference run's seed 0."""
    settings = [HPARAMS, HPARAMS.replace(learning_rate=1e-3)]
    swept = runner.run(ppo.NAME, CONFIG, settings, [0], tmp_path / "sweep", options=OPTIONS,
                       out=io.StringIO())
    first = jax.tree.map(lambda x: x[0], swept.final_state.params)
    ref = jax.tree.map(lambda x: x[0], reference.final_state.params)
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    second = jax.tree.map(lambda x: x[1], swept.final_state.params)
    assert not np.allclose(jax.tree.leaves(second)[0], jax.tree.leaves(first)[0])
    rows = _rows(tmp_path / "sweep" / "metrics.jsonl")
    assert {(r["member"], round(r["hp_learning_rate"], 6)) for r in rows} == {(0, 0.003), (1, 0.001)}
    assert {r["member"]: round(r["learning_rate"], 6) for r in rows if r["update"] == 1} == {0: 0.003, 1: 0.001}
    tb = tmp_path / "sweep" / "tb"
    assert sorted(str(p.relative_to(tb)) for p in tb.glob("*/*") if p.is_dir()) == [
        "learning_rate=0.001/seed0", "learning_rate=0.003/seed0"]


def test_resuming_a_finished_run_changes_nothing(reference):
    summary = (reference.run_dir / "summary.json").read_text()
    again = _train(reference.run_dir, resume=True)
    assert again.status == runner.COMPLETED and again.message == "already complete"
    _assert_trees_equal(again.final_state, reference.final_state)
    assert (reference.run_dir / "summary.json").read_text() == summary


def test_report_of_two_runs(reference, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(reference.run_dir, copy)
    assert cli.main(["report", str(reference.run_dir), str(copy), "--out", str(tmp_path / "rep")]) == 0
    table = (tmp_path / "rep" / "report.md").read_text()
    mean = reference.eval_returns.mean()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "ppo" in line]
    assert len(rows) == 2 and all(f"{mean:.2f} ± {reference.eval_returns.std():.2f}" in r for r in rows)
    assert (tmp_path / "rep" / "eval_return_mean.png").stat().st_size > 1000
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2


def test_a_fresh_run_never_overwrites_a_saved_one(reference, capsys):
    from pgjax.config import ConfigError
    with pytest.raises(ConfigError, match="already holds a run"):
        _train(reference.run_dir)
    argv = ["train", "ppo", "--runs-dir", str(reference.run_dir.parent), "--name", reference.run_dir.name]
    assert cli.main(argv) == 2
    assert "pgjax train --resume" in capsys.readouterr().err


def test_a_diverging_member_is_frozen_and_the_others_finish(reference, tmp_path, capsys):
    """A sweep whose second setting blows up at once (learning rate 1e30): that member is frozen at
    its last finite state (its initial parameters) and marked diverged everywhere; the first
    member trains to the end exactly as the same setting alone (the reference's seed 0)."""
    settings = [HPARAMS, HPARAMS.replace(learning_rate=1e30)]
    with pytest.warns(UserWarning, match="far outside the usual range"):
        result = runner.run(ppo.NAME, CONFIG, settings, [0], tmp_path / "div", options=OPTIONS,
                            out=io.StringIO())
    assert result.status == runner.COMPLETED
    assert list(result.diverged) == [1] and result.diverged[1]["update"] == 1
    assert "member 1 (seed 0, learning_rate=1e+30) went non-finite" in capsys.readouterr().err
    healthy = jax.tree.map(lambda x: x[0], result.final_state.params)
    for x, y in zip(jax.tree.leaves(healthy), jax.tree.leaves(jax.tree.map(lambda x: x[0], reference.final_state.params))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    # the runner's own (jitted) initialisation of this two-member population: the run's own init
    # program, so bit for bit (a one-member population is another program, whose orthogonal
    # initialisation can round differently in the last bit: seen at optimisation level 2)
    population = runner.Population((0,), tuple(settings))
    initial = runner.init_program(CONFIG)(population.keys(), population.hparams())
    for x, y in zip(jax.tree.leaves(jax.tree.map(lambda x: x[1], result.final_state.params)),
                    jax.tree.leaves(jax.tree.map(lambda x: x[1], initial.params))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    rows = _rows(tmp_path / "div" / "metrics.jsonl")
    assert [r["update"] for r in rows if r["member"] == 0] == list(range(1, 9))
    bad = [r for r in rows if r["member"] == 1]
    assert len(bad) == 1 and bad[0]["update"] == 1 and bad[0]["diverged"] is True
    evals = _rows(tmp_path / "div" / "eval.jsonl")
    assert [r.get("diverged", False) for r in evals] == [False, True, False, True]
    summary = json.loads((tmp_path / "div" / "summary.json").read_text())
    assert [(d["member"], d["hp_learning_rate"], d["update"]) for d in summary["diverged"]] == [(1, 1e30, 1)]
    assert json.loads((tmp_path / "div" / "status.json").read_text())["status"] == "completed"
    # --on-nonfinite stop keeps the old behaviour: the whole run stops, nothing bad is saved
    stop = dataclasses.replace(OPTIONS, on_nonfinite="stop")
    with pytest.warns(UserWarning):
        stopped = runner.run(ppo.NAME, CONFIG, settings, [0], tmp_path / "stop", options=stop,
                             out=io.StringIO())
    assert stopped.status == runner.NON_FINITE and "--on-nonfinite stop" in stopped.message
    assert not (tmp_path / "stop" / "summary.json").exists()


def test_a_run_without_checkpoints_resumes_from_step_zero(reference, tmp_path):
    """A run killed before its first checkpoint, or whose checkpoints/ was deleted, resumes from
    its saved configuration at step 0 (the logs start over) and ends where an uninterrupted run
    does; a fresh start under the same name is also allowed (nothing trained would be lost)."""
    import shutil
    run_dir = tmp_path / "again"
    shutil.copytree(reference.run_dir, run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "summary.json").unlink()
    resumed = _train(run_dir, resume=True)
    assert resumed.status == runner.COMPLETED
    _assert_trees_equal(resumed.final_state, reference.final_state)
    assert _rows(run_dir / "metrics.jsonl") == _rows(reference.run_dir / "metrics.jsonl")
    fresh_dir = tmp_path / "fresh"
    (fresh_dir / "checkpoints" / "latest").mkdir(parents=True)
    shutil.copy(reference.run_dir / "config.json", fresh_dir / "config.json")
    (fresh_dir / "metrics.jsonl").write_text('{"update": 99}\n')  # left by the killed start
    assert _train(fresh_dir).status == runner.COMPLETED
    assert _rows(fresh_dir / "metrics.jsonl") == _rows(reference.run_dir / "metrics.jsonl")


def test_counters_do_not_wrap_past_2_to_the_31_env_steps(tmp_path):
    """env steps are counted on the host (Python integers): a run resumed at update 4,194,300 of
    512-step updates logs env steps past 2^31 exactly, and the update counter in the train state
    (int32, bounded by the 2^31-update limit of the config) goes on."""
    config = dataclasses.replace(CONFIG, num_envs=4, rollout_length=128,
                                 total_steps=(4_194_304 + 2) * 512)
    start = 4_194_300
    options = dataclasses.replace(OPTIONS, num_evals=1, eval_episodes=2, cache_episodes=0,
                                  tensorboard=False)
    run_dir = tmp_path / "long"
    population = runner.Population((0,), (HPARAMS,))
    state = jax.vmap(lambda k, h: ppo.init(config, h, k))(population.keys(), population.hparams())
    state = state.replace(update_step=state.update_step + start)
    checkpoints = Checkpoints(run_dir)
    checkpoints.save(start * 512, state, {"update": start, "train_seconds": 0.0, "last_eval": None})
    checkpoints.close()
    record = {"algorithm": "ppo", "config": config_to_dict(config),
              "hparams": hparams_to_dict(HPARAMS), "seeds": [0]}
    (run_dir / "config.json").write_text(json.dumps(record))
    result = runner.run(ppo.NAME, config, HPARAMS, [0], run_dir, options=options, resume=True,
                        out=io.StringIO())
    assert result.status == runner.COMPLETED
    steps = [r["env_steps"] for r in _rows(run_dir / "metrics.jsonl")]
    assert steps == [(start + k) * 512 for k in range(1, 7)] and steps[-1] > 2 ** 31
    assert int(result.final_state.update_step[0]) == 4_194_306
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps_per_seed"] == 4_194_306 * 512


def test_an_evaluation_program_that_cannot_fit_stops_the_run_before_its_first_evaluation(tmp_path, monkeypatch):
    """The evaluation program compiles beside the first chunks; refused (it cannot fit), it stops
    the run at the next chunk's end, not at the first evaluation (here the run's end), so the
    training before it is not spent for nothing."""
    from pgjax.config import ConfigError
    from pgjax.run import memory
    check = memory.check_compiled

    def refuse_evaluation(compiled, what, *args, **kwargs):
        if what == "the evaluation program":
            raise ConfigError("eval_episodes=2 is not allowed: the evaluation program (test)")
        return check(compiled, what, *args, **kwargs)

    monkeypatch.setattr(memory, "check_compiled", refuse_evaluation)
    config = dataclasses.replace(CONFIG, num_envs=2, rollout_length=4, minibatches=1, epochs=1,
                                 total_steps=1000 * 8)
    options = dataclasses.replace(OPTIONS, eval_episodes=2, cache_episodes=0, num_evals=1,
                                  chunk_updates=1)
    with pytest.raises(ConfigError, match="evaluation program"):
        runner.run(ppo.NAME, config, HPARAMS, SEEDS, tmp_path / "run", options=options,
                   out=io.StringIO())
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    trained = [json.loads(line)["update"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert status["status"] == "failed" and max(trained) < 1000, (status, max(trained))
