"""MLflow bookkeeping across crashes: every run knows its process, dead runs are closed, resume reopens the run.

- Each run is tagged with its host, pid and the pid's start time (``process_tags``).
- When a run starts, runs still RUNNING on this host whose process no longer exists (a kill -9, an OOM kill, a
  lost node) are ended as KILLED with the reason as a tag (``close_dead_runs``): a dead run never stays RUNNING
  once a later run starts.
- A checkpoint records its MLflow run id (``RunInfo`` callback); ``resume=`` that checkpoint continues the same run
  (status back to RUNNING, ``modrwkv.resumes`` counted, ``modrwkv.resumed_from`` set), or, if that run is not in
  this tracking store, a new run linked to it by the tag ``modrwkv.resumed_run_id``.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import lightning as L

from ..safe_load import read_checkpoint

log = logging.getLogger("modrwkv.mlflow")

META_KEY = "modrwkv"  # the checkpoint's entry for the run's own metadata


def pid_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def process_tags() -> dict[str, str]:
    """Tags that identify the process owning a run: host, pid, pid start time."""
    pid = os.getpid()
    return {"modrwkv.host": socket.gethostname(), "modrwkv.pid": str(pid), "modrwkv.pid_start": pid_start(pid) or ""}


def _process_alive(pid: int, start: str) -> bool:
    if start:
        return pid_start(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def close_dead_runs(client, experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING runs of this host whose process has gone; returns their ids."""
    host = socket.gethostname()
    runs = client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and "
                                                             f"tags.`modrwkv.host` = '{host}'", max_results=1000)
    closed = []
    for run in runs:
        tags = run.data.tags
        try:
            pid = int(tags.get("modrwkv.pid", ""))
        except ValueError:
            continue
        if pid == os.getpid() or _process_alive(pid, tags.get("modrwkv.pid_start", "")):
            continue
        client.set_tag(run.info.run_id, "modrwkv.end_reason",
                       f"process {pid} on {host} ended without closing the run (killed?); closed at "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')} by process {os.getpid()}")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    if closed:
        log.warning("marked %d run(s) whose process had died as KILLED: %s", len(closed), ", ".join(closed))
    return closed


def checkpoint_run_id(path: str) -> str | None:
    """The MLflow run id a checkpoint was written by (None for checkpoints without it)."""
    meta = read_checkpoint(path, what="resume", mmap=True).get(META_KEY) or {}
    return meta.get("mlflow_run_id")


def reopen_run(client, run_id: str, checkpoint: str) -> bool:
    """Mark ``run_id`` RUNNING again for a resumed job; False when this tracking store has no such run."""
    try:
        run = client.get_run(run_id)
    except Exception:  # MlflowException: RESOURCE_DOES_NOT_EXIST (another tracking store)
        return False
    resumes = int(run.data.tags.get("modrwkv.resumes", "0")) + 1
    client.update_run(run_id, status="RUNNING")
    for key, value in {**process_tags(), "modrwkv.resumes": str(resumes), "modrwkv.resumed_from": checkpoint}.items():
        client.set_tag(run_id, key, value)
    if "modrwkv.end_reason" in run.data.tags:  # the reason it was closed no longer holds
        client.delete_tag(run_id, "modrwkv.end_reason")
    return True


def log_params_on_resume(client, run_id: str, params: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Log ``params`` into a reopened run: new keys are logged; MLflow params cannot change, so a value that
    differs from the original run's (e.g. a longer ``max_steps``) is recorded in the tag ``modrwkv.resume_changes``
    instead. Returns ``{key: (old, new)}`` of the changed ones."""
    old = client.get_run(run_id).data.params
    new = {k: str(v) for k, v in params.items() if k not in old}
    changed = {k: (old[k], str(v)) for k, v in params.items() if k in old and old[k] != str(v)}
    for key, value in new.items():
        client.log_param(run_id, key, value)
    if changed:
        note = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items()))
        client.set_tag(run_id, "modrwkv.resume_changes", note[:4000])
        log.warning("resume: changed since the original run: %s", note)
    return changed


class RunInfo(L.Callback):
    """Writes the MLflow run id into every checkpoint (``checkpoint["modrwkv"]["mlflow_run_id"]``)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        run_id = getattr(trainer.logger, "run_id", None) if trainer.logger else None  # None off rank 0
        checkpoint.setdefault(META_KEY, {})["mlflow_run_id"] = run_id
