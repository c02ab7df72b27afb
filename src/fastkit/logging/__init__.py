"""FastKit logging on loguru.

    from fastkit.logging import logger
    logger.info("hello")          # through loguru as the application set it up
    logger.warn("warn works too")

    from fastkit.logging import get_logger
    log = get_logger("orders")    # configure: console, and rotating files from the first line

Importing or using FastKit configures nothing: its lines go through loguru's own sinks
(loguru's stderr sink until the application changes it), masked and carrying the request
id. :func:`configure` / :func:`get_logger` set loguru up (FastFlyer calls it for the apps
it builds and serves): levels from ``flyer_console_log_level`` / ``flyer_file_log_level``
(debug/info/warn/error), the directory from ``flyer_log_path``, ``flyer_log_json=1`` for
JSON lines, unless the call gives them.
"""

from __future__ import annotations

from fastkit.logging._setup import (
    LogConfigError,
    LogSettings,
    active_shipper,
    configure,
    get_logger,
    log_directory,
    log_settings_from_env,
    logger,
    parse_flag,
    parse_level,
)
from fastkit.logging._ship import LogShipper

__all__ = [
    "LogConfigError",
    "LogSettings",
    "LogShipper",
    "active_shipper",
    "configure",
    "get_logger",
    "log_directory",
    "log_settings_from_env",
    "logger",
    "parse_flag",
    "parse_level",
]
