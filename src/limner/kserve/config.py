"""What the operator sets for the KServe explainer: the predictor, the defaults and limits of
an explanation, and how panes are answered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limner.errors import InvalidInputError
from limner.imaging.decode import DEFAULT_MAX_PIXELS

#: The protocols limner speaks to a predictor (KServe's ``--predictor_protocol`` values).
PROTOCOLS = ("v2", "grpc-v2")
#: How panes are answered: data URLs in the RESULT, not at all, or stored and linked.
PANE_MODES = ("inline", "none", "store")


@dataclass(frozen=True)
class ExplainerConfig:
    """The explainer's settings, all from the operator (command line or environment).

    Args:
        model_name: the name KServe routes under (``/v1/models/{model_name}:explain``).
        predictor_host: ``HOST[:PORT]`` of the predictor (KServe's ``--predictor_host``).
        protocol: ``v2`` (Open Inference over HTTP) or ``grpc-v2``.
        predictor_model: the model's name on the predictor (default: ``model_name``).
        use_ssl: reach the predictor over TLS (``https://``, ``grpcs://``).
        hints: the model's metadata the predictor does not publish (labels, input size and
            settings, output kind): the fields of a ``limner-model.json``.
        headers: sent with every request to the predictor.
        defaults: explanation settings used where a request gives none.
        panes: ``inline`` (data URLs), ``none`` or ``store`` (files under ``pane_dir``, linked).
        pane_dir: where ``store`` writes panes.
        max_body_bytes, max_instances, max_pixels: request limits.
        max_samples: the most model evaluations a request may ask for.
        max_segments: the most regions a request may ask for.
        timeout: seconds one request to the predictor may take in all.
        concurrency: explanations computed at once (the others wait their turn).
    """

    model_name: str
    predictor_host: str
    protocol: str = "v2"
    predictor_model: str | None = None
    use_ssl: bool = False
    hints: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    panes: str = "inline"
    pane_dir: Path | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_instances: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_samples: int = 2000
    max_segments: int = 200
    timeout: float = 60.0
    concurrency: int = 2

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise InvalidInputError(f"--model-name must be a plain name, not {self.model_name!r}")
        if self.protocol not in PROTOCOLS:
            raise InvalidInputError(
                f"--protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r} "
                "(limner scores through Open Inference; KServe's v1 protocol is not spoken)"
            )
        if self.panes not in PANE_MODES:
            raise InvalidInputError(
                f"--panes must be one of {', '.join(PANE_MODES)}, not {self.panes!r}"
            )
        if self.concurrency < 1:
            raise InvalidInputError("--concurrency must be at least 1")
        if self.panes == "store" and self.pane_dir is None:
            raise InvalidInputError("--panes store needs --pane-dir")
        host_port(self.predictor_host)

    @property
    def served_model(self) -> str:
        """The model's name on the predictor."""
        return self.predictor_model or self.model_name

    def predictor_base(self) -> str:
        """``http(s)://HOST[:PORT]`` or ``grpc(s)://HOST[:PORT]`` of the predictor."""
        scheme = "grpc" if self.protocol == "grpc-v2" else "http"
        return f"{scheme}{'s' if self.use_ssl else ''}://{self.predictor_host_port()}"

    def predictor_host_port(self) -> str:
        """``HOST:PORT`` of the predictor, the port filled in (80, 443 with TLS)."""
        host, port = host_port(self.predictor_host)
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{port or (443 if self.use_ssl else 80)}"

    def predictor_url(self) -> str:
        """The model's URL on the predictor, as ``limner.load_model`` takes it."""
        if self.protocol == "grpc-v2":
            return f"{self.predictor_base()}/{self.served_model}"
        return f"{self.predictor_base()}/v2/models/{self.served_model}"

    def names_predictor(self, value: str) -> bool:
        """Whether ``value`` (a host, ``HOST:PORT`` or a URL) is the configured predictor."""
        text = value.strip()
        if "://" in text:
            parts = urlsplit(text)
            try:
                port = parts.port
            except ValueError:
                return False
            host = parts.hostname or ""
            text = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        try:
            host, port = host_port(text)
        except InvalidInputError:
            return False
        mine, my_port = host_port(self.predictor_host)
        default = 443 if self.use_ssl else 80
        return host.lower() == mine.lower() and (port or default) == (my_port or default)


def host_port(text: str) -> tuple[str, int | None]:
    """``(host, port)`` of ``HOST``, ``HOST:PORT`` or ``[V6]:PORT``."""
    value = text.strip()
    bad = InvalidInputError(f"--predictor-host must be HOST or HOST:PORT, not {text!r}")
    if not value or any(c in value for c in "/@?#\\ ") or "://" in value:
        raise bad
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise bad
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise bad
        port_text = rest[1:] if rest else ""
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        raise bad  # an IPv6 address needs brackets
    else:
        host, port_text = value, ""
    if not host:
        raise bad
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad
    return host, int(port_text)
