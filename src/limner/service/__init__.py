"""The REST service: app factory, routers, schemas, auth."""

from limner.service.app import create_app
from limner.service.embedded import EmbeddedServer

__all__ = ["EmbeddedServer", "create_app"]
