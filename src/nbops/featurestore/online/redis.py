"""Redis as the online store: the catalog's latest-row-per-key table, served from a shared Redis.

Configure it without code changes::

    NBOPS_ONLINE_URL=redis://127.0.0.1:6379/0 python serve.py
    store = nbops.open("path/to/.nbops", online="redis://127.0.0.1:6379/0")

Consistency
-----------
The catalog commit stays the commit point.  A registration writes the
catalog's online table in its own transaction, exactly as without Redis; only
after that commit does it push the rows to Redis.  If Redis is down then, the
registration still succeeds (it is durable), an :class:`OnlineSyncWarning`
says so, and Redis is behind until the next registration of that group
version or ``store.sync_online()`` re-pushes what it misses from the catalog.

Redis records, atomically with the rows, the commit it has reached for each
group version (the ``#commit`` field: every commit up to it is in Redis).  A
push of commit *c* onto a Redis at *c - 1* or later sends just that commit's
rows; otherwise it catches up from the catalog's table (every row written by
a commit after the one Redis has).  Because that mark lives beside the rows, a
Redis that restarted empty is seen as empty, never as up to date.

Reads fail with :class:`~nbops.errors.OnlineStoreError` when Redis is
unreachable, and when it holds nothing for a group version the catalog has
online (it was never pushed, or lost its data) -- never with silent nulls.

Key layout
----------
One hash per group version, plus one for the ordering of its rows::

    nbops:{<store id>:<group>:<version>}:rows    entity key -> JSON value list; "#commit" -> commit
    nbops:{<store id>:<group>:<version>}:order   entity key -> event time and commit, as a sortable text

Entity keys are the canonical JSON of the key values (``[5]``), the same text
as in the catalog, so the ``#commit`` field can never collide with one.  A
lookup builds that text from the requested values with the group's key types
(:func:`nbops.featurestore.online.key_normaliser`), so Redis matches keys exactly as the
catalog's table and ``training_data`` do.  The
braces put a group version's keys in one Redis Cluster slot, as its push
script needs.  The store id is a random id kept in the store folder
(``store-id``) for an embedded catalog, or the server and database of a
PostgreSQL catalog, so every user of one catalog shares one namespace and two
stores never see each other's keys; ``?namespace=NAME`` in the URL sets it.

Ordering
--------
A pushed row replaces the stored one only if its (event time, commit) is
equal or later -- the catalog's rule (later event time wins; on a tie, the
later commit) -- checked inside one Lua script per batch, so pushes may be
retried and may arrive in any order.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from nbops.core.redact import redact_text, redact_url, url_secrets
from nbops.core.repository import featurestore as records
from nbops.errors import InvalidInputError, OnlineStoreError
from nbops.featurestore.online.base import GroupPlan, OnlineRow, OnlineStore

if TYPE_CHECKING:
    from nbops.featurestore.groups import _Version
    from nbops.store import Store

STORE_ID_FILE = "store-id"
COMMIT_FIELD = "#commit"
_PUSH_BATCH = 2_000  # rows per script call: long scripts block every other Redis client
_READ_BATCH = 10_000  # keys per HMGET
_TIME_OFFSET = 2**63  # event times may be negative (before 1970); offset them to sort as text

# KEYS: rows, order.  ARGV: the commit Redis reaches once this batch is in
# (0: not yet, more batches follow), then (entity key, order text, values)
# triples.  The order text sorts as (event time, commit), so one string
# comparison is the catalog's "equal or later wins".
_PUSH_SCRIPT = """
local rows, order = KEYS[1], KEYS[2]
local written = 0
for i = 2, #ARGV, 3 do
  local key, rank, values = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', order, key)
  if (not old) or rank >= old then
    redis.call('HSET', order, key, rank)
    redis.call('HSET', rows, key, values)
    written = written + 1
  end
end
local reached = tonumber(ARGV[1])
if reached > 0 then
  local have = tonumber(redis.call('HGET', rows, '#commit') or '0')
  if reached > have then
    redis.call('HSET', rows, '#commit', reached)
  end
