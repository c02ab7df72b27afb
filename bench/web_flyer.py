"""FastFlyer app for ``bench_web.py``: the bench project ``bench/web_project`` under FlyerAPI.

    flyer_access_log=0 flyer_console_log_level=error flyer_log_path=/tmp/flyer-bench \
    taskset -c 1 python -m uvicorn web_flyer:app --app-dir bench --loop uvloop \
        --http httptools --workers 1 --log-level error --no-access-log --no-proxy-headers

Routers of ``web_project/app/*`` are mounted under ``/flyer``: ``bench_items`` (POST
``/flyer/items``) and ``bench_shapes`` (POST ``/flyer/items/{item_id}?q=`` and the other
route shapes ``bench_asgi_cpu.py`` measures); ``web_fastapi.py`` has the same routes. The
framework serves ``/health_check/async`` itself. ``bench_web.py`` and ``bench_asgi_cpu.py``
start it with auth (``flyer_auth_enable=1``), CORS + GZip (``flyer_cors_origins``,
``flyer_gzip_min_size``) or ``flyer_fast_path=0`` set in the environment.
"""

from pathlib import Path

from fastflyer import FlyerAPI

app = FlyerAPI(app_path=str(Path(__file__).resolve().parent / "web_project"))
