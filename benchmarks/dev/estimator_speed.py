"""How long GAE and V-trace take, pgjax against rlax, at a few time-major shapes [T, N].

    pip install -e ".[compare]"      # rlax, for its side of the table
    python -m benchmarks.dev.estimator_speed [--shapes 128x8,128x2048,32x8192,1024x64] [--rounds 100]

Every function is jitted alone (float32, CPU unless JAX_PLATFORMS says otherwise) and called on
the same random segment (5 % episode ends, half terminations, half truncations). After a warm-up
call, each round calls every contender once in a shuffled order and the table reports the median
over the rounds (and the 25th percentile: on a shared machine the lower quantile is the less
disturbed one); the machine, the library versions and the load average are recorded with them.

Contenders, per estimator:

- ``pgjax``: :func:`pgjax.estimators.gae` / :func:`pgjax.estimators.vtrace` as shipped;
- ``rlax``: ``rlax.truncated_generalized_advantage_estimation`` /
  ``rlax.vtrace_td_error_and_advantage``, vmapped over the batch (rlax takes one ``[T]``
  trajectory), on inputs mapped beforehand (outside the timing) as in tests/test_rlax_parity.py;
- ``pgjax two-pass`` (GAE only): the same recursion with δ_t and γ_t·λ_t written to ``[T, N]``
  arrays before the scan, the formulation pgjax used before: it shows what computing them inside
  the scan (:func:`pgjax.estimators._backward`) is worth. Its results are checked bit-identical.

Writes ``benchmarks/results/estimator_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


from benchmarks.results_table import machine_description, save_results
from pgjax import estimators

RESULTS = Path(__file__).resolve().parents[1] / "results"
GAMMA, LAMBDA = 0.99, 0.95


def load_rlax():
    """rlax, or None when it is not installed (the table then has pgjax's side only)."""
    try:
        with warnings.catch_warnings():  # tfp-nightly (via distrax) warns on import
            warnings.simplefilter("ignore")
            import rlax
        return rlax
    except Exception as error:  # noqa: BLE001 - rlax pulls distrax and an unpinned tfp-nightly
        print(f"rlax unavailable ({type(error).__name__}: {error}); timing pgjax alone")
        return None


def segment(steps: int, envs: int, seed: int = 0) -> dict[str, jax.Array]:
    """A random rollout-like float32 segment ``[steps, envs]``: next_values[t] = values[t+1]
    inside an episode, V(final observation) at its end."""
    rng = np.random.default_rng(seed)
    u = rng.random((steps, envs))
    terminated, truncated = u < 0.025, (u >= 0.025) & (u < 0.05)
    dones = terminated | truncated
    values = rng.normal(size=(steps, envs))
    next_values = np.concatenate([values[1:], rng.normal(size=(1, envs))], axis=0)
    next_values = np.where(dones, rng.normal(size=(steps, envs)), next_values)
    arrays = dict(rewards=rng.normal(size=(steps, envs)), values=values, next_values=next_values,
                  discounts=GAMMA * (1.0 - terminated), log_rhos=0.3 * rng.normal(size=(steps, envs)))
    out = {k: jnp.asarray(x, jnp.float32) for k, x in arrays.items()}
    out["dones"] = jnp.asarray(dones)
    return out


def rlax_inputs(s: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """rlax's view of the segment (docs/coming-from-rlax.md): bootstrap from the next row, the
    truncations' V(final observation) folded into the rewards, traces cut by λ_t = λ·(1 − done)."""
    values_next_row = jnp.concatenate([s["values"][1:], s["next_values"][-1:]], axis=0)
    return dict(rewards=s["rewards"] + s["discounts"] * (s["next_values"] - values_next_row),
                discounts=s["discounts"], values=s["values"], values_next_row=values_next_row,
                values_ext=jnp.concatenate([s["values"], s["next_values"][-1:]], axis=0),
                lambdas=LAMBDA * (1.0 - s["dones"].astype(jnp.float32)),
                rhos=jnp.exp(s["log_rhos"]))


GAE_INPUTS = ("rewards", "values", "next_values", "discounts", "dones")
VTRACE_INPUTS = GAE_INPUTS + ("log_rhos",)


def pgjax_gae(rewards, values, next_values, discounts, dones):
    return estimators.gae(rewards, values, next_values, discounts, dones, LAMBDA)


def two_pass_gae(rewards, values, next_values, discounts, dones):
    """GAE with δ_t and γ_t·λ_t materialised as [T, N] arrays before a scan over them."""
    cont = (dones == 0).at[-1].set(False)
    deltas = estimators._deltas(rewards, values, next_values, discounts)
    coefs = estimators._kept(cont, discounts * LAMBDA)

    def step(next_adv, x):
        delta, coef = x
        adv = delta + coef * estimators._kept(coef != 0, next_adv)
        return adv, adv

    return jax.lax.scan(step, jnp.zeros_like(deltas[0]), (deltas, coefs), reverse=True)[1]


def pgjax_vtrace(rewards, values, next_values, discounts, dones, log_rhos):
    return estimators.vtrace(rewards, values, next_values, discounts, dones, log_rhos,
                             lambda_=LAMBDA)


GAE_RLAX_INPUTS = ("rewards", "discounts", "lambdas", "values_ext")
VTRACE_RLAX_INPUTS = ("values", "values_next_row", "rewards", "discounts", "rhos", "lambdas")


def rlax_gae(rlax):
    return jax.vmap(rlax.truncated_generalized_advantage_estimation, in_axes=1, out_axes=1)


def rlax_vtrace(rlax):
    def one(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_t):
        out = rlax.vtrace_td_error_and_advantage(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_t)
        return out.errors + v_tm1, out.pg_advantage

    return jax.vmap(one, in_axes=1, out_axes=1)


def time_rounds(contenders: dict, rounds: int) -> dict[str, dict[str, float]]:
    """Median and 25th percentile (ms) of each ``name -> (jitted fn, arguments)`` over ``rounds``
    rounds, each calling every contender once in a shuffled order."""
    for fn, args in contenders.values():
        jax.block_until_ready(fn(*args))        # compile and warm up
    seconds = {name: [] for name in contenders}
    order = list(contenders)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            fn, args = contenders[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            seconds[name].append(time.perf_counter() - start)
    return {name: {"median_ms": float(np.median(s) * 1e3), "p25_ms": float(np.percentile(s, 25) * 1e3)}
            for name, s in seconds.items()}


def measure(steps: int, envs: int, rounds: int, rlax) -> dict:
    s = segment(steps, envs)
    m = rlax_inputs(s)
    gae_args, vtrace_args = tuple(s[k] for k in GAE_INPUTS), tuple(s[k] for k in VTRACE_INPUTS)
    contenders = {"gae pgjax": (jax.jit(pgjax_gae), gae_args),
                  "gae pgjax two-pass": (jax.jit(two_pass_gae), gae_args),
                  "vtrace pgjax": (jax.jit(pgjax_vtrace), vtrace_args)}

    def result(name):
        fn, args = contenders[name]
        return fn(*args)

    checks = {"two-pass bit-identical": bool(np.array_equal(result("gae pgjax"),
                                                           result("gae pgjax two-pass")))}
    if rlax is not None:
        contenders["gae rlax"] = (jax.jit(rlax_gae(rlax)), tuple(m[k] for k in GAE_RLAX_INPUTS))
        contenders["vtrace rlax"] = (jax.jit(rlax_vtrace(rlax)),
                                     tuple(m[k] for k in VTRACE_RLAX_INPUTS))
        # the same quantities (float32 rounding apart), so the timings compare like with like
        checks["gae agrees with rlax"] = bool(np.allclose(result("gae rlax"), result("gae pgjax"),
                                                          atol=1e-4))
        # V-trace targets only: with λ < 1 the policy-gradient advantages differ by design
        # (docs/coming-from-rlax.md, "One real difference")
        checks["vtrace targets agree with rlax"] = bool(np.allclose(
            result("vtrace rlax")[0], result("vtrace pgjax")[0], atol=1e-4))
    return {"T": steps, "N": envs, "timings": time_rounds(contenders, rounds), "checks": checks}


def markdown(result: dict) -> str:
    lines = [f"GAE and V-trace, jitted, float32 ({result['machine']}; jax {result['jax']}, "
             f"rlax {result['rlax']}; load average {result['load_before']:.1f} before, "
             f"{result['load_after']:.1f} after). ms per call: median over {result['rounds']} "
             f"shuffled rounds (25th percentile in brackets).", "",
             "| T × N | gae pgjax | gae rlax | rlax / pgjax | gae pgjax two-pass | vtrace pgjax | "
             "vtrace rlax | rlax / pgjax | checks |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]

    def cell(row, name):
        t = row["timings"].get(name)
        return "—" if t is None else f"{t['median_ms']:.3f} ({t['p25_ms']:.3f})"

    def ratio(row, theirs, ours):
        t = row["timings"]
        return "—" if theirs not in t else f"{t[theirs]['median_ms'] / t[ours]['median_ms']:.2f}×"

    for row in result["rows"]:
        checks = ", ".join(name for name, ok in row["checks"].items() if ok)
        failed = [name for name, ok in row["checks"].items() if not ok]
        if failed:
            checks += "; **FAILED: " + ", ".join(failed) + "**"
        lines.append(f"| {row['T']} × {row['N']} | {cell(row, 'gae pgjax')} | {cell(row, 'gae rlax')} | "
                     f"{ratio(row, 'gae rlax', 'gae pgjax')} | {cell(row, 'gae pgjax two-pass')} | "
                     f"{cell(row, 'vtrace pgjax')} | {cell(row, 'vtrace rlax')} | "
                     f"{ratio(row, 'vtrace rlax', 'vtrace pgjax')} | {checks} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="128x8,128x2048,32x8192,1024x64",
                        help="comma-separated TxN shapes")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    rlax = load_rlax()
    load_before = os.getloadavg()[0]
    rows = [measure(*map(int, shape.split("x")), args.rounds, rlax) for shape in args.shapes.split(",")]
    result = {"machine": machine_description(), "jax": jax.__version__,
              "rlax": getattr(rlax, "__version__", None), "rounds": args.rounds,
              "load_before": load_before, "load_after": os.getloadavg()[0], "rows": rows}
    save_results(RESULTS, "estimator_speed", result, markdown(result))


if __name__ == "__main__":
    main()
