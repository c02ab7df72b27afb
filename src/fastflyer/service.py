"""What a process knows of the service it serves: its name, and how many workers serve it.

    from fastflyer.service import service_name, worker_count

    service_name(app.settings, app.title, project_dir)   # 'orders-api': namespaces keys
    worker_count()                                       # 2 under `fastflyer serve --workers 2`

The name namespaces what every worker and instance of one service shares in Redis (the
task API's service-wide job state, :mod:`fastflyer.task_state`), so that two services on
one Redis stay apart while the workers and instances of one service meet. The worker count
comes from ``FASTFLYER_WORKERS``, which :class:`~fastflyer.worker.FlyerWorker` sets in each
gunicorn worker before the app is imported; any other process (``fastflyer run``, a test
client, ``uvicorn main:app``) is one worker.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastflyer.settings import FlyerSettings

__all__ = ["WORKERS_VARIABLE", "service_name", "worker_count"]

WORKERS_VARIABLE = "FASTFLYER_WORKERS"
_DEFAULT_TITLE = "FastFlyer"  # BaseConfig.API_TITLE: the title of a project that set none
_UNSAFE = re.compile(r"[^\w.-]+")  # \w: Unicode letters too (a title may be 订单服务)


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", text.strip().lower()).strip("-.")


def service_name(settings: FlyerSettings, title: str | None = None,
                 project: Path | None = None) -> str:
    """The service's name, for namespacing keys that its workers and instances share.

    ``flyer_service_name`` when set; else the app's ``title`` (``API_TITLE`` of the project's
    ``settings.py``) unless it is the framework's default; else the name of the ``project``
    directory; else ``fastflyer``. Lower-cased, each run of characters other than letters,
    digits, ``.``, ``_`` and ``-`` made one ``-`` (so no ``{``, ``}``, ``:`` or space):
    ``"Orders API"`` is ``orders-api``.
    """
    for candidate in (settings.service_name,
                      title if title and title != _DEFAULT_TITLE else None,
                      project.name if project is not None else None):
        if candidate and (slug := _slug(candidate)):
            return slug
    return "fastflyer"


def worker_count() -> int:
    """How many worker processes serve this instance: ``FASTFLYER_WORKERS``, 1 when unset.

    Raises ``ValueError`` when the variable holds anything but an integer ≥ 1.
    """
    value = os.environ.get(WORKERS_VARIABLE, "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{WORKERS_VARIABLE}={value!r} is not an integer ≥ 1")
    return int(value)
