"""Settings as data: one table drives validation, ``--help``, the environment and the docs.

Every setting of ``kaudit serve`` is one :class:`Setting` row in :data:`SETTINGS`
(name, type, default, help, environment variable). Values come from, lowest to
highest precedence: the defaults, a YAML file (``kaudit.yaml``, ``--config``),
the environment (``KAUDIT_...``) and command-line flags.

* :func:`load_config` parses and type-checks every source and raises one
  :class:`~kaudit.errors.ConfigError` listing **every** problem (unknown keys get a
  "did you mean").
* :func:`check_config` goes further, as ``kaudit validate`` does: files exist and
  load, the certificate matches its key, the store directory is writable, transforms
  import, authentication is safe for the listen address.
* Secrets (tokens) are :class:`Secret` values whose ``repr`` is masked.
* :func:`settings_reference` renders the table as the Markdown reference in
  ``docs/serve.md``.
"""

from __future__ import annotations

import difflib
import importlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kaudit.errors import ConfigError

ENV_PREFIX = "KAUDIT_"


class Secret:
    """A string that does not show itself in ``repr``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table."""

    name: str
    type: str  # str | int | bool | path | choice | list | tokens
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    env: str = ""
    flag: str = ""

    @property
    def env_var(self) -> str:
        return self.env or ENV_PREFIX + self.name.upper()

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store_path",
        "path",
        None,
        "Directory of the store (created 0700). Unset: $KAUDIT_STORE or ./kaudit-data.",
        env="KAUDIT_STORE",
        flag="--store",
    ),
    Setting(
        "listen_address",
        "str",
        "127.0.0.1",
        "Address to listen on. A non-loopback address requires authentication "
        "(tokens or client_ca_file) unless `insecure` is set.",
        flag="--host",
    ),
    Setting("port", "int", 8443, "TCP port to listen on (0 picks a free one).", minimum=0),
    Setting(
        "webhook_path",
        "str",
        "/audit/webhook",
        "URL path of the webhook endpoint; the path of the `server` in the apiserver's "
        "--audit-webhook-config-file.",
    ),
    Setting(
        "tls_cert_file", "path", None, "PEM certificate (chain) served over TLS.", flag="--tls-cert"
    ),
    Setting("tls_key_file", "path", None, "PEM private key of tls_cert_file.", flag="--tls-key"),
    Setting(
        "client_ca_file",
        "path",
        None,
        "PEM CA bundle; clients presenting a certificate it signed are authenticated and "
        "the certificate's CN becomes their identity (the `cluster` column).",
        flag="--client-ca",
    ),
    Setting(
        "tokens",
        "tokens",
        {},
        "Bearer tokens as NAME=SECRET; NAME becomes the identity (the `cluster` column). "
        "Flag repeatable; environment: comma-separated; file: a map.",
        flag="--token",
    ),
    Setting(
        "tokens_file",
        "path",
        None,
        "File of bearer tokens: lines NAME=SECRET (# comments) or a YAML map.",
    ),
    Setting(
        "insecure",
        "bool",
        False,
        "Allow listening on a non-loopback address without authentication.",
    ),
    Setting(
        "write_identities",
        "list",
        [],
        "Identities allowed to POST audit events; empty: every authenticated identity.",
        flag="--write-identity",
    ),
    Setting(
        "read_identities",
        "list",
        [],
        "Identities allowed to use the query API; empty: every authenticated identity.",
        flag="--read-identity",
    ),
    Setting(
        "default_cluster",
        "str",
        "",
        "The `cluster` value for events received without authentication (insecure mode).",
    ),
    Setting(
        "max_body_bytes",
        "int",
        64 * MiB,
        "Largest webhook body accepted (413 above, and the apiserver gives up on the batch "
        "after 5 tries). A batch is up to 400 events (--audit-webhook-batch-max-size); "
        "with truncation on, each at most 100 KiB: about 40 MiB.",
        minimum=1024,
    ),
    Setting(
        "max_inflight_bytes",
        "int",
        256 * MiB,
        "Body bytes received but not yet durable; beyond it requests get 503 with Retry-After.",
        minimum=1024,
    ),
    Setting(
        "max_pending_batches",
        "int",
        256,
        "Batches waiting to be made durable; beyond it requests get 503 with Retry-After.",
        minimum=1,
    ),
    Setting(
        "retry_after_secs",
        "int",
        2,
        "Retry-After value of 503 answers (the apiserver's client honours it).",
        minimum=0,
    ),
    Setting(
        "quarantine_max_bytes",
        "int",
        1024 * MiB,
        "Space for webhook bodies that held something other than audit events; kept in "
        "<store>/quarantine/webhook. Beyond it such bodies are only counted and logged.",
        minimum=0,
    ),
    Setting(
        "transforms",
        "list",
        [],
        "Transforms applied to each batch before it is stored, in order: "
        "`module:function` callables taking and returning a list of Records.",
        flag="--transform",
    ),
    Setting(
        "tail_paths",
        "list",
        [],
        "Audit log files to follow (as the apiserver's log backend writes them): rotated "
        "backups are read on first start, rename and copytruncate rotation followed, the "
        "position checkpointed in <store>/tail.",
        flag="--tail",
    ),
    Setting(
        "tail_cluster",
        "str",
        "",
        "The `cluster` value of events read by tail_paths.",
    ),
    Setting(
        "redact",
        "bool",
        True,
        "Replace secret material before storing: Secret data/stringData and their "
        "last-applied-configuration, TokenRequest and TokenReview tokens, PEM private keys.",
    ),
    Setting(
        "policy_file",
        "path",
        None,
        "An audit policy to shape events to before storing (drops what it records at None "
        "or in an omitted stage, strips bodies above its level): store less than the "
        "apiserver sends.",
    ),
    Setting(
        "truncate_max_event_bytes",
        "int",
        0,
        "Truncate as the apiserver's truncate backend: events larger than this lose their "
        "bodies (annotated audit.k8s.io/truncated), Metadata events larger are dropped. "
        "0: off.",
        minimum=0,
    ),
    Setting(
        "detect",
        "bool",
        True,
        "Run the detection rules on every batch once it is durable (in a process of its own: "
        "acknowledgements never wait for it); alerts go to <store>/alerts and alert_sinks, "
        "windows and first-seen state to <store>/detect.",
    ),
    Setting(
        "detect_process",
        "bool",
        True,
        "Run detection in a child process (on 2 cores it keeps acknowledgement latency "
        "low); false: in a thread of the server.",
    ),
    Setting(
        "rules_dirs",
        "list",
        [],
        "Rule files or directories loaded after the built-in pack (a rule with a built-in "
        "id replaces it).",
        flag="--rules",
    ),
    Setting(
        "allowlist_file",
        "path",
        None,
        "Allowlist file extending the rules' allowlists (`allowlist: {RULE_ID or '*': "
        "{column: [values]}}`).",
        flag="--allowlist",
    ),
    Setting(
        "alert_sinks",
        "list",
        [],
        "Where alerts go besides <store>/alerts: `stdout`, `file:PATH` (JSON Lines, 0600), "
        "`webhook:URL` (JSON POST), `slack:URL` (Slack-compatible), `alertmanager:URL` "
        "(Prometheus Alertmanager v2 API). Delivery is retried; failures are counted in "
        "/metrics.",
        flag="--alert-sink",
    ),
    Setting("query_api", "bool", True, "Serve the JSON query API under /api/v1."),
    Setting(
        "query_max_rows",
        "int",
        10000,
        "Most rows one query API answer returns.",
        minimum=1,
    ),
    Setting(
        "log_level",
        "choice",
        "info",
        "JSON log lines on stderr at this level or above: one per request at debug, "
        "one per error at warning.",
        choices=("debug", "info", "warning", "error"),
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class ServeConfig:
    """The typed, merged settings of ``kaudit serve`` (see :data:`SETTINGS`)."""

    store_path: Path | None = None
    listen_address: str = "127.0.0.1"
    port: int = 8443
    webhook_path: str = "/audit/webhook"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    tokens: dict[str, Secret] = field(default_factory=dict)
    tokens_file: Path | None = None
    insecure: bool = False
    write_identities: list[str] = field(default_factory=list)
    read_identities: list[str] = field(default_factory=list)
    default_cluster: str = ""
    max_body_bytes: int = 64 * MiB
    max_inflight_bytes: int = 256 * MiB
    max_pending_batches: int = 256
    retry_after_secs: int = 2
    quarantine_max_bytes: int = 1024 * MiB
    transforms: list[str] = field(default_factory=list)
    tail_paths: list[str] = field(default_factory=list)
    tail_cluster: str = ""
    redact: bool = True
    policy_file: Path | None = None
    truncate_max_event_bytes: int = 0
    detect: bool = True
    detect_process: bool = True
    rules_dirs: list[str] = field(default_factory=list)
    allowlist_file: Path | None = None
    alert_sinks: list[str] = field(default_factory=list)
    query_api: bool = True
    query_max_rows: int = 10000
    log_level: str = "info"
    #: Where each value came from (``default``, the file name, ``environment``, ``flag``).
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def all_tokens(self) -> dict[str, Secret]:
        """``tokens`` plus those of ``tokens_file`` (the file cannot override a name)."""
        merged = dict(load_tokens_file(self.tokens_file)) if self.tokens_file else {}
        merged.update(self.tokens)
        return merged

    @property
    def authenticated(self) -> bool:
        return bool(self.tokens or self.tokens_file or self.client_ca_file)


# --- parsing ---------------------------------------------------------------------


def _suggest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _parse_tokens(value: object, where: str, problems: list[str]) -> dict[str, Secret]:
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(v, str | int) or isinstance(v, bool):
                problems.append(f"{where}.{k}: expected a string secret")
                continue
            pairs.append((str(k), str(v)))
    else:
        items: list[object]
        if isinstance(value, str):
            items = [p for p in value.split(",") if p.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            problems.append(f"{where}: expected NAME=SECRET pairs or a map of name to secret")
            return {}
        for item in items:
            text = str(item).strip()
            name, sep, secret = text.partition("=")
            if not sep:
                problems.append(f'{where}: expected NAME=SECRET, got "{_mask(text)}"')
                continue
            pairs.append((name.strip(), secret.strip()))
    out: dict[str, Secret] = {}
    for name, secret in pairs:
        if not name:
            problems.append(f"{where}: a token has an empty name")
        elif not secret:
            problems.append(f"{where}.{name}: the secret is empty")
        elif name in out:
            problems.append(f'{where}: token name "{name}" given twice')
        else:
            out[name] = Secret(secret)
    return out


def _mask(text: str) -> str:
    return text if "=" not in text else text.partition("=")[0] + "=********"


def _coerce(setting: Setting, value: object, where: str, problems: list[str]) -> object:
    """``value`` as the setting's type, or ``_INVALID`` after noting the problem."""
    t = setting.type
    if value is None:
        return None if setting.default is None else _invalid(where, "a value", value, problems)
    if t == "tokens":
        return _parse_tokens(value, where, problems)
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        return _invalid(where, "a boolean (true or false)", value, problems)
    if t == "int":
        n: int
        if isinstance(value, bool):
            return _invalid(where, "an integer", value, problems)
        if isinstance(value, int):
            n = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            n = int(value.strip())
        else:
            return _invalid(where, "an integer", value, problems)
        if setting.minimum is not None and n < setting.minimum:
            problems.append(f"{where}: must be at least {setting.minimum}, got {n}")
            return _INVALID
        return n
    if t == "list":
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        return _invalid(where, "a list of strings", value, problems)
    if not isinstance(value, str):
        return _invalid(where, "a string", value, problems)
    if t == "path":
        return Path(value).expanduser() if value else None
    if t == "choice":
        if value not in setting.choices:
            choices = ", ".join(f'"{c}"' for c in setting.choices)
            problems.append(
                f'{where}: Unsupported value: "{value}": supported values: {choices}'
                + _suggest(value, setting.choices)
            )
            return _INVALID
        return value
    return value


_BOOLS = {
    "true": True,
    "yes": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "0": False,
    "off": False,
}
_INVALID = object()


def _invalid(where: str, expected: str, value: object, problems: list[str]) -> object:
    problems.append(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")
    return _INVALID


def read_config_file(path: Path, problems: list[str]) -> dict[str, object]:
    """The mapping in a YAML config file (problems noted, never raised)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{path}: cannot read the config file: {exc.strerror or exc}")
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(f"{where}: invalid YAML: {problem}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a map of settings, got {type(data).__name__}")
        return {}
    return data


def _key_lines(path: Path) -> dict[str, int]:
    """Line numbers of the top-level keys of a YAML file, for error locations."""
    out: dict[str, int] = {}
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return out
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            out[str(k.value)] = k.start_mark.line + 1
    return out


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> ServeConfig:
    """Merge defaults < ``config_file`` < ``env`` < ``flags`` into a :class:`ServeConfig`.

    ``env`` defaults to ``os.environ``; ``flags`` maps setting names to values
    (``None`` = not given). Raises :class:`ConfigError` listing every problem.
    """
    config, problems = _load(config_file, env, flags)
    if problems:
        raise ConfigError(_summary(problems), problems)
    return config


def _load(
    config_file: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    flags: Mapping[str, object] | None,
) -> tuple[ServeConfig, list[str]]:
    """The config from every valid value, and the problems with the others."""
    problems: list[str] = []
    values: dict[str, object] = {}
    origins: dict[str, str] = {s.name: "default" for s in SETTINGS}
    if config_file is not None:
        path = Path(config_file)
        data = read_config_file(path, problems)
        lines = _key_lines(path) if data else {}
        for key, raw in data.items():
            where = f"{path}:{lines[str(key)]}" if str(key) in lines else str(path)
            setting = SETTINGS_BY_NAME.get(str(key))
            if setting is None:
                problems.append(
                    f'{where}: unknown setting "{key}"' + _suggest(str(key), list(SETTINGS_BY_NAME))
                )
                continue
            v = _coerce(setting, raw, f"{where}: {key}", problems)
            if v is not _INVALID:
                values[setting.name] = v
                origins[setting.name] = str(path)
    environ = os.environ if env is None else env
    for setting in SETTINGS:
        if setting.env_var in environ:
            v = _coerce(setting, environ[setting.env_var], f"${setting.env_var}", problems)
            if v is not _INVALID:
                values[setting.name] = v
                origins[setting.name] = "environment"
    for name, raw in (flags or {}).items():
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            raise KeyError(f"no setting named {name}")  # a programming error
        if raw is None or (setting.type in ("list", "tokens") and raw == ()):
            continue
        v = _coerce(setting, raw, setting.flag_name, problems)
        if v is not _INVALID:
            values[setting.name] = v
            origins[setting.name] = "flag"
    known = {f.name for f in fields(ServeConfig)}
    kwargs = {k: v for k, v in values.items() if k in known}
    return ServeConfig(**kwargs, origins=origins), problems  # type: ignore[arg-type]


def _summary(problems: Sequence[str]) -> str:
    n = len(problems)
    return problems[0] if n == 1 else f"{n} configuration problems: " + "; ".join(problems)


# --- end-to-end checks -----------------------------------------------------------


def load_tokens_file(path: Path) -> dict[str, Secret]:
    """Tokens from a file of ``NAME=SECRET`` lines or a YAML map (raises ConfigError)."""
    problems: list[str] = []
    tokens = _read_tokens_file(path, problems)
    if problems:
        raise ConfigError(_summary(problems), problems)
    return tokens


def _read_tokens_file(path: Path, problems: list[str]) -> dict[str, Secret]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read the tokens file: {exc}")
        return {}
    lines = [
        (i + 1, ln.strip())
        for i, ln in enumerate(text.splitlines())
        if ln.strip() and not ln.strip().startswith("#")
    ]
    if not lines:
        problems.append(f"{path}: the tokens file holds no tokens")
        return {}
    if all("=" in ln and not ln.startswith("{") for _, ln in lines):
        out: dict[str, Secret] = {}
        for lineno, ln in lines:
            found = _parse_tokens([ln], f"{path}:{lineno}", problems)
            for name in found:
                if name in out:
                    problems.append(f'{path}:{lineno}: token name "{name}" given twice')
            out.update(found)
        return out
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(f"{path}: expected NAME=SECRET lines or a YAML map: {exc}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected NAME=SECRET lines or a YAML map of name to secret")
        return {}
    return _parse_tokens(data, str(path), problems)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_readable(path: Path | None, what: str, problems: list[str]) -> bool:
    if path is None:
        return False
    if not path.exists():
        problems.append(f"{what}: {path}: no such file")
        return False
    if not path.is_file() or not os.access(path, os.R_OK):
        problems.append(f"{what}: {path}: not a readable file")
        return False
    return True


def _check_store_writable(path: Path, problems: list[str]) -> None:
    probe = path
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if path.exists() and not path.is_dir():
        problems.append(f"store_path: {path}: exists and is not a directory")
        return
    if not os.access(probe, os.W_OK | os.X_OK):
        problems.append(f"store_path: {path}: not writable ({probe} does not allow it)")
        return
    if path.exists():
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            problems.append(f"store_path: {path}: cannot create a file: {exc.strerror or exc}")


def resolve_store_path(config: ServeConfig, env: Mapping[str, str] | None = None) -> Path:
    if config.store_path is not None:
        return config.store_path
    environ = os.environ if env is None else env
    return Path(environ.get("KAUDIT_STORE") or "kaudit-data")


def import_transform(spec: str) -> Callable[[list[Any]], list[Any]]:
    """Import a ``module:function`` transform (raises ConfigError)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f'transforms: "{spec}": expected module:function')
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f'transforms: "{spec}": cannot import {mod_name}: {exc}') from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise ConfigError(f'transforms: "{spec}": {mod_name} has no callable "{attr}"')
    return func  # type: ignore[no-any-return]


def check_config(config: ServeConfig, *, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem that would stop ``kaudit serve`` from running safely."""
    problems: list[str] = []
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        problems.append("tls_cert_file and tls_key_file must be given together")
    cert_ok = _check_readable(config.tls_cert_file, "tls_cert_file", problems)
    key_ok = _check_readable(config.tls_key_file, "tls_key_file", problems)
    if cert_ok and key_ok:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(str(config.tls_cert_file), str(config.tls_key_file))
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if "KEY_VALUES_MISMATCH" in str(exc):
                reason = "the key does not match the certificate"
            problems.append(
                f"tls_cert_file/tls_key_file: {config.tls_cert_file}, {config.tls_key_file}: "
                f"cannot load: {reason}"
            )
        except OSError as exc:
            problems.append(f"tls_cert_file: cannot load: {exc}")
    if _check_readable(config.client_ca_file, "client_ca_file", problems):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_verify_locations(cafile=str(config.client_ca_file))
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"client_ca_file: {config.client_ca_file}: not a PEM CA bundle: {exc}")
    if config.client_ca_file is not None and not config.tls:
        problems.append("client_ca_file needs TLS: set tls_cert_file and tls_key_file")
    if _check_readable(config.tokens_file, "tokens_file", problems):
        assert config.tokens_file is not None
        _read_tokens_file(config.tokens_file, problems)
    if not config.authenticated and not is_loopback(config.listen_address):
        if not config.insecure:
            problems.append(
                f"listen_address: {config.listen_address} is not a loopback address and no "
                "authentication is configured (tokens, tokens_file or client_ca_file); "
                "configure one, or set insecure (--insecure) to accept anyone"
            )
    if (
        not config.tls
        and (config.tokens or config.tokens_file)
        and not is_loopback(config.listen_address)
    ):
        problems.append(
            f"tokens: bearer tokens over plain http on {config.listen_address}: the apiserver "
            "sends tokens only to https URLs; set tls_cert_file and tls_key_file"
        )
    if not config.webhook_path.startswith("/"):
        problems.append(f'webhook_path: must start with "/", got "{config.webhook_path}"')
    elif config.webhook_path.rstrip("/") in ("/metrics", "/healthz", "/readyz", "/api"):
        problems.append(f'webhook_path: "{config.webhook_path}" is used by another endpoint')
    _check_store_writable(resolve_store_path(config, env), problems)
    for spec in config.transforms:
        try:
            import_transform(spec)
        except ConfigError as exc:
            problems.append(exc.message)
    for tail in config.tail_paths:
        parent = Path(tail).parent
        if not parent.is_dir():
            problems.append(f"tail_paths: {tail}: the directory {parent} does not exist")
    if _check_readable(config.policy_file, "policy_file", problems):
        from kaudit.errors import PolicyDecodeError, PolicyError, PolicyInvalidError
        from kaudit.policy import load_policy

        assert config.policy_file is not None
        try:
            load_policy(config.policy_file)
        except PolicyDecodeError as exc:
            problems.extend(f"policy_file: {p}" for p in exc.problems)
        except PolicyInvalidError as exc:
            problems.extend(f"policy_file: {config.policy_file}: {e}" for e in exc.errors)
        except PolicyError as exc:
            problems.append(f"policy_file: {exc}")
    if config.detect:
        problems += _check_detection(config)
    return problems


def _check_detection(config: ServeConfig) -> list[str]:
    """The rules and allowlist load and validate; every alert sink spec is usable."""
    from kaudit.detect.rule import RuleSetError, load_rules
    from kaudit.sinks import check_sink_spec

    problems: list[str] = []
    allow_ok = config.allowlist_file is None or _check_readable(
        config.allowlist_file, "allowlist_file", problems
    )
    try:
        load_rules(config.rules_dirs, allowlist=config.allowlist_file if allow_ok else None)
    except RuleSetError as exc:
        problems += [f"rules: {p}" for p in exc.problems]
    for spec in config.alert_sinks:
        problems += check_sink_spec(spec)
    return problems


def validate(
    config_file: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> ServeConfig:
    """Load and check end to end; raise one ConfigError with every problem."""
    config, problems = _load(config_file, env, flags)
    problems += check_config(config, env=env)
    if problems:
        raise ConfigError(_summary(problems), problems)
    return config


# --- documentation ---------------------------------------------------------------


def _default_text(s: Setting) -> str:
    if s.default is None:
        return "unset"
    if s.type == "bool":
        return "true" if s.default else "false"
    if s.type in ("list", "tokens"):
        return "empty"
    if s.type == "int" and s.default >= MiB and s.default % MiB == 0:
        return f"{s.default} ({s.default // MiB} MiB)"
    return f'"{s.default}"' if isinstance(s.default, str) else str(s.default)


def _type_text(s: Setting) -> str:
    if s.type == "choice":
        return " \\| ".join(s.choices)
    return {"tokens": "map of name to secret", "list": "list of strings"}.get(s.type, s.type)


def settings_reference() -> str:
    """The Markdown settings reference (a table generated from :data:`SETTINGS`)."""
    rows = [
        "| Setting (`kaudit.yaml`) | Flag | Environment | Type | Default | Description |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = s.flag_name
        if s.type == "bool":
            flag = f"{flag} / --no-{flag[2:]}"
        elif s.type in ("list", "tokens"):
            flag += " (repeatable)"
        rows.append(
            f"| `{s.name}` | `{flag}` | `{s.env_var}` | {_type_text(s)} | {_default_text(s)} "
            f"| {s.help} |"
        )
    return "\n".join(rows) + "\n"
