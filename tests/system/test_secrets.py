"""Secrets are never written: credentials in URLs appear in no file, summary, audit row, message or output.

Each kind of URL nbops is handed carries a distinctive secret here: the
catalog (a real PostgreSQL role with a password), the data root (a real
S3-compatible server, moto, given keys and a session token), the online store
(a real ``redis-server`` with ``requirepass``) and MLflow's tracking URI (a
server that does not answer, reached with a user and password).  Each test
runs the real paths, good and failing, then looks for the secret in every
byte of every file under the store folder (``catalog.db``, ``mlflow.db``,
the markers), in ``store.summary()``, in the audit frame, in the warnings
and errors raised and in what ``%nbops`` and the ``nbops`` command print.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbops
from helpers.pgserver import PgServer
from helpers.redisserver import RedisServer, redis_binary
from helpers.s3server import CREDENTIALS, S3Server, s3_server_fixture  # noqa: F401  (provides the s3_server fixture)
from helpers.servers import free_port, running
from nbops.core.paths import CATALOG_ENV, MARKER_ENV, URI_ENV
from nbops.core.redact import MASK, redact_text, redact_url, url_secrets, without_credentials
from nbops.errors import InvalidInputError, NbopsError, OnlineStoreError, OnlineSyncWarning, StoreError

PG_SECRET = "S3cr3t-PW-pg"
S3_KEY = "AKIAS3cr3tKEYxyz"
S3_SECRET = "S3cr3t-S3-secret"
S3_TOKEN = "S3cr3t-S3-token"
REDIS_SECRET = "S3cr3t-PW-redis"
MLFLOW_SECRET = "S3cr3t-PW-mlflow"
WRONG_SECRET = "S3cr3t-WRONG-pw"
ALL_SECRETS = (PG_SECRET, S3_KEY, S3_SECRET, S3_TOKEN, REDIS_SECRET, MLFLOW_SECRET, WRONG_SECRET)
DATA_ENV = "NBOPS_DATA_URL"
ONLINE_ENV = "NBOPS_ONLINE_URL"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting of the person running the tests is seen; S3 credentials come from the environment."""
    for name in (CATALOG_ENV, DATA_ENV, ONLINE_ENV, "PGPASSWORD", "PGPASSFILE", URI_ENV, MARKER_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    # MLflow retries a refused connection for minutes by default.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.chdir(tmp_path)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


def shown(value: object) -> str:
    """What a person would see of ``value``."""
    if isinstance(value, pd.DataFrame):
        return value.to_csv(index=False)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def leaks(secrets: tuple[str, ...] | str, root: Path | None = None, **things: object) -> list[str]:
    """Where any of ``secrets`` (as written or URL-encoded) appears: every byte of every file under
    ``root``, and the text of each named thing."""
    needles = {s for secret in ((secrets,) if isinstance(secrets, str) else secrets) for s in (secret, quote(secret))}
    found = []
    if root is not None and root.exists():
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}: {n}" for n in needles if n.encode() in data]
    for name, thing in things.items():
        text = shown(thing)
        found += [f"{name}: {n} in {text[:300]!r}" for n in needles if n in text]
    return found


def frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cc_num": [i % 3 for i in range(n)],
            "ts": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
            "amount": [float(i) for i in range(n)],
        }
    )


def exercise(store: nbops.Store, online: bool = False) -> dict[str, object]:
    """Write and read through every kind of artifact; what the store then shows."""
    store.snapshot(frame(), "raw_tx", message="first")
    store.load("raw_tx")
    store.register_features(frame(), "tx", keys="cc_num", event_time="ts", online=online)
    store.features("tx")
    return {
        "summary": store.summary(),
        "audit": store.audit(),
        "repr": repr(store),
        "objects": repr(store.objects),
        "describe": store.catalog.describe(),
        "verify": store.verify().text(),
        "gc": store.gc(dry_run=True).text(),
    }


