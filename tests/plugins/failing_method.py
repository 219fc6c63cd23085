"""A plugin method for the harness tests (loaded through $SIMPL_BENCH_PLUGINS): it fails on odd seeds."""

from dataclasses import dataclass

from methods import MethodSpec, register_method


@dataclass
class FlakyConfig:
    message: str = "deliberate failure for the test"


def run(ctx):
    if ctx.seed % 2:
        raise RuntimeError(ctx.config.message)
    ctx.add_eval(0, 0, 0, 1.0, 1.0, 1)


register_method(MethodSpec(name="flaky", description="test plugin: fails on odd seeds", config_cls=FlakyConfig,
                           run=run))
