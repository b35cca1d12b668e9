"""Explanation jobs, the executors they run on, and the batcher that lets callers share a model."""

from limner.jobs.batcher import Batcher
from limner.jobs.executor import Executor, ThreadExecutor
from limner.jobs.executors import make_executor
from limner.jobs.models import ModelProvider, external_metadata
from limner.jobs.registry import LoadedModel, ModelRegistry
from limner.jobs.runner import FAILED, FINISHED, QUEUED, RUNNING, JobRunner, pane_path

__all__ = [
    "FAILED",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "Batcher",
    "Executor",
    "JobRunner",
    "LoadedModel",
    "ModelProvider",
    "ModelRegistry",
    "ThreadExecutor",
    "external_metadata",
    "make_executor",
    "pane_path",
]