# -- the functions themselves --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://etl:pw@db.internal:5432/nbops", "postgresql://etl:***@db.internal:5432/nbops"),
        (
            "postgresql+psycopg://etl@db/nbops?password=pw&sslmode=require",
            "postgresql+psycopg://etl@db/nbops?password=***&sslmode=require",
        ),
        (
            "s3://bucket/x?endpoint_override=h:9000&access_key=AK&secret_key=SK&session_token=ST&scheme=http",
            "s3://bucket/x?endpoint_override=h:9000&access_key=***&secret_key=***&session_token=***&scheme=http",
        ),
        ("s3://AK:SK@bucket/x", "s3://***@bucket/x"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "redis://user:pw@host:6379/0?password=pw&namespace=team",
            "redis://user:***@host:6379/0?password=***&namespace=team",
        ),
        ("http://user:pw@mlflow.internal:5000/", "http://user:***@mlflow.internal:5000/"),
        (
            "https://host/path?token=t&X-Amz-Signature=s&sig=z&github_token=g&db=1",
            "https://host/path?token=***&X-Amz-Signature=***&sig=***&github_token=***&db=1",
        ),
        ("unix:///run/redis.sock?password=pw&db=0", "unix:///run/redis.sock?password=***&db=0"),
        ("postgresql://etl@db/nbops", "postgresql://etl@db/nbops"),
        ("embedded", "embedded"),
        ("/data/store?x=1", "/data/store?x=1"),
    ],
)
def test_redact_url_masks_passwords_and_secret_parameters_and_keeps_the_rest(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://etl:pw@db/nbops?password=pw&sslmode=require", "postgresql://etl@db/nbops?sslmode=require"),
        ("s3://AK:SK@bucket/x?endpoint_override=h:9000&secret_key=SK", "s3://bucket/x?endpoint_override=h:9000"),
        ("redis://:pw@host:6379/0", "redis://host:6379/0"),
        ("http://h:5000/?token=t", "http://h:5000/"),
        ("postgresql+psycopg://mlflow:***@db/mlflow", "postgresql+psycopg://mlflow@db/mlflow"),
    ],
)
def test_without_credentials_leaves_them_out_for_what_is_stored(url: str, expected: str) -> None:
    assert without_credentials(url) == expected


def test_redact_text_masks_urls_in_a_message_and_the_given_secrets() -> None:
    message = f"API request to http://alice:{MLFLOW_SECRET}@h:1/api failed; auth {quote('p@ss/w')} and p@ss/w refused"
    clean = redact_text(message, "p@ss/w")
    assert MLFLOW_SECRET not in clean and "p@ss/w" not in clean and quote("p@ss/w") not in clean
    assert "http://alice:***@h:1/api" in clean and clean.startswith("API request to")
    assert redact_text("nothing secret here", "", None) == "nothing secret here"


_SECRET_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=24)


@settings(max_examples=150, deadline=None)
@given(
    secret=_SECRET_TEXT.map(lambda s: "Zq9~" + s),
    param=st.sampled_from(
        ["password", "secret_key", "access_key", "session_token", "token", "Signature", "sig", "key", "api_key"]
    ),
)
def test_no_generated_secret_survives_in_any_position(secret: str, param: str) -> None:
    encoded = quote(secret, safe="")
    for url in (
        f"postgresql://etl:{encoded}@db.internal:5432/nbops?sslmode=require",
        f"s3://bucket/prefix?endpoint_override=127.0.0.1:9000&{param}={encoded}&scheme=http",
        f"redis://:{encoded}@127.0.0.1:6379/0?{param}={encoded}",
        f"s3://{encoded}:{encoded}@bucket/prefix",
    ):
        for clean in (
            redact_url(url),
            without_credentials(url),
            redact_text(f"failed: {url}: {secret}", *url_secrets(url)),
        ):
            assert encoded not in clean and secret not in clean, (url, clean)
        # what locates the data stays
        assert ("etl:***@db.internal:5432/nbops" in redact_url(url)) == url.startswith("postgresql://")
        assert ("endpoint_override=127.0.0.1:9000" in without_credentials(url)) == url.startswith("s3://bucket/prefix?")


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60) | st.from_regex(r"[a-z0-9+]{1,8}://[^ ]{0,40}", fullmatch=True))
def test_any_text_is_redacted_without_error_and_text_without_a_url_is_unchanged(text: str) -> None:
    for clean in (redact_url(text), without_credentials(text), redact_text(text)):
        assert isinstance(clean, str)
    if "://" not in text:
        assert redact_url(text) == without_credentials(text) == redact_text(text) == text
    assert redact_url(redact_url(text)) == redact_url(text)  # redacting twice changes nothing more


