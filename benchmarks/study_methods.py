"""Successive halving and population-based training against random search, at one budget of env
steps, over several independent studies.

    python -m benchmarks.study_methods [--protocol narrow|wide|late|short] [--methods ...] [--quick] [--table-only]

For each environment and each study k (its sweep seed), the studies of PPO draw their settings
from one search space (learning rate log-uniform, entropy coefficient uniform, GAE λ uniform) and
get the same cap on total env steps, B = 8 members × T env steps:

- **random search**: 8 settings drawn (Bergstra & Bengio 2012), each trained for T, one program;
- **PBT** (Jaderberg et al. 2017): 8 members from the same 8 draws, a round after every
  evaluation but the last (the bottom quarter copies the top quarter and perturbs);
- **successive halving** (Jamieson & Talwalkar 2016): 24 settings drawn, η = 3, 3 rungs (ends
  T/9, T/3, T): 6.4 T env steps in all, so under the cap;
- **random search of halving's size** (``random-24``): the same 24 draws as halving, each trained
  for T in one program (24 T env steps, over the cap): what halving's pruning saves against
  training every setting it drew (the baseline of Li et al. 2018, "Hyperband").

Every member has one seed (the study's sweep seed picks the draws, member seeds are 0). "Steps to
target" is the study's total env steps spent (all members, all rungs) at the first evaluation
where some member's mean evaluation return reaches the target; a study that never reaches it
counts as B (censored, marked ">"). Evaluations: 10 (protocol "narrow") or 20 ("wide") spread
over T, 20 greedy episodes each. Two later protocols, "late" and "short", change only Acrobot's
target and T, for the reasons stated beside :data:`PROTOCOLS`, each on studies not seen before.
Writes ``benchmarks/results/study_methods_<protocol>.json`` and
rewrites ``study_methods.md`` from every protocol's JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_table import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
ENVS = {  # env: (T env steps per member, target returns: an easy one and a hard one)
    "Acrobot-v1": (100_000, (-100.0, -85.0)),
    "Breakout-MinAtar": (250_000, (8.0, 15.0)),
}
# Two protocols, each stated before it was measured: "narrow" (a space where most draws learn) first;
# "wide" after "narrow" showed no gain, to give pruning what it is for: a space where most draws fail
# (learning rates from 1e-6 to 1e-1), a finer evaluation schedule (20 per T) and 5 studies.
PROTOCOLS = {
    "narrow": {"space": ["learning_rate=loguniform:1e-5:1e-2", "ent_coef=uniform:0:0.05",
                         "gae_lambda=uniform:0.8:1.0"], "num_evals": 10, "studies": 3},
    "wide": {"space": ["learning_rate=loguniform:1e-6:1e-1", "ent_coef=uniform:0:0.1",
                       "gae_lambda=uniform:0.5:1.0"], "num_evals": 20, "studies": 5},
}
# "late": stated after "narrow" and "wide" showed that every method reaches Acrobot's targets at
# its first evaluation (so they cannot rank methods there): the "wide" protocol with one Acrobot
# target, -80 (the mean best final return of the random searches of "wide": a return reached late
# in T, if at all), measured on 5 new studies (sweep seeds 5-9), none of which was seen before.
PROTOCOLS["late"] = {**PROTOCOLS["wide"], "first_study": 5, "targets": {"Acrobot-v1": (-80.0,)}}
# "short": stated after "late" showed Acrobot's -80 reached within halving's first rung (T/9 = 11k
# steps per member), where halving trains all 24 draws and so equals random-24 by construction:
# halving can only save where the target is reached after its first rung. The "wide" protocol with
# T = 25k steps per member on Acrobot (rungs end at 2.8k, 8.3k and 25k; an evaluation every 1.25k)
# and the targets -100 and -80, on 5 new studies (sweep seeds 10-14).
PROTOCOLS["short"] = {**PROTOCOLS["wide"], "first_study": 10, "steps": {"Acrobot-v1": 25_000},
                      "targets": {"Acrobot-v1": (-100.0, -80.0)}}
MEMBERS, HALVING_SETTINGS, ETA, RUNGS = 8, 24, 3, 3
METHODS = ("random", "random-24", "halving", "pbt")
OPTIONS = {"eval_episodes": 20, "cache_episodes": 0, "tensorboard": False,
           "plots": False, "keep_checkpoints": 1}


def targets(protocol: dict, env: str) -> tuple[float, ...]:
    """The target returns a protocol states for ``env`` (its own, else the environment's two)."""
    return protocol.get("targets", {}).get(env, ENVS[env][1])


def _spec(env: str, steps: int, sweep_seed: int, samples: int, protocol: dict, **options):
    from pgjax.run import programs
    return programs.fresh(algorithm="ppo", env=env, total_steps=steps, sweeps=protocol["space"],
                          samples=samples, sweep_seed=sweep_seed, seed_count=1,
                          given_options={**OPTIONS, "num_evals": protocol["num_evals"], **options})


def _eval_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()]


