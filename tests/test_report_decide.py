"""Deciding a sweep: ranking, the paired comparison with the best, the sensitivity plots' axes,
the best setting as a settings file and the closing table of ``pgjax train``, on run folders
written by hand (no training)."""

import json
import math

import numpy as np
import pytest

from pgjax import cli, report
from pgjax.config import ConfigError
from pgjax.report import best_config, figures, sweep
from pgjax.run.summary import setting_summaries, summary_table

SEEDS = (0, 1, 2, 3)
RATES = (1e-4, 1e-3, 1e-2, 1e-1)
# final evaluation return per seed of each learning rate; 1e-3 is best; 1e-2 differs from it by
# -1, +1, -1, +0.5 (indistinguishable); 1e-1 is 3 below it on every seed (distinguishable only
# paired: its own interval overlaps the best's); 1e-4 is far below
FINAL = {1e-4: (10.0, 20.0, 30.0, 40.0), 1e-3: (60.0, 75.0, 90.0, 115.0),
         1e-2: (59.0, 76.0, 89.0, 115.5), 1e-1: (57.0, 72.0, 87.0, 112.0)}
# evaluation curve per member: (EARLY[lr][0] at 100 steps, EARLY[lr][1] at 200, final at 400)
EVAL_STEPS = (100, 200, 400)
EARLY = {1e-4: (50.0, 50.0), 1e-3: (0.0, 40.0), 1e-2: (0.0, 40.0), 1e-1: (10.0, 80.0)}


def _hand_auc(first, second, final):
    """Trapezoids over 100 -> 200 -> 400 env steps, divided by the 300-step span."""
    return (100 * (first + second) / 2 + 200 * (second + final) / 2) / 300


def _write(path, name, payload):
    text = (payload if isinstance(payload, str) else
            "".join(json.dumps(r) + "\n" for r in payload) if isinstance(payload, list)
            else json.dumps(payload))
    (path / name).write_text(text)


@pytest.fixture(scope="module")
def record():
    """config.json as the runner writes it (RunSpec.record() plus members) for a 4 × 4 sweep."""
    from pgjax.run import spec
    run = spec.fresh(algorithm="ppo", sweeps=["learning_rate=1e-4,1e-3,1e-2,1e-1"],
                     seed_count=len(SEEDS), assignments=["num_envs=4", "rollout_length=8",
                                                         "hidden_sizes=8", "total_steps=400"])
    members = [{"algorithm": "ppo", "seed": s, "member": i, "hp_learning_rate": lr}
               for i, (lr, s) in enumerate((lr, s) for lr in RATES for s in SEEDS)]
    return {**run.record(), "members": members, "steps_per_update": 32, "num_updates": 12}


def _sweep_folder(path, record, final=FINAL, early=EARLY, diverged=()):
    path.mkdir(parents=True)
    members = record["members"]
    _write(path, "config.json", record)
    rows = []
    for step_index, steps in enumerate(EVAL_STEPS):
        for m in members:
            lr, seed = m["hp_learning_rate"], m["seed"]
            value = early[lr][step_index] if step_index < 2 else final[lr][SEEDS.index(seed)]
            rows.append({**m, "update": step_index + 1, "env_steps": steps, "eval_return_mean": value})
    _write(path, "eval.jsonl", rows)
    _write(path, "summary.json", {
        "algorithm": "ppo", "env_id": "CartPole-v1", "seeds": list(SEEDS), "members": members,
        "eval_return_per_seed": [final[m["hp_learning_rate"]][SEEDS.index(m["seed"])] for m in members],
        "diverged": list(diverged), "eval_episodes": 10})
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory, record):
    return _sweep_folder(tmp_path_factory.mktemp("runs") / "sweep", record)


def _label(lr):
    return f"learning_rate={lr:g}"


# --------------------------------------------------------------------------- ranking