# -- the catalog: PostgreSQL -----------------------------------------------------------------------
def secret_role(server: PgServer) -> tuple[str, str]:
    """A login role whose password is ``PG_SECRET`` and a new database it owns: (role, database)."""
    database = server.create_database("secret")
    role = f"r_{database}"
    server.admin_sql(
        f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PG_SECRET}'", f'ALTER DATABASE "{database}" OWNER TO "{role}"'
    )
    return role, database


def pg_url(server: PgServer, role: str, database: str, password: str = PG_SECRET, query: bool = False) -> str:
    if query:
        return f"postgresql://{role}@{server.host}:{server.port}/{database}?password={password}&sslmode=disable"
    return f"postgresql://{role}:{password}@{server.host}:{server.port}/{database}"


@pytest.mark.postgres
def test_a_catalog_password_in_the_url_is_written_nowhere_and_shown_nowhere(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    role, database = secret_role(pg_server)
    root = tmp_path / ".nbops"
    with nbops.open(root, catalog=pg_url(pg_server, role, database)) as store:
        seen = exercise(store)
    assert json.loads((root / "store.json").read_text()) == {
        "catalog": f"postgresql+psycopg://{role}@{pg_server.host}:{pg_server.port}/{database}"
    }
    # the next open takes the password from where it belongs
    monkeypatch.setenv("PGPASSWORD", PG_SECRET)
    with nbops.open(root) as again:
        assert again.history("raw_tx")["version"].tolist() == [1]
        seen["summary again"] = again.summary()
    assert leaks(PG_SECRET, root, **seen) == []


@pytest.mark.postgres
def test_a_catalog_password_given_as_a_query_parameter_is_not_stored(tmp_path: Path, pg_server: PgServer) -> None:
    role, database = secret_role(pg_server)
    root = tmp_path / ".nbops"
    with nbops.open(root, catalog=pg_url(pg_server, role, database, query=True)) as store:
        store.snapshot(frame(), "raw_tx")
        audit = store.audit()
    marker = json.loads((root / "store.json").read_text())["catalog"]
    assert marker == f"postgresql+psycopg://{role}@{pg_server.host}:{pg_server.port}/{database}?sslmode=disable"
    assert leaks(PG_SECRET, root, audit=audit) == []


@pytest.mark.postgres
def test_a_catalog_password_given_as_a_query_parameter_is_not_shown(tmp_path: Path, pg_server: PgServer) -> None:
    role, database = secret_role(pg_server)
    url = pg_url(pg_server, role, database, query=True)
    with nbops.open(tmp_path / ".nbops", catalog=url) as store:
        seen = {"summary": store.summary(), "url": store.catalog.url}
    assert leaks(PG_SECRET, **seen) == []


@pytest.mark.postgres
@pytest.mark.parametrize("query", [False, True], ids=["userinfo", "query"])
def test_a_wrong_password_or_an_unreachable_server_is_not_echoed_and_leaves_no_store(
    tmp_path: Path, pg_server: PgServer, query: bool
) -> None:
    role, database = secret_role(pg_server)
    wrong = pg_url(pg_server, role, database, password=WRONG_SECRET, query=query)
    with pytest.raises(StoreError, match="cannot connect to") as refused:
        nbops.open(tmp_path / "wrong", catalog=wrong)
    assert "password authentication failed" in str(refused.value)
    nowhere = pg_url(pg_server, role, database, query=query).replace(f":{pg_server.port}/", f":{free_port()}/")
    with pytest.raises(StoreError, match="cannot connect to") as unreachable:
        nbops.open(tmp_path / "unreachable", catalog=nowhere)
    assert leaks(ALL_SECRETS, tmp_path, wrong=refused.value, unreachable=unreachable.value) == []
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "unreachable").exists()


