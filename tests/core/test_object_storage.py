"""A store whose data root is on object storage: a real S3 server (moto) on 127.0.0.1.

The catalog stays in the store folder; the objects go to ``s3://bucket/prefix``
through pyarrow's S3 filesystem. Every behaviour is compared with a local
store doing the same thing.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nbops
from helpers.s3server import CREDENTIALS, S3Server, s3_server_fixture  # noqa: F401  (provides the s3_server fixture)
from helpers.servers import free_port
from nbops.core.hashing import column_digest
from nbops.core.objects.remote import DATA_ENV, DATA_MARKER_FILE, RemoteObjectStore
from nbops.errors import CorruptDataError, IntegrityError, StoreError

_buckets = itertools.count()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(DATA_ENV, raising=False)


@pytest.fixture
def data_uri(s3_server: S3Server) -> str:
    """A data root in a new bucket (one per test, so tests never see each other's objects)."""
    bucket = f"nbops-test-{os.getpid()}-{next(_buckets)}"
    s3_server.create_bucket(bucket)
    return s3_server.uri(bucket, "team/data")


@pytest.fixture
def s3_store(tmp_path: Path, data_uri: str) -> Iterator[nbops.Store]:
    store = nbops.open(tmp_path / "remote" / ".nbops", data=data_uri)
    try:
        yield store
    finally:
        store.close()


def keys_under(server: S3Server, uri: str) -> dict[str, Any]:
    """Every object key under the data root ``uri`` (relative to it), with its modification time."""
    from pyarrow import fs

    base = uri.split("://", 1)[1].split("?", 1)[0]
    infos = server.filesystem().get_file_info(  # type: ignore[attr-defined]
        fs.FileSelector(base, recursive=True, allow_not_found=True)
    )
    return {i.path[len(base) + 1 :]: i.mtime for i in infos if i.type == fs.FileType.File}


def tx(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cc_num": rng.integers(0, 10, n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "amount": rng.normal(50, 10, n).round(2),
            "category": pd.Series(rng.choice(["food", "travel", None], n), dtype="str"),
        }
    )


def workload(store: nbops.Store) -> dict[str, Any]:
    """Snapshots, history, diff, features and training data: what a notebook does."""
    raw = tx()
    first = store.snapshot(raw, "raw")
    changed = raw.assign(amount=raw["amount"] + 1.0)
    second = store.snapshot(changed, "raw")
    store.register_features(raw, "tx", keys="cc_num", event_time="ts")
    store.register_features(
        tx(40, seed=1).assign(ts=lambda d: d["ts"] + pd.Timedelta(days=10)), "tx", keys="cc_num", event_time="ts"
    )
    # An upsert into the first commit's time window: read back by ranged reads of its row groups.
    upsert = store.register_features(
        raw.head(5).assign(amount=lambda d: d["amount"] * 2), "tx", keys="cc_num", event_time="ts"
    )
    spine = pd.DataFrame(
        {"cc_num": [1, 2, 3], "ts": pd.to_datetime(["2026-01-03", "2026-01-12", "2026-02-01"], utc=True)}
    )
    training = store.training_data(spine, ["tx.amount", "tx.category"], event_time="ts", save_as="train")
    diff = store.diff("raw", 1, 2, keys=None)
    return {
        "digests": [first.digest, second.digest],
        "v1": store.load("raw", 1),
        "v2": store.load("raw@2"),
        "history": store.history("raw")[["version", "rows", "digest"]],
        "diff": (diff.added, diff.removed, getattr(diff, "unchanged", None)),
        "features": store.features("tx"),
        "features_at_1": store.features("tx", as_of=1),
        "upsert": (upsert.commit, upsert.updated, upsert.total_rows),
        "training": training,
        "saved": store.load("train"),
    }


def test_a_store_on_s3_gives_the_same_results_as_a_local_store(
    tmp_path: Path, s3_store: nbops.Store, data_uri: str, s3_server: S3Server
) -> None:
    with nbops.open(tmp_path / "local" / ".nbops") as local:
        expected = workload(local)
        local_objects = {digest for digest, _ in local.objects.iter_objects()}
    got = workload(s3_store)
    for name, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got[name], value, obj=name)
        else:
            assert got[name] == value, name
    # Content-addressed under the prefix, the same objects as the local store; none in the folder.
    keys = keys_under(s3_server, data_uri)
    assert set(keys) == {f"objects/{d[:2]}/{d}.parquet" for d in local_objects}
    assert not (s3_store.root / "objects").exists() and not (s3_store.root / "tmp").exists()
    assert (s3_store.root / "catalog.db").exists()
    report = s3_store.verify()
    assert report.ok and not report.orphans and report.objects_checked == len(local_objects), report.text()