def test_ranking_by_final_return_and_by_area_against_hand_computation(folder):
    scores = sweep.score_settings(report.load_run(folder))
    final = sweep.rank(scores, "final")
    assert [c.score.label for c in final] == [_label(lr) for lr in (1e-3, 1e-2, 1e-1, 1e-4)]
    assert [c.estimate.mean for c in final] == [85.0, 84.875, 82.0, 25.0]
    for c in final:  # each interval is the percentile bootstrap over the setting's four seeds
        values = FINAL[c.score.values["learning_rate"]]
        assert c.estimate.ci == tuple(report.bootstrap_ci(np.array(values)))
        assert min(values) <= c.estimate.ci[0] < c.estimate.mean < c.estimate.ci[1] <= max(values)

    area = sweep.rank(scores, "auc")
    expected = {lr: np.mean([_hand_auc(*EARLY[lr], f) for f in FINAL[lr]]) for lr in RATES}
    assert [c.score.label for c in area] == [_label(lr) for lr in (1e-1, 1e-3, 1e-2, 1e-4)]
    for c in area:
        assert c.estimate.mean == pytest.approx(expected[c.score.values["learning_rate"]], rel=1e-12)
    # 1e-3 vs 1e-1 by area: (50·40 + 100·(40 + f) − 50·90 − 100·(80 + f − 3)) / 300 on every seed
    second = area[1]
    assert second.difference.n == 4
    assert second.difference.mean == pytest.approx(-6200 / 300, rel=1e-12)
    assert second.difference.ci == pytest.approx((-6200 / 300, -6200 / 300), rel=1e-12)
    assert second.verdict == sweep.WORSE


def test_paired_comparison_finds_the_indistinguishable_set(folder):
    final = sweep.rank(sweep.score_settings(report.load_run(folder)), "final")
    verdicts = {c.score.label: c.verdict for c in final}
    assert verdicts == {_label(1e-3): sweep.BEST, _label(1e-2): sweep.INDISTINGUISHABLE,
                        _label(1e-1): sweep.WORSE, _label(1e-4): sweep.WORSE}
    assert [c.score.label for c in final if c.indistinguishable] == [_label(1e-3), _label(1e-2)]
    third = final[2]  # 3 below the best on every seed: the paired interval is exactly -3
    assert (third.difference.mean, third.difference.ci) == (-3.0, (-3.0, -3.0))
    # while its own interval over seeds overlaps the best's: only pairing tells them apart
    assert third.estimate.ci[1] > final[0].estimate.ci[0]
    table = report.ranking_table(final, "final", per_seed=True).splitlines()
    assert table[2].endswith("| best | 0/4 | s0: 60.00, s1: 75.00, s2: 90.00, s3: 115.00 |")
    assert table[4].startswith("| 3 | learning_rate=0.1 | 4 | 82.00 |")
    assert "| 4 | -3.00 | [-3.00, -3.00] | worse than the best |" in table[4]
    assert final[1].difference.mean == pytest.approx(-0.125)
    low, high = final[1].difference.ci
    assert -1.0 <= low < 0.0 < high <= 1.0


def test_paired_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    seeds = [11, 3, 7, 0, 42, 8, 5]
    best = {s: float(v) for s, v in zip(seeds, rng.normal(100.0, 30.0, len(seeds)))}
    other = {s: best[s] + float(d) for s, d in zip(seeds, rng.normal(-4.0, 6.0, len(seeds)))}
    other_shuffled = {s: other[s] for s in reversed(seeds)}
    got = report.paired_difference(best, other_shuffled)

    differences = [other[s] - best[s] for s in seeds]  # in the reference's seed order
    draws = np.random.default_rng(report.BOOTSTRAP_SEED).integers(
        0, len(seeds), size=(report.NUM_RESAMPLES, len(seeds)))
    means = []
    for row in draws:
        total = 0.0
        for j in row:
            total += differences[j]
        means.append(total / len(row))
    assert got.n == len(seeds)
    assert got.mean == pytest.approx(sum(differences) / len(differences), rel=1e-12)
    assert got.ci == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=1e-12)

    # only the seeds both have pair up; a NaN seed is left out
    partial = report.paired_difference(best, {11: best[11] + 1.0, 3: best[3] + 2.0, 7: math.nan, 99: 0.0})
    assert (partial.n, partial.mean) == (2, 1.5)
    assert report.paired_difference(best, {99: 1.0}).n == 0


