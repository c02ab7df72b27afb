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


# The config center and the service registry (pip install 'fastflyer[etcd]'), both on etcd,
# are turned on by environment variables, not here (the config center is read before this
# file's settings; see the FastFlyer README):
#
#   flyer_config_enabled=1                       # variables from etcd, into os.environ
#   flyer_config_endpoints=http://etcd:2379      # comma-separated
#   flyer_config_app_id={{project_name}}
#   flyer_config_env_name=prod  flyer_config_group_name=default
#   # keys: /{app_id}/{env_name}/{group_name}/{NAME}; followed every flyer_config_sync_interval s
#
#   flyer_registry_enabled=1                     # this service registered while it is ready
#   flyer_registry_endpoints=http://etcd:2379
#   flyer_registry_service={{project_name}}  flyer_registry_metadata_zone=a
#   # key: /{namespace}/{service}/{host}:{port}, held by a lease kept alive every heartbeat


# Log shipping (the seed's flyer_zhiyan_log_* names work too): every log and access line
# also goes to a syslog collector (rsyslog, syslog-ng, Vector...) as RFC 5424:
#
#   flyer_log_ship_enabled=1
#   flyer_log_ship_proto=udp                     # udp, tcp (octet counting) or dev (console)
#   flyer_log_ship_host=syslog.internal  flyer_log_ship_port=514
#   flyer_log_ship_topic={{project_name}}        # APP-NAME


# Prometheus metrics, on by default (every worker's summed under ./start.sh):
#
#   flyer_metrics_enabled=1                      # 0: no /metrics, nothing recorded
#   flyer_metrics_path=/metrics                  # behind Basic auth when flyer_auth_enable=1


# Traces (pip install 'fastflyer[otel]'): OpenTelemetry's SDK, set up in each worker from
# the standard OTEL_* variables; log lines then carry trace_id and span_id:
#
#   flyer_opentelemetry_enabled=1
#   OTEL_SERVICE_NAME={{project_name}}                     # default: the service's name
#   OTEL_TRACES_EXPORTER=otlp                              # otlp, console or none
#   OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318
#   OTEL_TRACES_SAMPLER=parentbased_traceidratio  OTEL_TRACES_SAMPLER_ARG=0.1