def test_an_unchanged_snapshot_uploads_nothing(s3_store: nbops.Store, data_uri: str, s3_server: S3Server) -> None:
    first = s3_store.snapshot(tx(), "raw")
    assert first.bytes_written > 0
    before = keys_under(s3_server, data_uri)
    time.sleep(1.1)  # S3 times have whole seconds: an upload now would show
    again = s3_store.snapshot(tx(), "raw")
    assert again.version == first.version and again.bytes_written == 0
    assert keys_under(s3_server, data_uri) == before


def test_a_retried_publish_of_the_same_object_is_harmless(
    s3_store: nbops.Store, data_uri: str, s3_server: S3Server
) -> None:
    column = pa.chunked_array([pa.array([1, 2, None], pa.int64())])
    digest = column_digest(column)

    def write(sink: Any) -> None:
        pq.write_table(pa.table({"v": column}), sink, compression="zstd")

    objects = s3_store.objects
    assert isinstance(objects, RemoteObjectStore)
    written = objects.publish(digest, write)
    assert written == objects.size(digest) > 0
    # Not yet in the catalog (a retry after a lost answer): uploaded again, same bytes, same key.
    assert objects.publish(digest, write) == 0
    assert list(keys_under(s3_server, data_uri)) == [f"objects/{digest[:2]}/{digest}.parquet"]
    assert pq.read_table(objects.source(digest)).column("v").equals(column)
    # The snapshot that retries the whole write reuses the object and commits it.
    ref = s3_store.snapshot(pa.table({"v": column}), "retried")
    assert s3_store.load_table("retried").column("v").equals(column)
    assert ref.bytes_written == 0
    assert s3_store.verify().ok and s3_store.verify().orphans == []


