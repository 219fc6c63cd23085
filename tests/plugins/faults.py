"""A test plugin (loaded through $SIMPL_BENCH_PLUGINS) that injects a fault into a job process at a point that
timing from outside cannot hit reliably. $SIMPL_BENCH_TEST_FAULT selects it:

    maze-data:K          SIGKILL the process right after the K-th episode of maze offline-data generation
    kill-write:SUFFIX:K  SIGKILL it half-way through the K-th atomic write of a file whose path ends with SUFFIX
                         (the temporary file holds half the bytes, the target is untouched: what a kill leaves)
    enospc:SUFFIX:K      from the K-th such write on, fail it with ENOSPC (a full disk) when it is flushed

Writes are matched where `harness.store.atomic_write_bytes` syncs them (os.fsync on the temporary file), so the
faults go through the real write path. Several faults: separate them with commas.

In the launcher, the plugin only shortens submitit's wait for the result file of a job that died (15 s, meant for
network filesystems that show a file late; the test's results are on local disk).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import submitit

submitit.core.core.Job._results_timeout_s = 1


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _patch_maze_data(k: int) -> None:
    from tasks.maze import data

    generate = data.generate_episodes

    def generate_then_die(*args, **kwargs):
        for i, episode in enumerate(generate(*args, **kwargs), 1):
            yield episode
            if i == k:
                _die()

    data.generate_episodes = generate_then_die


def _patch_fsync(suffix: str, k: int, kind: str) -> None:
    from harness import store

    fsync = os.fsync
    seen = 0

    def faulty_fsync(fd: int) -> None:
        nonlocal seen
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))  # .<name>.<random>.tmp beside <name>
        name = target.name[1:].rsplit(".", 2)[0]
        if not str(target.parent / name).endswith(suffix):
            return fsync(fd)
        seen += 1
        if seen == k and kind == "kill-write":
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            fsync(fd)
            _die()
        if seen >= k and kind == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    store.os.fsync = faulty_fsync  # the os module itself: only this job process has the plugin armed


for _fault in filter(None, os.environ.get("SIMPL_BENCH_TEST_FAULT", "").split(",")):
    _kind, _, _arg = _fault.partition(":")
    if _kind == "maze-data":
        _patch_maze_data(int(_arg))
    elif _kind in ("kill-write", "enospc"):
        _suffix, _, _k = _arg.rpartition(":")
        _patch_fsync(_suffix, int(_k), _kind)
    else:
        raise ValueError(f"SIMPL_BENCH_TEST_FAULT: unknown fault {_fault!r} (see tests/plugins/faults.py)")
