"""pgjax.report: IQM and bootstrap intervals against references; loading and reporting run dirs
written by hand."""

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from pgjax import report


# --------------------------------------------------------------------------- statistics

@pytest.mark.parametrize("n", [4, 8, 12, 100])
def test_iqm_equals_scipy_trim_mean_when_n_divisible_by_4(n):
    x = np.random.default_rng(n).standard_exponential((n, 3))
    np.testing.assert_allclose(report.iqm(x, axis=0), stats.trim_mean(x, 0.25, axis=0), rtol=1e-12)
    np.testing.assert_allclose(report.iqm(x.T, axis=1), stats.trim_mean(x, 0.25, axis=0), rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10])
def test_iqm_is_the_exact_middle_half_for_other_sizes(n):
    # Repeating every sample 4 times leaves the empirical distribution unchanged and makes the
    # count divisible by 4, so trim_mean then cuts exactly the outer quarters.
    x = np.random.default_rng(10 + n).normal(size=n) ** 3
    np.testing.assert_allclose(report.iqm(x), stats.trim_mean(np.repeat(x, 4), 0.25), rtol=1e-12)


def test_iqm_of_three_weights_the_middle_four_times_the_ends():
    assert report.iqm(np.array([9.0, 1.0, 2.0])) == pytest.approx((1.0 + 4 * 2.0 + 9.0) / 6)
    assert math.isnan(report.iqm(np.array([1.0, np.nan, 2.0, 3.0])))


def test_bootstrap_ci_of_a_large_sample_matches_the_normal_interval():
    x = np.random.default_rng(1).standard_exponential(2000) * 3.0
    low, high = report.bootstrap_ci(x, "mean")
    half = 1.959964 * x.std(ddof=1) / math.sqrt(len(x))
    assert low == pytest.approx(x.mean() - half, abs=0.05 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.05 * half)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    # 400 independent data sets of 40 draws, each a column; true mean and IQM of N(3, 2^2) are 3.
    x = np.random.default_rng(2).normal(3.0, 2.0, size=(40, 400))
    low, high = report.bootstrap_ci(x, "mean", num_resamples=1000)
    coverage = np.mean((low <= 3.0) & (3.0 <= high))
    assert 0.90 <= coverage <= 0.98, coverage
    narrow_low, narrow_high = report.bootstrap_ci(x, "mean", confidence=0.5, num_resamples=1000)
    assert 0.40 <= np.mean((narrow_low <= 3.0) & (3.0 <= narrow_high)) <= 0.60
    low, high = report.bootstrap_ci(x[:, :200], "iqm", num_resamples=500)
    assert 0.86 <= np.mean((low <= 3.0) & (3.0 <= high)) <= 0.99


def test_bootstrap_ci_is_reproducible_ignores_nan_and_is_degenerate_for_one_sample():
    x = np.array([[1.0, np.nan], [2.0, np.nan], [7.0, 5.0], [4.0, np.nan]])
    a = report.bootstrap_ci(x, "mean", seed=3)
    b = report.bootstrap_ci(x, "mean", seed=3)
    np.testing.assert_array_equal(a, b)
    assert 1.0 <= a[0][0] < a[1][0] <= 7.0
    assert (a[0][1], a[1][1]) == (5.0, 5.0)  # only one finite seed: every resample's mean is 5
    assert report.bootstrap_ci(np.array([4.0]), "iqm") == (4.0, 4.0)
    with pytest.raises(ValueError, match="confidence"):
        report.bootstrap_ci(x, confidence=95)


def test_forward_fill_and_moving_average_against_loops():
    x = np.array([[np.nan, 1.0, np.nan, np.nan, 4.0, np.nan], [2.0, np.nan, 3.0, 5.0, np.nan, 1.0]])
    filled = report.forward_fill(x)
    for row, out in zip(x, filled):
        last = np.nan
        for value, got in zip(row, out):
            last = value if np.isfinite(value) else last
            np.testing.assert_equal(got, last)
    smooth = report.moving_average(x, 3)
    for row, out in zip(x, smooth):
        for t in range(len(row)):
            window = row[max(0, t - 2):t + 1]
            expected = np.nanmean(window) if np.isfinite(window).any() else np.nan
            np.testing.assert_allclose(out[t], expected)


# --------------------------------------------------------------------------- loading

