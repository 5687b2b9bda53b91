"""`python -m agent start|dev|console|connect|download-files|flush-spool`."""

from __future__ import annotations

import sys

from agent.worker import run

if __name__ == "__main__":
    sys.exit(run())
