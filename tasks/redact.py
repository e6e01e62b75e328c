"""Passwords out of everything tuneflow shows: logs, errors, reports, artifacts, MLflow tags.

`redact(text)` masks, wherever they appear in `text`:
- the password of any `scheme://user:password@host` URL (PostgreSQL, MySQL, MLflow, S3 endpoints,
  Redis, ...): `postgresql://tuneflow:***@db/tuneflow`;
- `password=`, `secret=`, `token=`, `*_SECRET_ACCESS_KEY=`, `X-Amz-Signature=` ... values, as in
  query strings, libpq `key=value` strings and `NAME=value` assignments;
- the values of the credential variables of this process's environment (CREDENTIAL_VARIABLES) and
  of the passwords held by hold_password(), when at least MIN_LITERAL characters long (a shorter
  value, e.g. a laptop password `tuneflow`, would mask ordinary words; it is still masked in URLs).

`hold_password(url)` / `with_password(url)`: the CLI passes the study storage URL to the flow
without its password (Prefect stores flow parameters on its server); the password stays in this
process's memory and tasks.tuning.studies.open_storage puts it back.

`install_log_redaction()`: every log record this process creates, on any logger, is redacted when
it is made (message and formatted traceback): a record factory, which Prefect's logging set-up
(dictConfig, which replaces handlers and their filters) leaves in place.

Plain standard library: imported by tasks.errors, so by nearly everything.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from urllib.parse import quote

MASK = "***"
MIN_LITERAL = 12
# Where credentials live in the environment (tasks/settings.py exports the blocks' values into them).
CREDENTIAL_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "TUNEFLOW_RELAY_TOKEN",
)

# scheme://user:password@ : the password runs to the last '@' before a '/' or a blank, so an
# unencoded '@' inside it is masked too (a '/' inside a password must be percent-encoded anyway).
_URL_PASSWORD = re.compile(r"(?P<head>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*):(?P<password>[^\s/]*)@")
_KEYS = (
    "password", "passwd", "pwd", "secret", "secret_access_key", "secret_key", "session_token", "security_token", "token", "access_token",
    "refresh_token", "api_key", "apikey", "auth_string", "x-amz-signature", "x-amz-security-token", "x-amz-credential", "signature", "sig",
)
# key=value, key: value, "key": "value"; a key may end a longer NAME (AWS_SECRET_ACCESS_KEY=, TUNEFLOW_RELAY_TOKEN=)
_KEY_VALUE = re.compile(
    r"(?P<key>(?<![A-Za-z0-9])(?:" + "|".join(re.escape(k) for k in _KEYS) + r")[\"']?\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;,'\"}\])]+)",
    re.IGNORECASE,
)
_URL_HEAD = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/?#@]*):(?P<password>[^\s/]*)@(?P<rest>.*)$", re.DOTALL)

_HELD: dict[str, str] = {}  # URL without its password -> the URL as given
_held_passwords: set[str] = set()
_installed = False


def redact(text: str) -> str:
    """`text` with every password-like value replaced by `***` (see the module docstring)."""
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    out = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    out = _KEY_VALUE.sub(_mask_value, out)
    for value in _literals():
        if value in out:
            out = out.replace(value, MASK)
    return out


def redact_mapping(values: dict[str, object]) -> dict[str, object]:
    """A copy of `values` with every string value redacted (other values as they are)."""
    return {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}


def has_password(url: str) -> bool:
    """Whether `url` carries a password (`scheme://user:password@host...`)."""
    return split_password(url)[1] is not None


def split_password(url: str) -> tuple[str, str | None]:
    """(`url` without its password, the password or None). The user name is kept."""
    match = _URL_HEAD.match(url.strip()) if isinstance(url, str) else None
    if match is None or match["password"] == "":
        return url, None
    user = f"{match['user']}@" if match["user"] else ""
    return f"{match['scheme']}{user}{match['rest']}", match["password"]


def hold_password(url: str | None) -> str | None:
    """`url` without its password; the password stays in this process (with_password puts it back)
    and is redacted from everything this process shows from now on."""
    if url is None:
        return None
    bare, password = split_password(url)
    if password is None:
        return url
    _HELD[bare] = url.strip()
    _held_passwords.add(password)
    return bare


def with_password(url: str) -> str:
    """The URL hold_password() was given for `url`, or `url` itself."""
    return _HELD.get(url, url)


def install_log_redaction() -> None:
    """Redact every log record of this process when it is created (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record's message and, where it holds a secret, its traceback (in place)."""
    try:
        message = record.getMessage()
    except Exception:  # bad format arguments: logging reports those itself when it emits
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        clean = redact(text)
        if clean != text:
            record.exc_text = clean  # formatters print exc_text instead of formatting exc_info again


def _mask_value(match: re.Match[str]) -> str:
    value = match["value"]
    if value.startswith(MASK) or value.strip("\"'") in ("", MASK, "None", "null", "..."):
        return match[0]
    quote_char = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{quote_char}{MASK}{quote_char}"


def _literals() -> list[str]:
    values = {os.environ.get(var) or "" for var in CREDENTIAL_VARIABLES} | _held_passwords
    found: set[str] = set()
    for value in values:
        if len(value) >= MIN_LITERAL:
            found.add(value)
            found.add(quote(value, safe=""))
    return sorted(found, key=len, reverse=True)  # the longer first: one may contain another