@pytest.mark.postgres
def test_migrate_to_a_catalog_with_a_password_prints_and_stores_none(
    tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbops.cli import main

    role, database = secret_role(pg_server)
    root = tmp_path / ".nbops"
    with nbops.open(root) as store:
        store.snapshot(frame(), "raw_tx")
    nowhere = pg_url(pg_server, role, database).replace(f":{pg_server.port}/", f":{free_port()}/")
    assert main(["--store", str(root), "migrate", "--to", nowhere]) == 2
    failed = capsys.readouterr()
    assert "cannot connect to" in failed.err
    assert main(["--store", str(root), "migrate", "--to", pg_url(pg_server, role, database)]) == 0
    done = capsys.readouterr()
    assert "the store now opens on" in done.out and f"{role}@" in done.out
    assert leaks(PG_SECRET, root, failed=failed.out + failed.err, done=done.out + done.err) == []


# -- the data root: S3 ------------------------------------------------------------------------------
# pyarrow takes S3 keys from the user part of the URI (s3://KEY:SECRET@bucket/...) or from the AWS
# credential chain; it refuses them as query parameters, and the refusal must not echo them either.
def keyed_uri(server: S3Server, bucket: str) -> str:
    return server.uri(bucket, "team").replace("s3://", f"s3://{S3_KEY}:{S3_SECRET}@")


def query_keyed_uri(server: S3Server, bucket: str) -> str:
    return server.uri(bucket, "team") + f"&access_key={S3_KEY}&secret_key={S3_SECRET}&session_token={S3_TOKEN}"


def test_s3_keys_in_the_data_uri_are_written_nowhere_and_shown_nowhere(tmp_path: Path, s3_server: S3Server) -> None:
    s3_server.create_bucket("secrets-userinfo")
    root = tmp_path / ".nbops"
    with nbops.open(root, data=keyed_uri(s3_server, "secrets-userinfo")) as store:
        seen = exercise(store)
    assert json.loads((root / "data.json").read_text()) == {"data": s3_server.uri("secrets-userinfo", "team")}
    with nbops.open(root) as again:  # the keys now come from the AWS credential chain (here: the environment)
        assert again.load("raw_tx").shape == (6, 3)
    assert leaks((S3_KEY, S3_SECRET), root, **seen) == []


def test_markers_never_record_a_credential(tmp_path: Path) -> None:
    from nbops.core import markers

    given = f"s3://{S3_KEY}:{S3_SECRET}@bucket/team?endpoint_override=h:9000&secret_key={S3_SECRET}&token={S3_TOKEN}"
    markers.write(tmp_path, "data.json", "data", given, lambda a, b: a == b)
    assert (
        markers.read(tmp_path, "data.json", "data", "s3://bucket/prefix") == "s3://bucket/team?endpoint_override=h:9000"
    )
    with pytest.raises(StoreError, match="by another process") as clash:  # a racing opener recorded another place
        markers.write(tmp_path, "data.json", "data", given.replace("bucket", "other"), lambda a, b: a == b)
    assert leaks((S3_KEY, S3_SECRET, S3_TOKEN), tmp_path, clash=clash.value) == []


def test_s3_errors_do_not_echo_the_keys(tmp_path: Path, s3_server: S3Server) -> None:
    with pytest.raises(StoreError, match="does not exist") as missing:
        nbops.open(tmp_path / "missing", data=keyed_uri(s3_server, "no-such-bucket"))
    unreachable_uri = (
        f"s3://{S3_KEY}:{S3_SECRET}@b/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http&region=us-east-1"
    )
    with pytest.raises(StoreError, match="cannot reach") as unreachable:
        nbops.open(tmp_path / "unreachable", data=unreachable_uri)
    with pytest.raises(StoreError, match="data root") as no_bucket:
        nbops.open(tmp_path / "nobucket", data=f"s3://{S3_KEY}:{S3_SECRET}@/")
    errors = {"missing": missing.value, "unreachable": unreachable.value, "no bucket": no_bucket.value}
    assert leaks((S3_KEY, S3_SECRET), tmp_path, **errors) == []


def test_s3_keys_given_as_query_parameters_are_not_echoed(tmp_path: Path, s3_server: S3Server) -> None:
    s3_server.create_bucket("secrets-query")
    with pytest.raises(StoreError, match="cannot use the data root") as refused:  # pyarrow takes no keys there
        nbops.open(tmp_path / "refused", data=query_keyed_uri(s3_server, "secrets-query"))
    root = tmp_path / ".nbops"
    with nbops.open(root, data=keyed_uri(s3_server, "secrets-query")):
        pass
    with pytest.raises(StoreError, match="keeps its data in") as other:
        nbops.open(root, data=query_keyed_uri(s3_server, "secrets-other"))
    assert leaks((S3_KEY, S3_SECRET, S3_TOKEN), tmp_path, refused=refused.value, other=other.value) == []


# -- the online store: Redis with a password ---------------------------------------------------------
class SecureRedis(RedisServer):
    """A ``redis-server`` that asks every client for ``REDIS_SECRET``."""

    extra_args = ("--requirepass", REDIS_SECRET)

    def ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'nbops[test]')")
    with running(SecureRedis(redis_binary(), tmp_path_factory.mktemp("secure-redis"))) as server:
        yield server


