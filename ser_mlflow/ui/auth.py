"""MLflow's basic auth for `ser-mlflow server --auth`: its ini, the admin password, the
signing key and the users database, all kept beside the store with owner-only modes."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlparse

from ser_mlflow.ui.process import Echo

AUTH_INI = "basic_auth.ini"


AUTH_DB = "basic_auth.db"


ADMIN_PASSWORD_FILE = "basic_auth_admin_password"


ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"


ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"


DEFAULT_ADMIN_USERNAME = "admin"


MIN_PASSWORD_LENGTH = 12


SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"


SECRET_KEY_FILE = "basic_auth_secret_key"


# --------------------------------------------------------------------------- validation


def store_scheme(uri: str) -> str:
    return urlparse(uri).scheme.split("+", 1)[0].lower()


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (relative paths are relative to the cwd)."""
    if store_scheme(uri) != "sqlite":
        return None
    rest = uri.split(":///", 1)[1] if ":///" in uri else ""
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


# --------------------------------------------------------------------------- auth


def default_auth_db_uri(backend_store_uri: str) -> str:
    """``basic_auth.db`` beside a SQLite store, else in the working directory."""
    path = sqlite_path(backend_store_uri)
    folder = path.resolve().parent if path is not None else Path.cwd()
    return f"sqlite:///{folder / AUTH_DB}"


def write_auth_config(folder: Path, *, database_uri: str) -> Path:
    """Write the ``basic_auth.ini`` MLflow reads through ``MLFLOW_AUTH_CONFIG_PATH``.

    MLflow's packaged ini points its user database at ``basic_auth.db`` in whatever the
    cwd is; a generated one pins it beside the store so users survive a ``cd``.
    ``default_permission = READ``: every account reads every run (``bimodal`` and
    ``fusion`` rank the whole lab's runs), only a run's owner and admins change it.
    The admin password is never written here: it travels in the environment.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / AUTH_INI
    ini.write_text(
        "# Written by `ser-mlflow server --auth`; rewritten on every start.\n"
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {os.environ.get(ADMIN_USERNAME_ENV) or DEFAULT_ADMIN_USERNAME}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return ini


def admin_password(folder: Path, *, database_uri: str, echo: Echo) -> str | None:
    """The bootstrap password of the admin user, or None when MLflow does not need one.

    MLflow ships no default admin password: it creates the admin user on the first start
    from ``MLFLOW_AUTH_ADMIN_PASSWORD`` and refuses to start without it. So: the variable
    when set (it is also how to *rotate* the password: set it and restart); otherwise, for
    a new SQLite user database, a random password saved (mode 600) in
    ``basic_auth_admin_password`` beside it and reused on later starts.
    """
    if os.environ.get(ADMIN_PASSWORD_ENV):
        if len(os.environ[ADMIN_PASSWORD_ENV]) < MIN_PASSWORD_LENGTH:  # MLflow's own rule
            raise ValueError(f"{ADMIN_PASSWORD_ENV}: expected at least {MIN_PASSWORD_LENGTH} "
                             "characters (MLflow refuses shorter passwords)")
        return os.environ[ADMIN_PASSWORD_ENV]
    path = sqlite_path(database_uri)
    saved = (path.resolve().parent if path else folder) / ADMIN_PASSWORD_FILE
    if saved.is_file():
        return saved.read_text().strip() or None
    if path is not None and path.exists():
        return None  # users exist already; the admin password is whatever it was set to
    if path is None:  # a database server: MLflow says so itself if the admin is missing
        return None
    password = secrets.token_urlsafe(18)
    _write_private(saved, password)
    echo(f"Admin user {admin_name()!r}: password generated and saved in {saved} (mode 600)")
    return password


def flask_secret_key(folder: Path) -> str:
    """The key MLflow's auth app signs CSRF tokens with (it refuses to start without one).

    ``MLFLOW_FLASK_SERVER_SECRET_KEY`` when set (several servers behind one name must share
    it), else a random key kept (mode 600) in ``basic_auth_secret_key`` so that a restart
    does not invalidate the forms open in users' browsers.
    """
    if os.environ.get(SECRET_KEY_ENV):
        return os.environ[SECRET_KEY_ENV]
    saved = folder / SECRET_KEY_FILE
    if saved.is_file() and saved.read_text().strip():
        return saved.read_text().strip()
    key = secrets.token_hex(32)
    _write_private(saved, key)
    return key


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (created with mode 600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def private_sqlite(uri: str) -> None:
    """The users database holds password hashes: owner-only like the password file.

    MLflow creates it with the umask's mode (644); an empty file made here first (SQLite
    fills an empty file as a new database) or a chmod of an existing one keeps it 600.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    if path.exists():
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, stat.S_IRUSR | stat.S_IWUSR))


def admin_name() -> str:
    return os.environ.get(ADMIN_USERNAME_ENV) or DEFAULT_ADMIN_USERNAME
