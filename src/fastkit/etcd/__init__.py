"""etcd: the store under FastFlyer's config center and service registry.

    from fastkit.etcd import EtcdClient

    etcd = EtcdClient("http://10.0.0.1:2379,http://10.0.0.2:2379", user="app", password="...")
    etcd.put("/orders/prod/default/FEATURE_X", "on")
    etcd.get_prefix("/orders/prod/default/")      # {"/orders/prod/default/FEATURE_X": "on"}
    lease = etcd.grant(15); etcd.put("/k", "v", lease=lease); etcd.keepalive(lease)

It drives ``etcd3gw`` (``pip install 'fastflyer[etcd]'``) on etcd's v3 JSON gateway, which
every etcd ≥ 3.4 serves on its client port. Importing this package imports neither.
"""

from __future__ import annotations

from fastkit.etcd._client import (
    DEFAULT_ENDPOINT,
    EtcdAuthError,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    Snapshot,
    prefix_end,
)

__all__ = ["DEFAULT_ENDPOINT", "EtcdAuthError", "EtcdClient", "EtcdError", "EtcdUnavailable",
           "Snapshot", "prefix_end"]