def redis_urls(server: RedisServer, password: str) -> dict[str, str]:
    where = f"127.0.0.1:{server.port}"
    return {
        "password only": f"redis://:{password}@{where}/0",
        "user and password": f"redis://default:{password}@{where}/0",
        "query": f"redis://{where}/0?password={password}",
    }


@pytest.mark.redis
@pytest.mark.parametrize("form", ["password only", "user and password", "query"])
def test_a_redis_password_is_written_nowhere_and_shown_nowhere(
    tmp_path: Path, secure_redis: SecureRedis, form: str
) -> None:
    root = tmp_path / ".nbops"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with nbops.open(root, online=redis_urls(secure_redis, REDIS_SECRET)[form]) as store:
            seen = exercise(store, online=True)
            seen["online"] = store.online_features(["tx.amount"], keys={"cc_num": [0, 1, 2]})
            seen["sync"] = store.sync_online()
            seen["reader"] = store.online_reader().describe()
    assert [str(w.message) for w in caught if issubclass(w.category, OnlineSyncWarning)] == []
    assert seen["online"]["amount"].tolist() == [3.0, 4.0, 5.0]  # served by Redis, which asked for the password
    assert "***" in str(seen["reader"])
    assert leaks(REDIS_SECRET, root, **seen) == []


@pytest.mark.redis
@pytest.mark.parametrize("form", ["password only", "query"])
def test_a_wrong_redis_password_or_an_unreachable_redis_is_not_echoed(
    tmp_path: Path, secure_redis: SecureRedis, form: str
) -> None:
    down = RedisServer(secure_redis.binary, tmp_path / "down")  # never started: nothing listens on its port
    cases = {
        "wrong password": redis_urls(secure_redis, WRONG_SECRET)[form],
        "unreachable": redis_urls(down, REDIS_SECRET)[form],
    }
    seen: dict[str, object] = {}
    for case, url in cases.items():
        root = tmp_path / case.replace(" ", "-")
        with nbops.open(root, online=url) as store:
            with pytest.warns(OnlineSyncWarning) as caught:
                store.register_features(frame(), "tx", keys="cc_num", event_time="ts", online=True)
            with pytest.raises(OnlineStoreError) as lookup:
                store.online_features(["tx.amount"], keys={"cc_num": [0]})
            with pytest.raises(OnlineStoreError) as sync:
                store.sync_online()
            seen |= {
                f"{case} warning": [str(w.message) for w in caught],
                f"{case} lookup": lookup.value,
                f"{case} sync": sync.value,
                f"{case} audit": store.audit(),
            }
        assert leaks(ALL_SECRETS, root) == []
    assert "WRONGPASS" in shown(seen["wrong password lookup"]) or "invalid" in shown(seen["wrong password lookup"])
    assert leaks(ALL_SECRETS, **seen) == []


