"""Every view of a sweep per setting: TensorBoard folders named by the swept values with training
and evaluation curves and HParams sessions, read back from the event files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from pgjax.run.loggers import ChunkRecord, TensorBoard


def _events(folder: Path) -> list:
    """Every Event proto of the TFRecord files in ``folder`` (length, crc, Event, crc)."""
    from tensorboardX.proto import event_pb2
    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            found.append(event_pb2.Event.FromString(data[offset + 12: offset + 12 + length]))
            offset += 12 + length + 4
    return found


def _scalars(folder: Path, tag: str) -> dict[int, float]:
    return {e.step: v.simple_value for e in _events(folder) for v in e.summary.value if v.tag == tag}


def _session_values(folder: Path) -> dict:
    """The hyperparameters of the folder's HParams session start (plugin data, decoded)."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    for event in _events(folder):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                return {k: (v.number_value if v.HasField("number_value") else v.string_value)
                        for k, v in data.session_start_info.hparams.items()}
    return {}


def _record(returns: np.ndarray, steps: np.ndarray) -> ChunkRecord:
    members = returns.shape[0]
    return ChunkRecord(metrics={"episode_return": returns, "env_steps": steps},
                       labels=[{"member": m} for m in range(members)], updates=np.arange(1, steps.shape[1] + 1),
                       live=np.ones_like(returns, bool))


NAMES = ["learning_rate=0.001,clip_eps=0.1", "learning_rate=0.003,clip_eps=0.1"]
VALUES = [{"learning_rate": 0.001, "clip_eps": 0.1}, {"learning_rate": 0.003, "clip_eps": 0.1}]
GROUPS = [[0, 1, 2], [3, 4, 5]]
SEEDS = [0, 1, 2, 0, 1, 2]


def test_a_large_population_gets_a_folder_per_setting_with_seed_statistics(tmp_path):
    sink = TensorBoard(tmp_path, SEEDS, groups=GROUPS, max_writers=4, setting_names=NAMES,
                       setting_values=VALUES)
    returns = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0], [10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    sink.chunk(_record(returns, np.tile([64, 128], (6, 1))))
    sink.evaluation([{"eval_return_mean": r, "eval_return_std": 0.0, "eval_length_mean": 9.0}
                     for r in (1.0, 2.0, 6.0, 7.0, 8.0, 9.0)], 128)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
    first = tmp_path / NAMES[0]
    # hand computation: seeds of setting 0 at step 128 are 2, NaN (no episode), 6
    assert _scalars(first, "train/episode_return") == {64: 3.0, 128: 4.0}
    assert _scalars(first, "train/episode_return/min") == {64: 1.0, 128: 2.0}
    assert _scalars(first, "train/episode_return/max") == {64: 5.0, 128: 6.0}
    assert _scalars(first, "eval/return_mean") == {128: 3.0}
    assert _scalars(tmp_path / NAMES[1], "eval/return_mean/max") == {128: 9.0}
    assert _session_values(first) == {"learning_rate": 0.001, "clip_eps": 0.1}


def test_a_small_sweep_gets_a_folder_per_member_under_its_setting(tmp_path):
    sink = TensorBoard(tmp_path, SEEDS, groups=GROUPS, max_writers=16, setting_names=NAMES,
                       setting_values=VALUES)
    sink.evaluation([{"eval_return_mean": float(r), "eval_return_std": 0.0, "eval_length_mean": 9.0}
                     for r in range(6)], 256)
    sink.close()
    folders = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*") if p.is_dir())
    assert folders == [f"{name}/seed{s}" for name in NAMES for s in (0, 1, 2)]
    assert _scalars(tmp_path / NAMES[1] / "seed2", "eval/return_mean") == {256: 5.0}
    assert _session_values(tmp_path / NAMES[1] / "seed2") == {"learning_rate": 0.003, "clip_eps": 0.1,
                                                              "seed": 2.0}
    ends = [v.tag for e in _events(tmp_path / NAMES[0] / "seed0") for v in e.summary.value]
    assert ends.count("_hparams_/session_end_info") == 1 and ends.count("_hparams_/experiment") == 1


def test_wandb_gets_a_run_per_setting_grouped_under_the_study(tmp_path, monkeypatch):
    """A stand-in ``wandb`` module records what pgjax asks of it (the package is optional)."""
    import sys
    import types

    from pgjax.run.loggers import Wandb

    class FakeRun:
        def __init__(self, **kwargs):
            self.init, self.logged, self.finished = kwargs, [], False

        def log(self, values, step):
            self.logged.append((step, values))

        def finish(self):
            self.finished = True

    made = []
    fake = types.SimpleNamespace(init=lambda **kw: made.append(FakeRun(**kw)) or made[-1])
    monkeypatch.setitem(sys.modules, "wandb", fake)
    sink = Wandb("proj", "study", {"algorithm": "ppo"}, tmp_path, GROUPS, NAMES, VALUES)
    returns = np.array([[1.0], [3.0], [np.nan], [10.0], [20.0], [60.0]])
    sink.chunk(_record(returns, np.full((6, 1), 64)))
    sink.evaluation([{"eval_return_mean": r, "eval_return_std": 0.0, "eval_length_mean": 9.0}
                     for r in (1.0, 2.0, 6.0, 7.0, 8.0, 9.0)], 128)
    sink.close()
    assert [r.init["group"] for r in made] == ["study", "study"]
    assert [r.init["name"] for r in made] == [f"study/{n}" for n in NAMES]
    assert made[1].init["config"] == {"algorithm": "ppo", "setting": 1, **VALUES[1]}
    assert made[0].logged[0] == (64, {"train/episode_return": 2.0})  # mean of 1, 3 (no episode: NaN)
    assert made[1].logged[1] == (128, {"eval/return_mean": 8.0, "eval/return_mean/min": 7.0,
                                       "eval/return_mean/max": 9.0, "eval/return_std": 0.0,
                                       "eval/return_std/min": 0.0, "eval/return_std/max": 0.0,
                                       "eval/length_mean": 9.0, "eval/length_mean/min": 9.0,
                                       "eval/length_mean/max": 9.0})
    assert all(r.finished for r in made)


def test_wandb_runs_of_a_static_studys_programs_are_distinct_runs_of_the_study(tmp_path, monkeypatch):
    """Each program of a static sweep (pgjax.run.programs) logs its settings as runs of the study:
    grouped under the study's name, named and identified by program and setting, never one W&B run
    for two programs (a program of one setting included)."""
    import sys
    import types

    from pgjax.run.loggers import Wandb
    made = []
    fake = types.SimpleNamespace(init=lambda **kw: made.append(kw) or types.SimpleNamespace(
        log=lambda *a, **k: None, finish=lambda: None))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    for program in ("num_envs=4", "num_envs=16"):
        Wandb("proj", "study", {}, tmp_path, [[0, 1]], [f"{program},setting0"], [{"num_envs": 4}],
              program=program).close()
    assert [m["group"] for m in made] == ["study", "study"]
    assert [m["name"] for m in made] == ["study/num_envs=4,setting0", "study/num_envs=16,setting0"]
    assert len({m["id"] for m in made}) == 2 and all("=" not in m["id"] for m in made)
