"""The one way a database (or any) URL is shown to anyone: `redacted(url)` (#28 item 6).

Every message, log line and page that names a URL renders it through here. The password is
hidden wherever it sits:

* in the userinfo, up to the last `@` before the query (a password holding an unencoded
  `@`, as in `user:pa@ss@host`, is hidden whole: `split_authority`, which store/db.py also
  parses with);
* in a query parameter whose name says it is a secret (`password`, `sslpassword`, `pwd`,
  `secret`, `token`, `auth...`, `credential...`);
* a text that does not read as `scheme://...` (a scheme-less or unparsable URL) is not
  echoed when it could hold a password (`user:pw@host/db`: any `:`, `@`, `%`, space...); a
  plain word or path with none of those (`nonsense`, `billing.db`) is shown quoted, so the
  operator sees what was wrong.

Pure text (core imports no SQLAlchemy); an object with SQLAlchemy's `render_as_string` (a
`sqlalchemy.URL`) is first rendered with `hide_password=True`, then redacted the same way, so
its query parameters are hidden too.
"""

from __future__ import annotations

import re

HIDDEN = "***"
#: what is shown instead of a URL that cannot be read
UNREADABLE = "(a URL that cannot be read; not shown)"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.S)
_SHOWABLE = re.compile(r"[A-Za-z0-9_./\-]{1,100}")
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|auth|credential|key$", re.I)


def secret_parameter(name: str) -> bool:
    """Whether a query parameter of this name holds a secret (password, token...)."""
    return bool(_SECRET_NAME.search(name))


def _query(query: str) -> str:
    out = []
    for part in re.split(r"([&;])", query):
        if part in ("&", ";") or "=" not in part:
            out.append(HIDDEN if part not in ("&", ";") and secret_parameter(part) else part)
            continue
        name, _, _value = part.partition("=")
        out.append(f"{name}={HIDDEN}" if secret_parameter(name) else part)
    return "".join(out)


def _tail(tail: str) -> str:
    """host:port/path?query#fragment with the secret query parameters hidden."""
    head, q, query = tail.partition("?")
    if not q:
        return tail
    query, h, fragment = query.partition("#")
    return f"{head}?{_query(query)}" + (f"#{HIDDEN}" if h else "")


def split_authority(text: str) -> tuple[str, str | None, str | None, str] | None:
    """(scheme, user, password, rest after the userinfo) of `scheme://...`, None when `text`
    does not read so. The userinfo is `user[:password]@`; the password runs to the last `@`
    before the query (a `?` after the first `/` that follows the first `@`), so a password
    holding an unencoded `@` (`user:pa@ss@host`) is read whole. No userinfo: (scheme, None,
    None, rest)."""
    m = _SCHEME.match(text.strip())
    if not m:
        return None
    scheme, rest = m.groups()
    first_at = rest.find("@")
    if first_at < 0 or rest.startswith("/"):
        return scheme, None, None, rest
    slash = rest.find("/", first_at)
    query = rest.find("?", slash) if slash >= 0 else -1
    at = rest.rfind("@", 0, query) if query >= 0 else rest.rfind("@")
    userinfo, tail = rest[:at], rest[at + 1:]
    user, colon, password = userinfo.partition(":")
    if any(ch in user for ch in "/?#"):  # not a user name: no userinfo before this `@`
        return scheme, None, None, rest
    return scheme, user, (password if colon else None), tail


def redacted(url) -> str:
    """`url` (text or a sqlalchemy URL) with every password hidden; UNREADABLE when it does
    not read as `scheme://...`. Never raises."""
    try:
        if hasattr(url, "render_as_string"):
            text = url.render_as_string(hide_password=True)
        else:
            text = "" if url is None else str(url)
    except Exception:  # noqa: BLE001 - a URL that cannot even be rendered is not shown
        return UNREADABLE
    if any(ch in text for ch in "\r\n\t\x00"):
        return UNREADABLE
    parts = split_authority(text)
    if parts is None:
        # not scheme://...: shown (quoted) only when it cannot hold a user's password, i.e.
        # has no `:` or `@` to separate one (`nonsense`, `billing.db`); else never echoed
        if _SHOWABLE.fullmatch(text):
            return repr(text)
        return UNREADABLE
    scheme, user, password, tail = parts
    if user is None:  # no userinfo (e.g. sqlite:///path): the query may still hold one
        return f"{scheme}://{_tail(tail)}"
    shown = user if password is None else f"{user}:{HIDDEN}"
    return f"{scheme}://{shown}@{_tail(tail)}"


def scrub(text: str, *secrets: str | None) -> str:
    """`text` (e.g. a driver's error message) with each given secret replaced by HIDDEN."""
    for s in secrets:
        if s:
            text = text.replace(s, HIDDEN)
    return text