def test_unshared_seeds_and_single_seeds_are_said_not_pretended(tmp_path, record):
    one_seed = {**record, "seeds": [0], "members": [m for m in record["members"] if m["seed"] == 0]}
    path = tmp_path / "one"
    path.mkdir()
    _write(path, "config.json", one_seed)
    _write(path, "summary.json", {"members": one_seed["members"],
                                  "eval_return_per_seed": [1.0, 4.0, 3.0, 2.0]})
    run = report.load_run(path)
    ranked = sweep.rank(sweep.score_settings(run), "final")
    assert [c.verdict for c in ranked] == [sweep.BEST] + [sweep.ONE_PAIR] * 3
    assert all(math.isnan(v) for c in ranked for v in c.estimate.ci)
    text = report.ranking_markdown("one", run)
    assert "with one seed per setting there is no interval: the settings cannot be told apart" in text

    # settings trained with different seeds: nothing to pair
    moved = [{**m, "seed": m["seed"] + 10 * (m["member"] // 4)} for m in record["members"]]
    path = tmp_path / "unshared"
    path.mkdir()
    _write(path, "config.json", {**record, "members": moved})
    _write(path, "summary.json", {"members": moved, "eval_return_per_seed":
                                  [FINAL[m["hp_learning_rate"]][m["seed"] % 10] for m in moved]})
    ranked = sweep.rank(sweep.score_settings(report.load_run(path)), "final")
    assert [c.verdict for c in ranked[1:]] == [sweep.NOT_PAIRED] * 3
    assert "Not decided: learning_rate=0.01 (not compared: no seed in common with the best)" in \
        report.ranking_markdown("unshared", report.load_run(path))


# --------------------------------------------------------------------------- axes and figures

@pytest.mark.parametrize("values, spacing", [
    ((1e-4, 1e-3, 1e-2, 1e-1), "log"), ((1e-3, 3e-3, 1e-2, 3e-2), "log"), ((1, 2, 4, 8, 16), "log"),
    ((0.1, 0.2, 0.3, 0.4), "linear"), ((0.9, 0.95, 0.99), "linear"), ((0.0, 1e-3, 1e-2), "linear"),
    ((-1e-2, 1e-2, 1e-1), "linear"), ((1e-3, 3e-3), "linear"), ((1e-4, 1e-2), "log"), ((5.0,), "linear"),
])
def test_log_or_linear_axis_from_the_spacing_of_the_values(values, spacing):
    assert sweep.spacing_of(values) == spacing


def test_sweep_space_in_config_json_overrides_and_is_checked(tmp_path, record, folder):
    run = report.load_run(folder)
    assert sweep.axis_scales(run) == {"learning_rate": "log"}
    figure = figures.sensitivity_figure(run, "learning_rate", "log")
    (ax,) = figure.axes
    assert ax.get_xscale() == "log"
    line = ax.lines[0]  # the means, in increasing order of the swept value
    np.testing.assert_array_equal(line.get_xdata(), RATES)
    np.testing.assert_array_equal(line.get_ydata(), [np.mean(FINAL[lr]) for lr in RATES])

    stated = _sweep_folder(tmp_path / "stated", {**record, "sweep_space": {"learning_rate": "linear"}})
    assert sweep.axis_scales(report.load_run(stated)) == {"learning_rate": "linear"}
    bad = _sweep_folder(tmp_path / "bad", {**record, "sweep_space": {"learning_rate": "cubic"}})
    with pytest.raises(ConfigError, match=r"sweep_space.learning_rate='cubic' is not allowed: "
                                          r"\"log\" or \"linear\""):
        report.report([bad], tmp_path / "bad-out")
    assert not (tmp_path / "bad-out").exists()


def test_sensitivity_lines_hold_other_keys_or_average_them(tmp_path, record):
    # two swept keys: learning_rate × clip_eps (2 × 2), seeds 0 and 1
    members = [{"seed": s, "member": i, "hp_learning_rate": lr, "hp_clip_eps": clip}
               for i, (lr, clip, s) in enumerate((lr, c, s) for lr in (1e-3, 1e-2)
                                                 for c in (0.1, 0.2) for s in (0, 1))]
    returns = [1.0, 3.0, 5.0, 7.0, 10.0, 30.0, 50.0, 70.0]
    path = tmp_path / "two"
    path.mkdir()
    _write(path, "config.json", {**record, "seeds": [0, 1], "members": members})
    _write(path, "summary.json", {"members": members, "eval_return_per_seed": returns})
    run = report.load_run(path)
    held = figures.sensitivity_lines(run, "learning_rate")
    assert [label for label, _ in held] == ["clip_eps=0.1", "clip_eps=0.2"]
    assert [(x, list(v)) for x, v in held[1][1]] == [(1e-3, [5.0, 7.0]), (1e-2, [50.0, 70.0])]
    pooled = figures.sensitivity_lines(run, "learning_rate", max_lines=1)
    assert [label for label, _ in pooled] == ["mean over the other swept values (clip_eps)"]
    # per seed, the mean over clip_eps: seed 0 at 1e-3 is (1 + 5) / 2
    assert [(x, list(v)) for x, v in pooled[0][1]] == [(1e-3, [3.0, 5.0]), (1e-2, [30.0, 50.0])]


def _boxes(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(figure).draw()
    return figure.canvas.get_renderer()


def test_curve_figure_has_a_panel_per_environment_and_its_legend_outside_the_data():
    values = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 5.0]])
    by_env = {"CartPole-v1": [("ppo-a", [10, 20, 30], values)],
              "Acrobot-v1": [("a2c-b", [10, 20, 30], -values)]}
    figure = figures.curve_figure(by_env, "evaluation return", "a long title " * 12)
    renderer = _boxes(figure)
    assert [ax.get_title() for ax in figure.axes] == ["CartPole-v1", "Acrobot-v1"]
    assert [ax.lines[0].get_label() for ax in figure.axes] == ["ppo-a", "a2c-b"]
    (legend,) = figure.legends
    legend_box = legend.get_window_extent(renderer)
    for ax in figure.axes:
        assert not legend_box.overlaps(ax.get_window_extent(renderer))
    figure_box = figure.bbox
    title_box = figure._suptitle.get_window_extent(renderer)
    assert figure_box.x0 <= title_box.x0 and title_box.x1 <= figure_box.x1
    assert title_box.y1 <= figure_box.y1


def test_learning_curves_only_for_the_top_settings(folder):
    entries, total = figures.curve_entries(report.load_run(folder), "sweep", 2)
    assert total == 4
    assert [label for label, _, _ in entries] == ["#1 sweep [learning_rate=0.001]",
                                                  "#2 sweep [learning_rate=0.01]"]


# --------------------------------------------------------------------------- best config

@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_best_config_round_trips_through_pgjax_train_config(tmp_path, folder, record, suffix):
    from pgjax.config import config_to_dict, hparams_to_dict
    from pgjax.run import spec, spec_file
    path, label = best_config.write_best_config(report.load_run(folder), tmp_path / f"best{suffix}")
    assert label == _label(1e-3)
    rerun = spec.fresh(file=spec_file.load(path))
    (hparams,) = rerun.settings
    best = next(h for h in record["hparams_settings"] if h["learning_rate"] == 1e-3)
    assert hparams_to_dict(hparams) == best
    assert config_to_dict(rerun.config) == config_to_dict(spec.load(folder).config)
    assert rerun.seeds == SEEDS and rerun.algorithm == "ppo"
    assert rerun.options.eval_episodes == record["options"]["eval_episodes"]


def test_toml_writer_against_tomllib():
    import tomllib
    table = {"a": 1, "b": 1e-5, "c": "x \"q\" \\ é\x7f\n", "d": [1, [2.5, "y"]], "e": True,
             "f": None, "g": math.inf, "odd key": 3, "t": {"u": {"v": -0.0}, "w": []}}
    parsed = tomllib.loads(best_config.to_toml(table))
    assert parsed == {k: v for k, v in table.items() if k != "f"}


# --------------------------------------------------------------------------- closing table

def _summary(returns, members, diverged=()):
    return {"algorithm": "ppo", "env_id": "CartPole-v1", "seeds": [0, 1], "members": members,
            "eval_return_per_seed": np.array(returns), "eval_return_mean": float(np.nanmean(returns)),
            "eval_return_std": float(np.nanstd(returns)), "eval_episodes": 5,
            "env_steps_per_seed": 2048, "steps_per_second": 1000.0, "compile_seconds": 1.0,
            "compile_seconds_eval": 0.5, "wall_seconds": 3.0, "device": "cpu:0",
            "diverged": list(diverged)}


def _table(text):
    lines = text.split("\n\n")[-1].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]