end
return written
"""


def rank(event_time_us: int, commit_no: int) -> str:
    """(event time, commit) as text whose string order is their numeric order."""
    return f"{event_time_us + _TIME_OFFSET:020d}{commit_no:010d}"


def public_url(url: str) -> str:
    """The URL without its password (``redis://:***@host:6379/0``, ``?password=***``), for messages."""
    return redact_url(url)


def store_id(store: Store) -> str:
    """The namespace of this store's catalog: shared by everyone who uses that catalog."""
    if not store.catalog.is_sqlite:
        url = store.catalog.engine.url
        identity = f"{url.get_backend_name()}://{(url.host or 'localhost').lower()}:{url.port or ''}/{url.database}"
        return hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = store.root / STORE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # Written aside then linked, so that two first users agree on one id.
    tmp = store.root / f".{STORE_ID_FILE}.{uuid.uuid4().hex}"
    tmp.write_text(uuid.uuid4().hex + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


class RedisOnlineStore(OnlineStore):
    """Online lookups served from Redis; plans still come from the catalog."""

    shared = True

    def __init__(self, store: Store, url: str) -> None:
        super().__init__(store)
        try:
            import redis
        except ImportError as exc:
            raise InvalidInputError(
                f"the online store {public_url(url)} needs the redis package: pip install 'nbops[redis]'"
            ) from exc
        self._redis_errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._connection_errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
        )
        try:
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query))
            namespace = query.pop("namespace", None)
            self.url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
            # Fail in seconds, not minutes, when the server is gone (options in the URL win).
            self.client: Any = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        except (ValueError, TypeError) as exc:  # a port that is not a number, an option redis-py refuses
            reason = redact_text(str(exc), *url_secrets(url))
            raise InvalidInputError(
                f"the online store {public_url(url)} is not a usable Redis URL ({reason}); "
                "write it as redis://[:password@]host:6379/0"
            ) from None
        self.namespace = namespace or store_id(store)
        self._push = self.client.register_script(_PUSH_SCRIPT)

    def close(self) -> None:
        """Close the store's own catalog connection and its Redis client."""
        super().close()
        self.client.close()

    def describe(self) -> str:
        """The Redis server (no password), for messages."""
        return f"the Redis online store at {public_url(self.url)}"

    def keys(self, group: str, version: int) -> tuple[str, str]:
        """The keys of a group version's rows hash and order hash (one Redis Cluster slot)."""
        tag = f"{{{self.namespace}:{group}:{version}}}"
        return f"nbops:{tag}:rows", f"nbops:{tag}:order"

    def _unreachable(self, exc: BaseException) -> OnlineStoreError:
        reason = redact_text(str(exc), *url_secrets(self.url))  # a server's words may echo what it was sent
        if isinstance(exc, self._connection_errors):
            return OnlineStoreError(f"{self.describe()} is unreachable: {reason}")
        return OnlineStoreError(f"{self.describe()} refused the request: {reason}")

    # -- reads ------------------------------------------------------------------------------
    def fetch(self, plan: GroupPlan, entity_keys: Sequence[str]) -> dict[str, str]:
        """The stored value lists (JSON) of the keys present, by entity key.

        Raises :class:`~nbops.errors.OnlineStoreError` when Redis is unreachable
        or holds nothing of the group version (never pushed, or its data lost).
        """
        rows_key, _ = self.keys(plan.group, plan.version.version)
        found: dict[str, str] = {}
        try:
            for start in range(0, max(len(entity_keys), 1), _READ_BATCH):
                chunk = list(entity_keys[start : start + _READ_BATCH])
                # The commit mark rides along in the same round trip.
                commit, *values = self.client.hmget(rows_key, [COMMIT_FIELD, *chunk])
                if commit is None:
                    raise OnlineStoreError(
                        f"{self.describe()} holds no rows of {plan.group}:{plan.version.version} (never pushed, "
                        "or Redis lost its data); run store.sync_online() to copy them from the catalog"
                    )
                found.update((k, v.decode()) for k, v in zip(chunk, values, strict=True) if v is not None)
        except self._redis_errors as exc:
            raise self._unreachable(exc) from exc
        return found

    def reached(self, group: str, version: int) -> int:
        """The commit Redis holds every row up to (0: nothing)."""
        rows_key, _ = self.keys(group, version)
        try:
            value = self.client.hget(rows_key, COMMIT_FIELD)
        except self._redis_errors as exc:
            raise self._unreachable(exc) from exc
        return int(value) if value is not None else 0

    # -- writes -----------------------------------------------------------------------------
    def write_rows(self, group: str, version: int, reached: int, rows: Sequence[OnlineRow]) -> None:
        """Send ``rows`` in batches through the push script; the last one marks Redis as reaching commit ``reached``."""
        keys = list(self.keys(group, version))
        try:
            for start in range(0, len(rows), _PUSH_BATCH):
                batch = rows[start : start + _PUSH_BATCH]
                last = start + _PUSH_BATCH >= len(rows)
                args: list[Any] = [reached if last else 0]
                for row in batch:
                    args += [row.entity_key, rank(row.event_time_us, row.commit_no), row.feature_values]
                self._push(keys=keys, args=args)
            if not rows:
                self._push(keys=keys, args=[reached])
        except self._redis_errors as exc:
            raise self._unreachable(exc) from exc

    def push(self, group: str, version: _Version, commit_no: int, rows: Sequence[OnlineRow]) -> None:
        """Bring Redis to ``commit_no``: its rows if Redis has every earlier commit, else catch up."""
        if self.reached(group, version.version) >= commit_no - 1:
            self.write_rows(group, version.version, commit_no, rows)
        else:
            self.catch_up(group, version.id, version.version)

    def catch_up(self, group: str, version_id: int, version: int) -> int:
        """Push every catalog row newer than what Redis has; returns how many were sent."""
        have = self.reached(group, version)
        with self.store.catalog.read() as conn:
            # The latest commit first: rows read afterwards include all of its rows (and
            # perhaps later ones, which is harmless), so Redis may be marked as reaching it.
            latest = records.latest_commit_or_zero(conn, version_id)
            if latest <= have:
                return 0
            rows = [OnlineRow(*r) for r in records.online_rows_after(conn, version_id, have)]
        self.write_rows(group, version, latest, rows)
        return len(rows)

    def sync_all(self) -> Iterable[tuple[str, int]]:
        """Catch Redis up on every online group version, yielding (``"group:version"``, rows sent)."""
        with self.store.catalog.read() as conn:
            online = records.online_versions(conn)
        for version_id, group, version in online:
            yield f"{group}:{version}", self.catch_up(group, version_id, version)


#: The name before the online stores had one interface.
RedisOnlineReader = RedisOnlineStore
