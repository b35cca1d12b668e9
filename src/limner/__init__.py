"""limner: explanations for image classifiers.

``limner.load_model(spec)`` loads a classifier; ``limner.explain(image, model, ...)`` explains
one image and returns an :class:`~limner.explain.Explanation` whose ``to_dict()`` is the RESULT.
``limner.explain_detection(image, detector, box=...)`` explains one box of an object detector.
"""

from limner.errors import LimnerError

# Importing the engine package binds the name ``limner.explain`` to it; rebind it to the
# function, which is the public entry point (the package stays reachable as a module).
from limner.explain import Explanation, check_method, explain
from limner.explain.detection import explain_detection
from limner.models import Model, ModelMetadata, load_model

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "LimnerError",
    "Model",
    "ModelMetadata",
    "check_method",
    "explain",
    "explain_detection",
    "load_model",
]