def test_closing_table_has_one_row_per_setting_best_first():
    members = [{"seed": s, "member": 2 * k + s, "hp_learning_rate": lr, "hp_clip_eps": 0.2}
               for k, lr in enumerate((1e-3, 1e-2, 1e-1)) for s in (0, 1)]
    diverged = [{"member": 5, "seed": 1, "update": 3, "metric": "value_loss",
                 "hp_learning_rate": 0.1, "hp_clip_eps": 0.2}]
    summary = _summary([10.0, 30.0, 100.0, 120.0, 40.0, float("nan")], members, diverged)
    rows = _table(summary_table(summary))
    # two seeds: resampled means are a, (a+b)/2 or b, so the 95% interval is [min, max]
    assert rows == [
        ["rank", "learning_rate", "clip_eps", "seeds", "eval return (mean ± std)", "95% CI of mean",
         "diverged"],
        ["1", "0.01", "0.2", "2", "110.0 ± 10.0", "[100.0, 120.0]", "0/2"],
        ["2", "0.1", "0.2", "1 of 2", "40.0 ± 0.0", "—", "1/2"],
        ["3", "0.001", "0.2", "2", "20.0 ± 10.0", "[10.0, 30.0]", "0/2"],
    ]
    assert "110.0" not in summary_table(summary).split("\n\n")[0]  # no pooled mean over settings
    asked = _table(summary_table(summary, per_seed=True))
    assert [r[-1] for r in asked] == ["per seed (seed: return)", "0: 100.0, 1: 120.0",
                                      "0: 40.0, 1: nan", "0: 10.0, 1: 30.0"]
    assert [s.values for s in setting_summaries(summary)][0] == {"learning_rate": 0.01, "clip_eps": 0.2}


