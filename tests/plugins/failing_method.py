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


# For the local scheduler's test: a slow stage (failing on odd seeds), a method that needs it, one that does not.
@dataclass
class SlowStageConfig:
    seconds: float = 4.0


def run_slow_stage(ctx):
    import time

    time.sleep(ctx.config.seconds)
    if ctx.seed % 2:
        raise RuntimeError("deliberate stage failure for the test")


register_method(MethodSpec(name="slow-stage", description="test plugin: a stage that takes a while",
                           config_cls=SlowStageConfig, run=run_slow_stage, stage=True))
register_method(MethodSpec(name="after-stage", description="test plugin: needs slow-stage", config_cls=FlakyConfig,
                           run=lambda ctx: ctx.add_eval(0, 0, 0, 1.0, 1.0, 1), prerequisites=("slow-stage",)))
