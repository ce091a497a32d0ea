"""What every process's command line shares: the --log-level option and one log format on stderr."""
from __future__ import annotations

import argparse
import logging
import sys

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=LOG_FORMAT)
