from fastflyer.settings import BaseConfig


class CustomConfig(BaseConfig):
    API_TITLE = "Demo API"
    DESCRIPTION = "The test suite's demo project."
