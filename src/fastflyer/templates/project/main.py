"""{{project_name}}: the ASGI app. Serve it with ./start.sh (production) or ./start-reload.sh."""

from fastflyer import FlyerAPI

app = FlyerAPI(app_path=__file__)