def one_program_curve(folder: Path, members: int, steps_per_update: int) -> list[tuple[int, float]]:
    """(study env steps spent, best member's evaluation return) at each evaluation of one program."""
    by_update: dict[int, float] = {}
    for row in _eval_rows(folder):
        by_update[row["update"]] = max(by_update.get(row["update"], -np.inf), row["eval_return_mean"])
    return [(u * steps_per_update * members, best) for u, best in sorted(by_update.items())]


def halving_curve(study_dir: Path, steps_per_update: int) -> list[tuple[int, float]]:
    """The same for a halving study: the env steps of every rung up to each evaluation."""
    record = json.loads((study_dir / "study.json").read_text())
    curve, spent_before, start = [], 0, 0
    for rung in record["rungs"]:
        members = len(rung["settings"])
        by_update: dict[int, float] = {}
        for row in _eval_rows(study_dir / "programs" / f"rung{rung['rung']}"):
            if start < row["update"] <= rung["end_update"]:
                by_update[row["update"]] = max(by_update.get(row["update"], -np.inf), row["eval_return_mean"])
        for u, best in sorted(by_update.items()):
            curve.append((spent_before + (u - start) * steps_per_update * members, best))
        spent_before += (rung["end_update"] - start) * steps_per_update * members
        start = rung["end_update"]
    return curve


def final_best(folder: Path) -> float:
    """The best member's mean evaluation return at the program's last evaluation."""
    rows = _eval_rows(folder)
    last = max(r["update"] for r in rows)
    return max(r["eval_return_mean"] for r in rows if r["update"] == last)


def steps_to_target(curve, target: float) -> int | None:
    return next((spent for spent, best in curve if best >= target), None)


def run_method(method: str, env: str, steps: int, sweep_seed: int, root: Path, protocol: dict) -> dict:
    from pgjax.run import programs, runner
    folder = root / f"{env}-{method}-{sweep_seed}"
    started = time.perf_counter()
    if method == "halving":
        study = _spec(env, steps, sweep_seed, HALVING_SETTINGS, protocol, prune="halving", prune_eta=ETA,
                      prune_rungs=RUNGS)
        programs.run_study(study, folder, out=io.StringIO())
        spu = study.programs[0].spec.config.steps_per_update
        curve = halving_curve(folder, spu)
    else:
        members = HALVING_SETTINGS if method == "random-24" else MEMBERS
        spec = _spec(env, steps, sweep_seed, members, protocol, pbt=method == "pbt")
        runner.run_spec(spec, folder, out=io.StringIO())
        spu = spec.config.steps_per_update
        curve = one_program_curve(folder, members, spu)
    wall = time.perf_counter() - started
    final = final_best(folder / "programs" / f"rung{RUNGS - 1}" if method == "halving" else folder)
    return {"env": env, "method": method, "sweep_seed": sweep_seed, "wall_seconds": wall,
            "curve": curve, "env_steps_spent": curve[-1][0], "final_best_return": final}


