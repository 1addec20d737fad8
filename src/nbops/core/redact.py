"""Credentials out of URLs before anything is printed, stored or raised.

nbops is handed URLs that may carry secrets: the catalog
(``postgresql://user:pw@host/db``), the data root
(``s3://KEY:SECRET@bucket/x?secret_key=...``), the online store
(``redis://:pw@host:6379/0``) and MLflow's tracking URI
(``http://user:pw@host``).  Whatever nbops writes into a file, a catalog row,
a message, a warning or an error goes through this module first:

- :func:`redact_url` replaces the password of the user part and the value of
  every secret-looking query parameter with ``***`` (for messages);
- :func:`without_credentials` leaves them out altogether (for what is stored
  and used again, e.g. ``store.json``: the credentials then come from the
  usual places, PGPASSWORD, ~/.pgpass, the AWS credential chain);
- :func:`redact_text` cleans free text, such as a driver's error message,
  of every URL in it and of the given secrets.

A query parameter is secret when its name (lower case, ``-`` read as ``_``)
is in :data:`SECRET_PARAMS`, or ends with one of :data:`SECRET_SUFFIXES`.
Light on purpose (standard library only): the extension loads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"

#: Query parameters whose values are credentials (compared in lower case, ``-`` as ``_``).
SECRET_PARAMS = frozenset(
    {
        # passwords (libpq's password and sslpassword, redis-py's password)
        "password",
        "passwd",
        "pwd",
        "pass",
        "sslpassword",
        # keys and secrets (S3 keys as fsspec and signed URLs spell them, Azure's account_key, API keys)
        "key",
        "secret",
        "access_key",
        "access_key_id",
        "secret_key",
        "secret_access_key",
        "account_key",
        "client_secret",
        "api_key",
        "apikey",
        # tokens (an AWS session token, bearer and OAuth tokens, Azure SAS)
        "token",
        "session_token",
        "security_token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "auth",
        "sas",
        "sas_token",
        "credential",
        "credentials",
        # signed URLs (S3, GCS, Azure)
        "sig",
        "signature",
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
        "x_goog_signature",
        "x_goog_credential",
    }
)
#: Name endings that make any query parameter secret (``db_password``, ``github_token``, ``storage_key``).
SECRET_SUFFIXES = ("password", "secret", "token", "_key", "signature", "credential")
#: Schemes whose user part is itself a credential (an access key id), hidden whole.
KEY_SCHEMES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "az", "wasb", "wasbs"})

# A URL inside free text: a scheme, ``://``, then anything up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def is_secret_param(name: str) -> bool:
    """Whether the query parameter ``name`` holds a credential."""
    normal = unquote_plus(name).strip().lower().replace("-", "_")
    return normal in SECRET_PARAMS or normal.endswith(SECRET_SUFFIXES)


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``; anything else as it was.

    ``postgresql://etl:pw@db/nbops`` -> ``postgresql://etl:***@db/nbops``;
    ``s3://b/x?endpoint_override=h&secret_key=s`` -> ``s3://b/x?endpoint_override=h&secret_key=***``.
    Text without ``://`` (a path, ``"embedded"``) is returned unchanged.
    """
    return _rewrite(url, drop=False)


def without_credentials(url: str) -> str:
    """``url`` with its password and secret query parameters left out, for what is stored and used again.

    ``postgresql://etl:pw@db/nbops?password=pw&sslmode=require`` -> ``postgresql://etl@db/nbops?sslmode=require``.
    """
    return _rewrite(url, drop=True)


def url_secrets(url: str | None) -> list[str]:
    """The credentials ``url`` carries (its password, secret query values), as written and decoded."""
    if not isinstance(url, str) or "://" not in url:
        return []
    scheme, authority, _, query, _ = _parts(url)
    found: list[str] = []
    userinfo, at, _ = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            found.append(password)
        if scheme.lower() in KEY_SCHEMES and user:
            found.append(user)
    for pair in query.split("&") if query else ():
        name, equals, value = pair.partition("=")
        if equals and value and is_secret_param(name):
            found.append(value)
    return _with_decoded(found)


#: Settings whose URLs may carry credentials (nbops' own, and MLflow's tracking URI).
URL_SETTINGS = ("NBOPS_CATALOG_URL", "NBOPS_DATA_URL", "NBOPS_ONLINE_URL", "MLFLOW_TRACKING_URI")
#: Settings that are credentials themselves, read by the libraries nbops drives.
SECRET_SETTINGS = (
    "PGPASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The credentials this process was configured with: in :data:`URL_SETTINGS` and :data:`SECRET_SETTINGS`.

    For a last look at a message before it is shown (the ``nbops`` command, the magics).
    """
    env = os.environ if environ is None else environ
    found = [secret for name in URL_SETTINGS for secret in url_secrets(env.get(name))]
    return found + [env[name] for name in SECRET_SETTINGS if env.get(name)]


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` with every URL in it redacted and every one of ``secrets`` replaced by ``***``.

    For messages that may echo what they were given: a driver's or a
    server's error, an exception wrapped into one of ours.  Empty and None
    secrets are ignored; each secret is also looked for URL-encoded.
    """
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), str(text))
    for secret in sorted(_with_decoded(s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


# -- helpers ---------------------------------------------------------------------------------
def _parts(url: str) -> tuple[str, str, str, str | None, str | None]:
    """(scheme, authority, path, query, fragment) of ``scheme://authority/path?query#fragment``.

    None for a query or fragment that is absent, ``""`` for one that is empty. The authority ends
    at the first ``/``, ``?`` or ``#`` (as in RFC 3986).
    """
    scheme, rest = url.split("://", 1)
    end = re.search(r"[/?#]", rest)
    authority, tail = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    return scheme, authority, path, query if question else None, fragment if hash_ else None


def _rewrite(url: str, drop: bool) -> str:
    if not isinstance(url, str) or "://" not in url:
        return url
    scheme, authority, path, query, fragment = _parts(url)
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if scheme.lower() in KEY_SCHEMES:
            authority = host if drop else f"{MASK}@{host}"
        elif colon and password:
            authority = (f"{user}@{host}" if user else host) if drop else f"{user}:{MASK}@{host}"
    if query is not None:
        query = _rewrite_query(query, drop)
        if drop and not query:
            query = None
    return (
        f"{scheme}://{authority}{path}"
        + (f"?{query}" if query is not None else "")
        + (f"#{fragment}" if fragment is not None else "")
    )


def _rewrite_query(query: str, drop: bool) -> str:
    pairs = []
    for pair in query.split("&") if query else ():
        name, equals, value = pair.partition("=")
        if is_secret_param(name) and equals:
            if drop:
                continue
            value = MASK
        pairs.append(f"{name}{equals}{value}")
    return "&".join(pairs)


def _with_decoded(values: Iterable[str]) -> list[str]:
    """Each value, and its percent-decoded and percent-encoded forms, once each."""
    found: list[str] = []
    for value in values:
        plain = unquote(value)
        for form in (
            value,
            plain,
            unquote_plus(value),
            quote(plain, safe=""),
            quote(plain),
            quote_plus(plain, safe=""),
        ):
            if form and form not in found:
                found.append(form)
    return found


__all__ = [
    "MASK",
    "SECRET_PARAMS",
    "env_secrets",
    "is_secret_param",
    "redact_text",
    "redact_url",
    "url_secrets",
    "without_credentials",
]
