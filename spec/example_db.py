"""`--echo-example-db`: the Hypothesis example database a conformance run shares.

A counterexample Hypothesis found is saved under a key made from the target
and the requirement (`spec.checker.machine_factory`), and every later run
that uses the same database replays it first, before generating anything.
With a Redis database that later run may be on another machine.

The run's Hypothesis profile is kept (derandomized under CI, random in dev);
only its database is replaced, and that holds for the CI profile too, which
otherwise has none: asking for a database is asking to use it.  (Hypothesis
forbids derandomize=True *with* a database only when both are given at
once; a derandomized profile given a database replays from it, then
generates the same programs every run.)
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

#: Seconds to wait for the Redis server to answer, at the start of the run.
CONNECT_TIMEOUT = 5.0


class ExampleDbError(Exception):
    """An --echo-example-db that cannot be used, with a message for the user."""


def example_database(value: str, *, check: bool = True) -> ExampleDatabase:
    """The database `value` names: redis://HOST:PORT/N or a directory.

    With `check`, a Redis server is asked to answer now, so a wrong address
    fails the run at once with one line.
    """
    if not value.strip():
        raise ExampleDbError("--echo-example-db is empty: give redis://HOST:PORT/N or a directory")
    if value.startswith(("redis://", "rediss://", "unix://")):
        return _redis(value, check)
    if "://" in value:
        raise ExampleDbError(
            f"--echo-example-db {value!r}: only redis:// URLs and directories are supported"
        )
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ExampleDbError(f"--echo-example-db {value!r} is a file; give a directory")
    return DirectoryBasedExampleDatabase(path)


def _redis(url: str, check: bool) -> ExampleDatabase:
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise ExampleDbError(
            f"--echo-example-db {url}: the 'redis' package is not installed; "
            "pip install 'echo-conformance[redis]'"
        ) from None
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
    except ValueError as e:
        raise ExampleDbError(f"--echo-example-db {url}: {e}") from None
    if check:
        try:
            client.ping()
        except redis.RedisError as e:
            raise ExampleDbError(
                f"--echo-example-db {url}: the Redis server does not answer ({e})"
            ) from None
    return RedisExampleDatabase(client)


def with_database(base: settings, db: ExampleDatabase | None) -> settings:
    """`base` with `db` as its database (`base` itself without one)."""
    return base if db is None else settings(base, database=db)
