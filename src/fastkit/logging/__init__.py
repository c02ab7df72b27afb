"""FastKit logging on loguru.

    from fastkit.logging import logger
    logger.info("hello")          # console now, rotating file from the first line
    logger.warn("warn works too")

Levels come from ``flyer_console_log_level`` / ``flyer_file_log_level``
(debug/info/warn/error), the directory from ``flyer_log_path``; ``flyer_log_json=1``
writes JSON lines. Every line logged while a request id is bound carries it.
"""

from __future__ import annotations

from fastkit.logging._setup import (
    LogSettings,
    _configure_default,
    configure,
    get_logger,
    log_directory,
    log_settings_from_env,
    logger,
)

__all__ = [
    "LogSettings",
    "configure",
    "get_logger",
    "log_directory",
    "log_settings_from_env",
    "logger",
]

_configure_default()
