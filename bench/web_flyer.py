"""FastFlyer app for ``bench_web.py``: the bench project ``bench/web_project`` under FlyerAPI.

    flyer_access_log=0 flyer_console_log_level=error flyer_log_path=/tmp/flyer-bench \
    taskset -c 1 python -m uvicorn web_flyer:app --app-dir bench --loop uvloop \
        --http httptools --workers 1 --log-level error --no-access-log --no-proxy-headers

Routers of ``web_project/app/*`` are mounted under ``/flyer`` (POST ``/flyer/items``);
the framework serves ``/health_check/async`` itself.
"""

from pathlib import Path

from fastflyer import FlyerAPI

app = FlyerAPI(app_path=str(Path(__file__).resolve().parent / "web_project"))
