"""The parts of benchmark scripts that turn raw output into table columns."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import pytest

from benchmarks import startup, study_methods


def test_startup_sums_jax_own_account_of_each_phase():
    """The whole-process start-up columns (tracing, lowering, XLA compile) are read from
    ``JAX_LOG_COMPILES`` lines; real lines of this jax, summed by splitting them by hand."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    finally:
        logger.removeHandler(handler)
    lines = [record.getMessage() for record in records]
    expected = dict.fromkeys(startup.JAX_PHASES.values(), 0.0)
    for line in lines:
        for words, column in (("Finished tracing", "tracing_s"),
                              ("Finished jaxpr to MLIR", "lowering_s"),
                              ("Finished XLA compilation", "xla_compile_s")):
            if line.startswith(words):
                expected[column] += float(line.rsplit(" in ", 1)[1].removesuffix(" sec"))
    assert all(value > 0 for value in expected.values()), lines  # every phase was logged
    assert startup.jax_phase_seconds(lines + ["  steps 512/8,192 | in 3 sec"]) == pytest.approx(expected)


def test_study_protocols_state_their_own_targets_and_budgets():
    """A protocol's own Acrobot target and T replace the environment's; others keep theirs."""
    late, short, wide = (study_methods.PROTOCOLS[name] for name in ("late", "short", "wide"))
    assert study_methods.targets(late, "Acrobot-v1") == (-80.0,)
    assert study_methods.targets(short, "Acrobot-v1") == (-100.0, -80.0)
    assert study_methods.targets(wide, "Acrobot-v1") == study_methods.ENVS["Acrobot-v1"][1]
    assert study_methods.targets(short, "Breakout-MinAtar") == study_methods.ENVS["Breakout-MinAtar"][1]
    seeds = {name: set(range(p.get("first_study", 0), p.get("first_study", 0) + p["studies"]))
             for name, p in study_methods.PROTOCOLS.items() if name != "narrow"}
    assert not seeds["wide"] & seeds["late"] and not seeds["late"] & seeds["short"] \
        and not seeds["wide"] & seeds["short"]  # each protocol's studies are new ones