WRITER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import nbops
    store = nbops.open(sys.argv[1], data=sys.argv[2])
    store.snapshot(pd.DataFrame({"a": range(1000), "b": [str(i) for i in range(1000)]}), "killed")
    """
)


def run_killed_writer(root: Path, uri: str, point: str) -> None:
    env = {**os.environ, **CREDENTIALS, "NBOPS_FAULT": point}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(root), uri],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_writer_killed_between_upload_and_commit_leaves_only_orphans_that_gc_removes(
    tmp_path: Path, data_uri: str, s3_server: S3Server
) -> None:
    root = tmp_path / ".nbops"
    run_killed_writer(root, data_uri, "before_catalog_commit")
    uploaded = keys_under(s3_server, data_uri)
    assert len(uploaded) == 2  # both columns reached the bucket; the catalog never heard of them
    with nbops.open(root) as store:  # the recorded data root
        assert store.datasets().empty
        report = store.verify()
        assert report.ok and len(report.orphans) == 2, report.text()
        assert all(o.startswith("s3://") and "/team/data/objects/" in o for o in report.orphans)
        # The catalog refers to no object: gc refuses unless told that this new store's first writer died.
        for grace in (None, 0):
            with pytest.raises(IntegrityError, match="refers to no object"):
                store.gc() if grace is None else store.gc(grace_seconds=grace)
        assert len(keys_under(s3_server, data_uri)) == 2
        kept = store.gc(empty_catalog=True)  # the default grace protects a writer that is about to commit
        assert kept.removed_orphans == [] and len(kept.kept_recent) == 2
        gone = store.gc(grace_seconds=0, empty_catalog=True)
        assert sorted(gone.removed_orphans) == sorted(report.orphans) and gone.bytes_freed > 0
        assert keys_under(s3_server, data_uri) == {}
        after = store.verify()
        assert after.ok and after.orphans == [] and after.tmp_files == []


def test_a_writer_killed_before_its_upload_leaves_nothing(tmp_path: Path, data_uri: str, s3_server: S3Server) -> None:
    root = tmp_path / ".nbops"
    run_killed_writer(root, data_uri, "before_publish")
    assert keys_under(s3_server, data_uri) == {}
    with nbops.open(root) as store:
        assert store.verify().ok and store.verify().orphans == []
        ref = store.snapshot(pd.DataFrame({"a": [1]}), "after")  # the store carries on
        assert ref.version == 1


def test_reusing_an_orphan_uploads_it_again_so_gc_keeps_it(tmp_path: Path, data_uri: str, s3_server: S3Server) -> None:
    root = tmp_path / ".nbops"
    run_killed_writer(root, data_uri, "before_catalog_commit")
    before = keys_under(s3_server, data_uri)
    time.sleep(1.1)
    with nbops.open(root) as store:
        store.snapshot(pd.DataFrame({"a": range(1000), "b": [str(i) for i in range(1000)]}), "killed")
        after = keys_under(s3_server, data_uri)
        assert set(after) == set(before) and all(after[k] > before[k] for k in before)
        assert store.gc(grace_seconds=0).removed_orphans == []
        assert store.load("killed")["a"].tolist() == list(range(1000))


def test_verify_names_a_missing_object_by_its_uri(s3_store: nbops.Store, data_uri: str, s3_server: S3Server) -> None:
    s3_store.snapshot(pd.DataFrame({"a": [1, 2]}), "small")
    (key,) = keys_under(s3_server, data_uri)
    bucket_path = data_uri.split("://", 1)[1].split("?", 1)[0]
    s3_server.filesystem().delete_file(f"{bucket_path}/{key}")  # type: ignore[attr-defined]
    report = s3_store.verify()
    assert not report.ok
    assert report.missing_objects == [f"{key.split('/')[-1][:-8]} (s3://{bucket_path}/{key}) (used by small@1)"]
    with pytest.raises(CorruptDataError, match=r"is missing; it is used by small@1.*nbops repair"):
        s3_store.load("small")


def test_a_bad_endpoint_is_an_error_naming_it(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError, match=f"cannot reach the data root s3://nowhere/x.*endpoint {endpoint}"):
        nbops.open(tmp_path / ".nbops", data=f"s3://nowhere/x?endpoint_override={endpoint}&scheme=http")
    assert not (tmp_path / ".nbops" / DATA_MARKER_FILE).exists()


def test_a_missing_bucket_is_an_error_naming_it(tmp_path: Path, s3_server: S3Server) -> None:
    with pytest.raises(StoreError, match=f"endpoint {s3_server.endpoint}.*no bucket 'no-such-bucket'"):
        nbops.open(tmp_path / ".nbops", data=s3_server.uri("no-such-bucket", "x"))


def test_the_data_root_is_recorded_and_another_one_is_refused(
    tmp_path: Path, data_uri: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / ".nbops"
    with nbops.open(root, data=data_uri) as store:
        store.snapshot(pd.DataFrame({"a": [1, 2, 3]}), "kept")
    assert json.loads((root / DATA_MARKER_FILE).read_text()) == {"data": data_uri}
    with nbops.open(root) as store:  # found again without being told
        assert store.load("kept")["a"].tolist() == [1, 2, 3]
    other = data_uri.replace("/team/data", "/team/other")
    with pytest.raises(StoreError, match="keeps its data in s3://.*/team/data.*data= asks for s3://.*/team/other"):
        nbops.open(root, data=other)
    monkeypatch.setenv(DATA_ENV, other)
    with pytest.raises(StoreError, match=r"\$NBOPS_DATA_URL asks for"):
        nbops.open(root)
    # The same bucket and prefix reached with other options is the same data root.
    with nbops.open(root, data=data_uri.replace("&region=us-east-1", "")) as store:
        assert store.load("kept")["a"].tolist() == [1, 2, 3]


def test_a_local_store_with_data_refuses_a_remote_data_root(tmp_path: Path, data_uri: str) -> None:
    root = tmp_path / ".nbops"
    with nbops.open(root) as store:
        store.snapshot(pd.DataFrame({"a": [1]}), "here")
    with pytest.raises(StoreError, match="keeps its data in its folder"):
        nbops.open(root, data=data_uri)
    assert not (root / DATA_MARKER_FILE).exists()


def test_credentials_in_the_uri_are_used_but_not_recorded(tmp_path: Path, data_uri: str) -> None:
    with_keys = data_uri.replace(
        "s3://", f"s3://{CREDENTIALS['AWS_ACCESS_KEY_ID']}:{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}@"
    )
    root = tmp_path / ".nbops"
    with nbops.open(root, data=with_keys) as store:
        store.snapshot(pd.DataFrame({"a": [1]}), "x")
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in repr(store.objects)
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in (root / DATA_MARKER_FILE).read_text()


def test_a_local_folder_as_data_root_keeps_the_local_protocol(tmp_path: Path) -> None:
    shared = tmp_path / "shared-data"
    with nbops.open(tmp_path / ".nbops", data=str(shared)) as store:
        store.snapshot(pd.DataFrame({"a": [1, 2]}), "local")
        assert [p.parent.parent for _, p in store.objects.iter_objects()] == [shared / "objects"]
        assert store.verify().ok
    with nbops.open(tmp_path / ".nbops", data=f"file://{shared}") as store:
        assert store.load("local")["a"].tolist() == [1, 2]
