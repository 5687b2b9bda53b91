"""The HTTP API: `from dialer.http import create_app`."""

from dialer.http.app import create_app

__all__ = ["create_app"]