def _write_run(path, config=None, metrics=None, evals=None, summary=None, tail=""):
    path.mkdir(parents=True)
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics) + tail)
    if evals is not None:
        (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_loader_aligns_seeds_on_env_steps_with_nulls_and_no_eval_file(tmp_path):
    rows = [
        {"seed": 0, "env_steps": 10, "episode_return": None, "policy_loss": 0.5, "algorithm": "ppo"},
        {"seed": 1, "env_steps": 10, "episode_return": 3.0, "policy_loss": 0.25},
        {"seed": 0, "env_steps": 20, "episode_return": 4.0, "policy_loss": None},
        {"seed": 1, "env_steps": 20, "episode_return": 6.0},                      # key missing
        {"seed": 1, "env_steps": 30, "episode_return": 8.0, "policy_loss": 1.0},  # seed 0 lags
    ]
    run = report.load_run(_write_run(
        tmp_path / "r1", config={"algorithm": "ppo", "config": {"env_id": "CartPole-v1"},
                                 "seeds": [0, 1, 2], "steps_per_update": 10},
        metrics=rows, tail='{"seed": 0, "env_st'))  # a line cut short while the run was writing
    assert (run.name, run.algorithm, run.env_id, run.seeds) == ("r1", "ppo", "CartPole-v1", [0, 1, 2])
    np.testing.assert_array_equal(run.env_steps, [10, 20, 30])
    nan = np.nan
    np.testing.assert_array_equal(run.metrics["episode_return"],
                                  [[nan, 4.0, nan], [3.0, 6.0, 8.0], [nan, nan, nan]])
    np.testing.assert_array_equal(run.metrics["policy_loss"],
                                  [[0.5, nan, nan], [0.25, nan, 1.0], [nan, nan, nan]])
    assert "algorithm" not in run.metrics and "seed" not in run.metrics
    assert run.eval == {} and run.eval_env_steps.shape == (0,) and run.summary == {}
    assert run.skipped_lines == 1


def test_loader_keeps_repeated_env_steps_apart_and_dedupes_rewritten_updates(tmp_path):
    replay = [{"seed": 0, "env_steps": 8, "value_loss": v} for v in (1.0, 2.0)] + \
             [{"seed": 0, "env_steps": 16, "value_loss": 3.0}]
    run = report.load_run(_write_run(tmp_path / "replay", metrics=replay))
    np.testing.assert_array_equal(run.env_steps, [8, 8, 16])
    np.testing.assert_array_equal(run.metrics["value_loss"], [[1.0, 2.0, 3.0]])
    resumed = [{"seed": 0, "update": u, "env_steps": 8 * (u + 1), "entropy": float(u)} for u in range(3)]
    resumed += [{"seed": 0, "update": 2, "env_steps": 24, "entropy": 20.0},   # rewritten after resume
                {"seed": 0, "update": 3, "env_steps": 32, "entropy": 30.0}]
    run = report.load_run(_write_run(tmp_path / "resumed", metrics=resumed))
    np.testing.assert_array_equal(run.env_steps, [8, 16, 24, 32])
    np.testing.assert_array_equal(run.metrics["entropy"], [[0.0, 1.0, 20.0, 30.0]])
    assert "update" not in run.metrics


def test_loader_reads_eval_and_an_empty_directory(tmp_path):
    evals = [{"seed": 3, "env_steps": 100, "eval_return_mean": 1.5, "eval_return_std": None},
             {"seed": 3, "env_steps": 200, "eval_return_mean": 2.5, "eval_return_std": 0.5}]
    run = report.load_run(_write_run(tmp_path / "e", config={"seeds": [3]}, evals=evals))
    np.testing.assert_array_equal(run.eval_env_steps, [100, 200])
    np.testing.assert_array_equal(run.eval["eval_return_std"], [[np.nan, 0.5]])
    empty = report.load_run(_write_run(tmp_path / "empty"))
    assert (empty.seeds, empty.metrics, empty.algorithm) == ([], {}, "?")
    with pytest.raises(ValueError, match="does not exist"):
        report.load_run(tmp_path / "nope")


# --------------------------------------------------------------------------- report

def _synthetic_runs(tmp_path):
    """Run A: 4 seeds, final returns in summary.json. Run B: 3 seeds, final returns only in
    eval.jsonl (its summary lacks them)."""
    def curve(seeds, offset):
        return [{"seed": s, "env_steps": 64 * (k + 1), "episode_return": offset + k + s if k else None,
                 "policy_loss": 1.0 / (k + 1)} for k in range(6) for s in seeds]
    a = _write_run(tmp_path / "runs" / "ppo-a",
                   config={"algorithm": "ppo", "config": {"env_id": "CartPole-v1"}, "seeds": [0, 1, 2, 3]},
                   metrics=curve(range(4), 10),
                   summary={"algorithm": "ppo", "env_id": "CartPole-v1", "seeds": [0, 1, 2, 3],
                            "eval_return_per_seed": [0.0, 100.0, 10.0, 20.0], "eval_episodes": 200,
                            "steps_per_second": 12345.4, "compile_seconds": 6.71})
    b = _write_run(tmp_path / "runs" / "a2c-b",
                   config={"algorithm": "a2c", "config": {"env_id": "Acrobot-v1"}, "seeds": [5, 6, 7]},
                   metrics=curve([5, 6, 7], -20),
                   evals=[{"seed": s, "env_steps": e, "eval_return_mean": v}
                          for e, values in ((192, (0.0, 0.0, 0.0)), (384, (9.0, 1.0, 2.0)))
                          for s, v in zip((5, 6, 7), values)],
                   summary={"steps_per_second": 999.0, "compile_seconds": 1.04})
    return a, b


def _table_rows(markdown, with_status=False):
    """Cells of each table row by run label (without the status column unless asked)."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    cells = ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    return {c[0]: (c if with_status else c[:1] + c[2:]) for c in cells}


def test_report_writes_figures_and_a_table_of_hand_computed_numbers(tmp_path):
    a, b = _synthetic_runs(tmp_path)
    out = tmp_path / "report"
    markdown = report.report([a, b], out)
    assert (out / "report.md").read_text() == markdown
    for name in ("episode_return", "eval_return_mean", "policy_loss"):
        assert (out / f"{name}.png").stat().st_size > 0
        assert f"({name}.png)" in markdown
    # each run's own curves go under the report's folder; the run folders are only read
    assert {p.name for p in (out / a.name).iterdir()} == {"episode_return.png", "policy_loss.png"}
    assert (out / b.name / "eval_return_mean.png").exists()
    assert not (a / "plots").exists() and not (b / "plots").exists()

    rows = _table_rows(markdown)
    # runs without status.json (older pgjax): completed when summary.json is there
    assert [_table_rows(markdown, True)[k][1] for k in ("ppo-a", "a2c-b")] == ["completed", "completed"]
    # A: returns 0, 10, 20, 100 -> mean 32.5, std (ddof 0) sqrt(1568.75), IQM mean(10, 20) = 15
    assert rows["ppo-a"][1:4] == ["ppo", "CartPole-v1", "4"]
    assert rows["ppo-a"][4] == f"32.50 ± {math.sqrt(1568.75):.2f}"
    assert rows["ppo-a"][6] == "15.00"
    assert rows["ppo-a"][8:] == ["seeds", "12,345", "6.7"]
    # B: last evaluation 9, 1, 2 -> mean 4, std sqrt(38/3), IQM (1 + 4·2 + 9)/6 = 3
    assert rows["a2c-b"][1:4] == ["a2c", "Acrobot-v1", "3"]
    assert rows["a2c-b"][4] == f"4.00 ± {math.sqrt(38 / 3):.2f}"
    assert rows["a2c-b"][6] == "3.00"
    assert rows["a2c-b"][8:] == ["seeds", "999", "1.0"]
    assert "a2c-b: final evaluation from eval.jsonl (last evaluation)" in markdown
    # the intervals are the bootstrap over seeds, inside the range of the seeds' returns
    low, high = (float(v) for v in re.findall(r"-?\d+\.\d+", rows["ppo-a"][5]))
    expected = report.bootstrap_ci(np.array([0.0, 100.0, 10.0, 20.0]))
    assert (low, high) == (round(float(expected[0]), 2), round(float(expected[1]), 2))
    assert 0.0 <= low < 32.5 < high <= 100.0


def test_final_eval_pools_every_episode_when_the_summary_has_them(tmp_path):
    episodes = [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 70.0]]
    run = report.load_run(_write_run(tmp_path / "ep", summary={
        "eval_return_per_seed": [1.5, 21.25], "eval_episode_returns": episodes}))
    final = report.final_eval(run)
    assert final.iqm_over == "episodes"
    assert final.iqm == pytest.approx(stats.trim_mean(np.ravel(episodes), 0.25))
    assert final.mean == pytest.approx(11.375)


def test_population_run_keeps_members_apart_and_reports_each_setting(tmp_path):
    # the runner's population: settings × seeds, rows labelled by member index and swept hp_*
    members = [{"seed": s, "member": i, "hp_learning_rate": lr}
               for i, (lr, s) in enumerate((lr, s) for lr in (0.001, 0.01) for s in (0, 1))]
    rows = [{**m, "algorithm": "ppo", "update": u, "env_steps": 32 * u,
             "episode_return": 10 * m["member"] + u} for u in (1, 2, 3) for m in members]
    evals = [{**m, "algorithm": "ppo", "update": 3, "env_steps": 96, "greedy": True, "eval_episodes": 10,
              "eval_return_mean": 0.5} for m in members]
    run = report.load_run(_write_run(
        tmp_path / "pop", config={"algorithm": "ppo", "config": {"env_id": "Pendulum-v1"}, "seeds": [0, 1],
                                  "members": [{**m, "algorithm": "ppo"} for m in members]},
        metrics=rows, evals=evals,
        summary={"members": members, "eval_return_per_seed": [1.0, 3.0, 10.0, 30.0]}))
    assert run.seeds == [0, 1, 0, 1]
    np.testing.assert_array_equal(run.metrics["episode_return"][2], [21.0, 22.0, 23.0])
    assert set(run.metrics) == {"episode_return"}
    assert set(run.eval) == {"eval_return_mean", "eval_episodes"}
    groups = report.settings(run)
    assert [(g.label, g.rows) for g in groups] == [("learning_rate=0.001", (0, 1)),
                                                   ("learning_rate=0.01", (2, 3))]
    table = _table_rows(report.report_table(report.report_entries([run], ["pop"])))
    assert table["pop [learning_rate=0.001]"][3:5] == ["2", "2.00 ± 1.00"]
    assert table["pop [learning_rate=0.01]"][3:5] == ["2", "20.00 ± 10.00"]
