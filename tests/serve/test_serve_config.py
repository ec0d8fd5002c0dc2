"""Settings as data: precedence, every problem at once, masked secrets, generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from serve_harness import Certs

from kaudit.cli import main
from kaudit.config import SETTINGS, Secret, load_config, settings_reference, validate
from kaudit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    f = tmp_path / "kaudit.yaml"
    f.write_text("port: 9000\nwebhook_path: /from-file\nmax_body_bytes: 2048\n")
    env = {"KAUDIT_PORT": "9100", "KAUDIT_WEBHOOK_PATH": "/from-env"}
    cfg = load_config(f, env=env, flags={"port": 9200, "listen_address": None})
    assert (cfg.port, cfg.webhook_path, cfg.max_body_bytes) == (9200, "/from-env", 2048)
    assert cfg.listen_address == "127.0.0.1"
    assert cfg.origins["port"] == "flag"
    assert cfg.origins["webhook_path"] == "environment"
    assert cfg.origins["max_body_bytes"] == str(f)


def test_unknown_key_gets_a_suggestion_and_every_problem_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "kaudit.yaml"
    f.write_text("prot: 1\nmax_body_bytes: lots\nlog_level: verbose\ninsecure: maybe\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, env={"KAUDIT_QUERY_MAX_ROWS": "0"})
    problems = err.value.problems
    assert any(f'{f}:1: unknown setting "prot" (did you mean "port"?)' in p for p in problems)
    assert any(f"{f}:2: max_body_bytes: expected an integer" in p for p in problems)
    assert any('Unsupported value: "verbose"' in p for p in problems)
    assert any("insecure: expected a boolean" in p for p in problems)
    assert any("$KAUDIT_QUERY_MAX_ROWS: must be at least 1, got 0" in p for p in problems)
    assert len(problems) == 5


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "kaudit.yaml"
    f.write_text("port: 1\n  bad: [\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, env={})
    assert err.value.problems[0].startswith(f"{f}:2:")


def test_secrets_are_masked() -> None:
    cfg = load_config(None, env={"KAUDIT_TOKENS": "a=topsecret,b=hunter2"})
    assert cfg.tokens == {"a": Secret("topsecret"), "b": Secret("hunter2")}
    assert "topsecret" not in repr(cfg) and "hunter2" not in repr(cfg)
    assert cfg.tokens["a"].reveal() == "topsecret"


@pytest.mark.parametrize(
    "text",
    ["# tokens\nprod=abc\n\nstaging = def\n", "prod: abc\nstaging: def\n"],
    ids=["lines", "yaml"],
)
def test_tokens_file_formats(tmp_path: Path, text: str) -> None:
    f = tmp_path / "tokens"
    f.write_text(text)
    cfg = load_config(None, env={}, flags={"tokens_file": str(f)})
    assert cfg.all_tokens() == {"prod": Secret("abc"), "staging": Secret("def")}


def test_empty_token_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="prod: the secret is empty"):
        load_config(None, env={}, flags={"tokens": ["prod="]})


def test_validate_end_to_end_reports_everything(tmp_path: Path, certs: Certs) -> None:
    f = tmp_path / "kaudit.yaml"
    f.write_text(
        f"listen_address: 0.0.0.0\ntls_cert_file: {certs.server_cert}\n"
        f"tls_key_file: {certs.client_key}\nclient_ca_file: {tmp_path / 'missing.pem'}\n"
        "transforms: ['no_such_module_xyz:f']\nwebhook_path: metrics\n"
        f"store_path: {tmp_path / 'store'}\n"
    )
    with pytest.raises(ConfigError) as err:
        validate(f, env={})
    text = "\n".join(err.value.problems)
    assert "the key does not match the certificate" in text
    assert "missing.pem: no such file" in text
    assert "no_such_module_xyz" in text
    assert 'webhook_path: must start with "/"' in text
    # client_ca_file is set (if missing), so the address counts as authenticated.
    assert len(err.value.problems) == 4


def test_validate_cli_exit_codes(tmp_path: Path, certs: Certs) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        main,
        ["validate", "--store", str(tmp_path / "s"), "--tls-cert", str(certs.server_cert),
         "--tls-key", str(certs.server_key), "--token", "prod=x", "--host", "0.0.0.0"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "ok: https://0.0.0.0:8443/audit/webhook, authentication: bearer tokens" in ok.output
    bad = runner.invoke(main, ["validate", "--store", str(tmp_path / "s"), "--host", "10.1.2.3",
                               "--port", "-1"])  # fmt: skip
    assert bad.exit_code == 78
    assert "error: --port: must be at least 0, got -1" in bad.output
    assert "error: listen_address: 10.1.2.3 is not a loopback address" in bad.output
    insecure = runner.invoke(
        main, ["validate", "--store", str(tmp_path / "s"), "--host", "10.1.2.3", "--insecure"]
    )
    assert insecure.exit_code == 0, insecure.output


def test_every_setting_has_a_flag_in_help() -> None:
    out = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    for s in SETTINGS:
        assert s.flag_name in out, s.name


def test_settings_reference_in_docs_is_generated_from_the_table() -> None:
    doc = (ROOT / "docs" / "serve.md").read_text()
    start = doc.index("<!-- settings:start")
    start = doc.index("\n", start) + 1
    end = doc.index("<!-- settings:end -->")
    assert doc[start:end] == settings_reference(), (
        "docs/serve.md is out of date: regenerate the settings reference from "
        "kaudit.config.settings_reference()"
    )
    for s in SETTINGS:
        assert f"| `{s.name}` |" in doc, f"setting {s.name} is undocumented"


def test_tokens_over_plain_http_off_loopback_can_never_work(tmp_path: Path) -> None:
    args = ["validate", "--store", str(tmp_path / "s"), "--host", "10.1.2.3", "--token", "a=b"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 78
    assert "the apiserver sends tokens only to https URLs" in r.output
    # On loopback (trying it out) it is allowed.
    r = CliRunner().invoke(main, ["validate", "--store", str(tmp_path / "s"), "--token", "a=b"])
    assert r.exit_code == 0, r.output
