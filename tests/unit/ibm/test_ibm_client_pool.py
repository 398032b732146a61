"""`ClientPool`: one warm client per key file (and its identity) and endpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.ibm import Endpoints
from qauvern_hpc.ibm.factory import ClientPool
from qauvern_hpc.ibm.retry import RetryPolicy


def _key(tmp_path: Path, value: str = "key-1", name: str = "a.key") -> str:
    p = tmp_path / name
    p.write_text(value + "\n")
    p.chmod(0o600)
    return str(p)


def test_same_key_file_and_endpoints_share_one_client(tmp_path: Path) -> None:
    retry = RetryPolicy(max_attempts=2)
    pool = ClientPool(timeout=7, retry=retry)
    key = _key(tmp_path)
    one = pool.get(key, Endpoints.single("http://127.0.0.1:1"))
    assert pool.get(key, Endpoints.single("http://127.0.0.1:1")) is one
    assert one.timeout == 7 and one.retry is retry and one._api_key.get() == "key-1"
    assert pool.get(key, Endpoints.single("http://127.0.0.1:2")) is not one
    pool.close()


def test_a_rotated_key_file_gets_a_new_client(tmp_path: Path) -> None:
    pool = ClientPool()
    key = _key(tmp_path)
    where = Endpoints.production()
    first = pool.get(key, where)
    os.replace(_key(tmp_path, "key-2", "b.key"), key)  # a new inode at the same path
    second = pool.get(key, where)
    assert second is not first and second._api_key.get() == "key-2"


def test_no_key_file_uses_the_given_reader_once(tmp_path: Path) -> None:
    pool = ClientPool()
    reads: list[int] = []

    def admin() -> str:
        reads.append(1)
        return "admin-key"

    where = Endpoints.production()
    assert pool.get(None, where, admin) is pool.get(None, where, admin)
    assert reads == [1]
    with pytest.raises(ConfigError):
        ClientPool().get(None, where)
