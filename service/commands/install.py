"""Placeholder: filled in by the work on this command group."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    del subparsers