@pytest.mark.redis
def test_a_malformed_redis_url_is_refused_without_echoing_its_password(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    with (
        nbops.open(tmp_path / ".nbops", online=f"redis://:{REDIS_SECRET}@127.0.0.1:notaport/0") as store,
        pytest.raises(InvalidInputError, match="not a usable Redis URL") as refused,
    ):
        store.online_features(["tx.amount"], keys={"cc_num": [0]})
    assert leaks(REDIS_SECRET, tmp_path, refused=refused.value) == []


def test_an_unknown_online_store_scheme_is_refused_without_echoing_its_password(tmp_path: Path) -> None:
    with (
        nbops.open(tmp_path / ".nbops", online=f"rediss+typo://:{REDIS_SECRET}@127.0.0.1:6379/0") as store,
        pytest.raises(InvalidInputError, match="unknown online store") as refused,
    ):
        store.online_features(["tx.amount"], keys={"cc_num": [0]})
    assert leaks(REDIS_SECRET, refused=refused.value) == []


# -- MLflow's tracking URI -----------------------------------------------------------------------------
@pytest.fixture
def tracking_server_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """``MLFLOW_TRACKING_URI`` set by the user: a server (that does not answer) reached with a password."""
    uri = f"http://alice:{MLFLOW_SECRET}@127.0.0.1:{free_port()}/"
    monkeypatch.setenv(URI_ENV, uri)
    return uri


def test_nbops_ui_names_the_tracking_server_without_its_password(
    tmp_path: Path, tracking_server_down: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbops.cli import main

    root = tmp_path / ".nbops"
    assert main(["--store", str(root), "ui"]) == 0
    printed = capsys.readouterr()
    assert "alice:***@127.0.0.1" in printed.out
    assert leaks(MLFLOW_SECRET, root, printed=printed.out + printed.err) == []


def test_panel_data_reports_an_unreachable_tracking_server_without_its_password(
    tmp_path: Path, tracking_server_down: str
) -> None:
    from nbops.tracking.experiments import TrackingError
    from nbops.widgets import data

    root = tmp_path / ".nbops"
    errors: dict[str, object] = {}
    with nbops.open(root) as store:
        for name, call in {
            "experiments": lambda: data.experiments(store),
            "runs page": lambda: data.runs_page(store, ["0"]),
            "run details": lambda: data.node_details(store, {"kind": "run", "ref": "0" * 32, "id": "run:x"}),
        }.items():
            with pytest.raises(TrackingError, match="MLflow: ") as failed:
                call()
            errors[name] = failed.value
    assert "alice:***@127.0.0.1" in str(errors["experiments"])
    assert leaks(MLFLOW_SECRET, root, **errors) == []


def test_a_run_on_an_unreachable_tracking_server_fails_without_echoing_its_password(
    tmp_path: Path, tracking_server_down: str
) -> None:
    root = tmp_path / ".nbops"
    # any error: its words are the point
    with nbops.open(root), pytest.raises(Exception) as failed, nbops.track(experiment="e"):  # noqa: B017
        pass
    assert leaks(MLFLOW_SECRET, root, failed=failed.value) == []
    assert isinstance(failed.value, NbopsError)


# -- everything at once, in a notebook ---------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
def test_the_nbops_magic_shows_no_credential_of_any_setting(
    tmp_path: Path,
    pg_server: PgServer,
    s3_server: S3Server,
    secure_redis: SecureRedis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tracking_server_down: str,
) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    role, database = secret_role(pg_server)
    s3_server.create_bucket("secrets-magic")
    root = tmp_path / ".nbops"
    monkeypatch.setenv("NBOPS_HOME", str(root))
    monkeypatch.setenv(CATALOG_ENV, pg_url(pg_server, role, database))
    monkeypatch.setenv(DATA_ENV, keyed_uri(s3_server, "secrets-magic"))
    monkeypatch.setenv(ONLINE_ENV, redis_urls(secure_redis, REDIS_SECRET)["password only"])
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("nbops")
    try:
        shell.run_cell("import pandas as pd\ndf = pd.DataFrame({'id': [1, 2, 3], 'x': [0.5, 1.5, 2.5]})")
        shell.run_line_magic("snapshot", "df")
        shell.run_line_magic("nbops", "")
        info = capsys.readouterr()
        assert "catalog:" in info.out and f"{role}@" in info.out
        # a wrong password in the environment: the magic's error names the catalog, not the password
        monkeypatch.setenv(CATALOG_ENV, pg_url(pg_server, role, database, password=WRONG_SECRET))
        with pytest.raises(UsageError, match="cannot connect to") as refused:
            shell.run_line_magic("nbops", f"use {tmp_path / 'other'}")
    finally:
        shell.extension_manager.unload_extension("nbops")
        InteractiveShell.clear_instance()
    monkeypatch.setenv(CATALOG_ENV, pg_url(pg_server, role, database))
    with nbops.open(root) as store:
        audit = store.audit()
    assert len(audit) >= 1
    seen = {"%nbops": info.out + info.err, "refused": refused.value, "audit": audit}
    assert leaks(ALL_SECRETS, root, **seen) == []
    assert MASK not in json.dumps(json.loads((root / "data.json").read_text()))
