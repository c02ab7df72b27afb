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


# Shared components, created here as the seed does (nothing connects until first use):
#
# from os import getenv
# from fastflyer.cache import get_redis_pool
# from fastflyer.database import get_dataset_pool, get_mysql_pool
#
# class Cache:
#     redis_pool = get_redis_pool(getenv("flyer_redis_host", "localhost"),
#                                 getenv("flyer_redis_port", 6379),
#                                 getenv("flyer_redis_pass", ""), getenv("flyer_redis_db", 1))
#
# class DataBase:
#     mysql_pool = get_mysql_pool()   # no arguments: flyer_db_url, else SQLite in data/
#     data_set = get_dataset_pool()
