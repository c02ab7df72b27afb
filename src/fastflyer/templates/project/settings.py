"""Project settings: override the framework's defaults here.

Environment variables (``flyer_*``) configure the server; an explicitly set
``flyer_base_url`` or ``flyer_version`` wins over ``PREFIX`` and ``VERSION`` below.
"""

from fastflyer.settings import BaseConfig


class CustomConfig(BaseConfig):
    API_TITLE = "{{project_name}}"
    DESCRIPTION = "{{project_name}}, built on FastFlyer."
    VERSION = "v1"
    PREFIX = "{{prefix}}"