def test_closing_table_of_one_setting_shows_its_seeds_and_interval():
    text = summary_table(_summary([10.0, 30.0], [{"seed": 0, "member": 0}, {"seed": 1, "member": 1}]))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()[3:]}
    assert rows["eval return (5 episodes/seed)"] == "20.0 ± 10.0  [10.0, 30.0]"
    assert rows["95% CI of mean (bootstrap over seeds)"] == "[10.0, 30.0]"
    assert "rank" not in text


# --------------------------------------------------------------------------- command line

def test_pgjax_report_ranks_writes_the_best_config_and_refuses_bad_flags(tmp_path, folder, capsys):
    out, best = tmp_path / "out", tmp_path / "best.toml"
    assert cli.main(["report", str(folder), "--out", str(out), "--top", "2",
                     "--best-config", str(best)]) == 0
    printed = capsys.readouterr().out
    markdown = (out / "report.md").read_text()
    assert markdown in printed
    section = markdown.split("### By final evaluation return")[1].split("###")[0]
    ranks = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ")][1:]
    assert ranks == [["| 1", _label(1e-3)], ["| 2", _label(1e-2)], ["| 3", _label(1e-1)],
                     ["| 4", _label(1e-4)]]
    assert "Indistinguishable from it (the 95% CI of the paired difference contains 0): " \
           f"{_label(1e-2)}." in section
    assert (out / "sensitivity_learning_rate.png").stat().st_size > 0
    assert "![sensitivity_learning_rate](sensitivity_learning_rate.png)" in markdown
    assert f"wrote the best setting of run sweep ({_label(1e-3)}) to {best}" in printed
    assert "learning_rate = 0.001\n" in best.read_text()
    assert "only 4 seeds: a percentile-bootstrap interval" in markdown

    for argv, message in (
            (["--top", "0"], "pgjax: error: --top=0 is not allowed: a positive integer"),
            (["--best-config", str(tmp_path / "b.yaml")],
             f"pgjax: error: --best-config='{tmp_path / 'b.yaml'}' is not allowed: a .toml or .json file"),
            ([str(folder), "--best-config", str(tmp_path / "c.json")],
             "is not allowed: with exactly one run folder (got 2)")):
        assert cli.main(["report", str(folder), *argv, "--out", str(tmp_path / "refused")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "refused").exists() and not (tmp_path / "c.json").exists()
