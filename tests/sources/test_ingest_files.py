"""Naming inputs: rotated sets oldest first, directories, gzip by content, bad paths."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ingest_samples import lines, write

from kaudit.sources.files import (
    Input,
    backup_name,
    expand_paths,
    open_input,
    split_backup,
)


def names(paths: list[Input]) -> list[str]:
    return [Path(i.name).name for i in paths]


@pytest.mark.parametrize(
    ("live", "when", "backup"),
    [
        (
            "audit.log",
            datetime(2024, 5, 6, 7, 8, 9, 123456, UTC),
            "audit-2024-05-06T07-08-09.123.log",
        ),
        ("audit", datetime(2024, 5, 6, 7, 8, 9, 0, UTC), "audit-2024-05-06T07-08-09.000"),
        (
            "kube-apiserver-audit.json.log",
            datetime(1999, 12, 31, 23, 59, 59, 999999, UTC),
            "kube-apiserver-audit.json-1999-12-31T23-59-59.999.log",
        ),
    ],
)
def test_backup_names_are_lumberjacks(live: str, when: datetime, backup: str) -> None:
    assert backup_name(live, when) == backup
    split = split_backup(backup)
    assert split is not None
    assert split[0] == live
    assert split[1] == when.replace(microsecond=when.microsecond // 1000 * 1000)
    gz = split_backup(backup + ".gz")
    assert gz is not None and gz[0] == live


@pytest.mark.parametrize(
    "name", ["audit.log", "audit-2024-05-06.log", "audit-2024-13-06T07-08-09.123.log", "x.gz"]
)
def test_not_backups(name: str) -> None:
    assert split_backup(name) is None


def test_live_file_brings_its_backups_oldest_first(tmp_path: Path) -> None:
    # Written newest first, so neither creation order nor mtime gives the answer.
    for name in [
        "audit-2024-05-07T00-00-00.000.log.gz",
        "audit-2024-05-06T10-00-00.500.log",
        "audit-2024-05-06T10-00-00.050.log.gz",
        "audit-extra-2024-05-01T00-00-00.000.log",  # the backup of audit-extra.log
        "other-2024-05-01T00-00-00.000.log",
    ]:
        write(tmp_path / name, b"")
    write(tmp_path / "audit.log", b"")
    got = expand_paths([str(tmp_path / "audit.log")])
    assert not got.errors
    assert names(got.inputs) == [
        "audit-2024-05-06T10-00-00.050.log.gz",
        "audit-2024-05-06T10-00-00.500.log",
        "audit-2024-05-07T00-00-00.000.log.gz",
        "audit.log",
    ]
    assert got.inputs[0].rotated_at == datetime(2024, 5, 6, 10, 0, 0, 50000, UTC)
    assert names(expand_paths([str(tmp_path / "audit.log")], rotated=False).inputs) == ["audit.log"]


def test_directory_groups_rotated_sets(tmp_path: Path) -> None:
    for name in [
        "b.log",
        "b-2024-01-02T00-00-00.000.log",
        "a.log",
        "a-2024-01-03T00-00-00.000.log",
        "a-2024-01-01T00-00-00.000.log.gz",
        # lumberjack compressing: the uncompressed backup is the complete one
        "a-2024-01-02T00-00-00.000.log",
        "a-2024-01-02T00-00-00.000.log.gz",
        # backups whose live file is gone are still read
        "c-2024-01-01T00-00-00.000.log",
        ".hidden.log",
    ]:
        write(tmp_path / name, b"")
    (tmp_path / "subdir").mkdir()
    got = expand_paths([str(tmp_path)])
    assert names(got.inputs) == [
        "a-2024-01-01T00-00-00.000.log.gz",
        "a-2024-01-02T00-00-00.000.log",
        "a-2024-01-03T00-00-00.000.log",
        "a.log",
        "b-2024-01-02T00-00-00.000.log",
        "b.log",
        "c-2024-01-01T00-00-00.000.log",
    ]


def test_each_file_once_and_bad_paths_named(tmp_path: Path) -> None:
    live = write(tmp_path / "audit.log", b"")
    backup = write(tmp_path / "audit-2024-01-01T00-00-00.000.log", b"")
    got = expand_paths([str(backup), str(live), str(tmp_path / "missing.log"), "-", str(live), "-"])
    assert names(got.inputs) == ["audit-2024-01-01T00-00-00.000.log", "audit.log", "<stdin>"]
    assert [str(e) for e in got.errors] == [
        f"{tmp_path / 'missing.log'}: no such file or directory"
    ]


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    data = lines(0, 3)
    disguised = write(tmp_path / "audit.log", gzip.compress(data))
    plain = write(tmp_path / "audit.log.gz", data)
    for path, compressed in ((disguised, True), (plain, False)):
        with open_input(Input(str(path), path)) as opened:
            assert opened.compressed is compressed
            assert opened.stream.read() == data


def test_concatenated_gzip_members_are_read_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "x", gzip.compress(lines(0, 2)) + gzip.compress(lines(2, 4)))
    with open_input(Input(str(path), path)) as opened:
        assert opened.stream.read() == lines(0, 4)
