from fastflyer import FlyerAPI

app = FlyerAPI(app_path=__file__)
