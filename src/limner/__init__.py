"""limner: explanations for image classifiers.

``limner.load_model(spec)`` loads a classifier; ``limner.explain(image, model, ...)`` explains
one image and returns an :class:`~limner.explain.Explanation` whose ``to_dict()`` is the RESULT.
"""

from limner.errors import LimnerError
from limner.models import Model, ModelMetadata, load_model

__version__ = "0.1.0"


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # The engine imports scikit-image; load it on first use so `import limner` stays light.
    if name in ("explain", "Explanation"):
        from limner import explain as _explain_module

        return getattr(_explain_module, name)
    raise AttributeError(f"module 'limner' has no attribute {name!r}")


__all__ = ["Explanation", "LimnerError", "Model", "ModelMetadata", "explain", "load_model"]
