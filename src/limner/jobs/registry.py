"""Loaded models, each with its batcher, shared by scoring routes and explanation jobs."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from limner.jobs.batcher import Batcher
from limner.models import Model


@dataclass
class LoadedModel:
    """A model and the batcher its callers share."""

    model: Model
    batcher: Batcher

    def close(self) -> None:
        """Stop the batcher and release the model."""
        self.batcher.close()
        self.model.close()


class ModelRegistry:
    """Models by key (a deployment id, say), loaded on first use, least recently used dropped."""

    def __init__(self, max_loaded: int = 8) -> None:
        self.max_loaded = max_loaded
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str, load: Callable[[], Model]) -> LoadedModel:
        """The model under ``key``, calling ``load()`` once if it is not loaded yet."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = load()
            loaded = LoadedModel(
                model,
                Batcher(model.predict_tensor, max_batch=model.preferred_batch_size, name=key),
            )
            with self._lock:
                self._models[key] = loaded
                evicted = []
                while len(self._models) > self.max_loaded:
                    evicted.append(self._models.popitem(last=False)[1])
            for old in evicted:  # its worker stops and its memory is freed
                old.close()
            return loaded

    def drop(self, key: str) -> None:
        """Unload the model under ``key`` (a removed deployment)."""
        with self._lock:
            loaded = self._models.pop(key, None)
        if loaded is not None:
            loaded.close()

    def close(self) -> None:
        """Unload everything."""
        with self._lock:
            items = list(self._models.values())
            self._models.clear()
        for loaded in items:
            loaded.close()