def table(rows: list[dict], budgets: dict, targets: dict) -> str:
    lines = ["| env | target | method | steps to target (median over studies; each study) | reached | "
             "best final return (mean over studies) | env steps spent / cap | wall time per study (mean) |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for env in budgets:
        for target in targets[env]:
            for method in METHODS:
                these = [r for r in rows if r["env"] == env and r["method"] == method]
                if these:
                    lines.append(_table_row(env, target, method, these, budgets[env]))
    return "\n".join(lines)


def _table_row(env: str, target: float, method: str, these: list[dict], budget: int) -> str:
    """A method's row; a study that never reaches the target is censored at what it spent (the cap
    B, or more for random-24), shown as '>spent', and counts as never in the median."""
    hits = [steps_to_target(r["curve"], target) for r in these]
    shown = [f"{h:,d}" if h is not None else f">{r['env_steps_spent']:,d}" for h, r in zip(hits, these)]
    median = np.median([h if h is not None else np.inf for h in hits])
    spent = max(r["env_steps_spent"] for r in these)
    median_text = f">{spent:,d}" if np.isinf(median) else f"{median:,.0f}"
    return (f"| {env} | {target:g} | {method} | {median_text}; "
            f"{', '.join(shown)} | {sum(h is not None for h in hits)}/{len(hits)} | "
            f"{np.mean([r['final_best_return'] for r in these]):.1f} | "
            f"{np.mean([r['env_steps_spent'] for r in these]) / budget:.2f} | "
            f"{np.mean([r['wall_seconds'] for r in these]):.0f} s |")


def _machine() -> str:
    return f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, CPU-only JAX"


def _machines(rows: list[dict]) -> str:
    """Where the rows were measured: one machine, or each machine with the methods it ran."""
    methods: dict[str, list[str]] = {}
    for row in rows:
        methods.setdefault(row["machine"], [])
        if row["method"] not in methods[row["machine"]]:
            methods[row["machine"]].append(row["method"])
    if len(methods) == 1:
        return next(iter(methods))
    return "; ".join(f"{machine} ({', '.join(names)})" for machine, names in methods.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="narrow")
    parser.add_argument("--studies", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run of the script)")
    parser.add_argument("--envs", nargs="*", default=None, help="default: the protocol's")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS,
                        help="run only these; their rows replace the same rows of the saved JSON")
    parser.add_argument("--table-only", action="store_true",
                        help="rewrite study_methods.md from the saved results/study_methods_*.json")
    args = parser.parse_args()
    if not args.table_only:
        protocol = PROTOCOLS[args.protocol]
        envs = args.envs or list(protocol.get("targets", ENVS))
        rows, budgets, scale = [], {}, 0.05 if args.quick else 1.0
        with tempfile.TemporaryDirectory() as tmp:
            for env in envs:
                steps = int(protocol.get("steps", {}).get(env, ENVS[env][0]) * scale)
                budgets[env] = MEMBERS * steps
                first = protocol.get("first_study", 0)
                for k in range(first, first + (args.studies or protocol["studies"])):
                    for method in args.methods:
                        row = {**run_method(method, env, steps, k, Path(tmp), protocol),
                               "machine": _machine()}
                        rows.append(row)
                        print(f"{env} study {k} {method}: {row['wall_seconds']:.0f} s, best final "
                              f"{row['final_best_return']:.1f}", flush=True)
        if args.quick:
            print(table(rows, budgets, {env: targets(protocol, env) for env in budgets}))
            return
        machine = _machine()
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"study_methods_{args.protocol}.json"
        rows = _merged(path, rows)
        path.write_text(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"),
                                    "protocol": args.protocol, "budgets": budgets, "rows": rows},
                                   indent=1))
    text = markdown()
    (RESULTS / "study_methods.md").write_text(text)
    print(text)


def _merged(path: Path, rows: list[dict]) -> list[dict]:
    """The saved rows of ``path`` with those of the same (env, method, study) replaced by ``rows``."""
    if not path.is_file():
        return rows
    key = lambda row: (row["env"], row["method"], row["sweep_seed"])  # noqa: E731
    new = {key(row) for row in rows}
    return [row for row in json.loads(path.read_text())["rows"] if key(row) not in new] + rows


def markdown() -> str:
    """study_methods.md: one table per protocol measured (results/study_methods_<protocol>.json)."""
    parts = ["# Successive halving and PBT against random search", "",
             f"Random search and PBT: {MEMBERS} members × T env steps; halving: {HALVING_SETTINGS} "
             f"settings, η={ETA}, {RUNGS} rungs; random-{HALVING_SETTINGS}: halving's "
             f"{HALVING_SETTINGS} draws, each trained for T (over the cap). Cap B = {MEMBERS}·T per study. Steps to target: the "
             "study's total env steps at the first evaluation where a member reaches the target "
             "('>N': never, after spending N). Wall time includes compiling; programs of a shape seen before load from "
             "the persistent compilation cache. See the script's docstring for the protocol.", ""]
    for name, protocol in PROTOCOLS.items():
        path = RESULTS / f"study_methods_{name}.json"
        if not path.is_file():
            continue
        saved = json.loads(path.read_text())
        env_targets = {env: targets(protocol, env) for env in saved["budgets"]}
        steps = "".join(f", T = {t:,d} on {env}" for env, t in protocol.get("steps", {}).items())
        parts += [f"## Protocol `{name}`: search space `{' '.join(protocol['space'])}`, "
                  f"{protocol['num_evals']} evaluations per T{steps}; studies' sweep seeds from "
                  f"{protocol.get('first_study', 0)}", "",
                  f"Generated by `python -m benchmarks.study_methods --protocol {name}` on "
                  f"{_machines(saved['rows'])} ({saved.get('date', '')}).", "",
                  table(saved["rows"], saved["budgets"], env_targets), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
