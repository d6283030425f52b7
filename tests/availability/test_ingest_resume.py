"""`ingest_calls` counts a content once: a re-run after a crash resumes, a re-run of a completed file adds nothing."""

import io

import pytest
from django.core.management import call_command

from availability import services
from availability.models import IngestedFile, MinuteCounter

from .conftest import line, paris

pytestmark = pytest.mark.django_db

# 23 lines over 3 minutes and 2 statuses, one bad line (line 8).
LINES = [line(paris(2026, 11, 27, 10, n % 3), 200 if n % 4 else 503) for n in range(23)]
LINES[7] = "{pas du json"


def counters() -> dict:
    return {(m.endpoint_id, m.minute, m.status): m.count for m in MinuteCounter.objects.all()}


def command(path_or_dash, capsys, *, chunk_lines=5, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = 0
    try:
        call_command("ingest_calls", str(path_or_dash), chunk_lines=chunk_lines)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def calls_file(tmp_path):
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return path


@pytest.fixture
def clean_run(calls_file, capsys):
    """The counters of one uninterrupted run, then an empty database again."""
    command(calls_file, capsys, chunk_lines=100)
    expected = counters()
    MinuteCounter.objects.all().delete()
    IngestedFile.objects.all().delete()
    assert sum(expected.values()) == 22
    return expected


class Crash(Exception):
    """Stands for the process dying in the middle of a chunk's transaction."""


def crash_after(monkeypatch, chunks: int):
    """The (chunks + 1)-th chunk transaction fails after writing its counters (rolled back with them)."""
    real = services._touch_activity
    seen = [0]

    def touch(last_calls):
        real(last_calls)
        seen[0] += 1
        if seen[0] > chunks:
            raise Crash

    monkeypatch.setattr(services, "_touch_activity", touch)


@pytest.mark.parametrize("chunks_before_crash", [0, 1, 2, 3])
def test_rerun_after_a_crash_counts_nothing_twice(
    calls_file, capsys, monkeypatch, clean_run, chunks_before_crash
):
    with monkeypatch.context() as patch:
        crash_after(patch, chunks_before_crash)
        with pytest.raises(Crash):
            command(calls_file, capsys)
    capsys.readouterr()
    record = IngestedFile.objects.get()
    assert record.completed_at is None
    assert record.accepted == sum(counters().values())  # counters and offset committed together
    code, out, err = command(calls_file, capsys)
    assert counters() == clean_run
    if chunks_before_crash:
        assert f"reprise à la ligne {record.committed_lines + 1}" in out
    assert "total du fichier : 22 appels comptés, 1 lignes rejetées" in out or not chunks_before_crash
    assert code == 1  # the file has a bad line
    # A bad line is reported once over the runs: by the run that committed its chunk.
    assert ("ligne 8 :" in err) == (record.committed_lines < 8)
    record.refresh_from_db()
    assert (record.accepted, record.rejected, record.committed_offset) == (22, 1, calls_file.stat().st_size)
    assert record.completed_at is not None


def test_rerun_of_a_completed_file_adds_nothing(calls_file, capsys, clean_run):
    command(calls_file, capsys)
    assert counters() == clean_run
    code, out, _ = command(calls_file, capsys)
    assert "rien n'a été ajouté" in out and "22 appels comptés, 1 lignes rejetées" in out
    assert code == 0
    assert counters() == clean_run
    # The same content under another name, or on standard input, is the same content.
    copy = calls_file.with_name("copy.jsonl")
    copy.write_bytes(calls_file.read_bytes())
    command(copy, capsys)
    assert counters() == clean_run


def test_stdin_is_all_or_nothing_and_counted_once(calls_file, capsys, monkeypatch, clean_run):
    data = calls_file.read_bytes()
    with monkeypatch.context() as patch:
        crash_after(patch, 2)
        with pytest.raises(Crash):
            command("-", capsys, stdin=data, monkeypatch=patch)
    assert counters() == {}  # one transaction: the crash committed nothing
    code, out, _ = command("-", capsys, stdin=data, monkeypatch=monkeypatch)
    assert counters() == clean_run and code == 1
    code, out, _ = command("-", capsys, stdin=data, monkeypatch=monkeypatch)
    assert "rien n'a été ajouté" in out
    command(calls_file, capsys)  # the same content as a file
    assert counters() == clean_run
    # Another content on standard input is counted.
    command("-", capsys, stdin=(LINES[0] + "\n").encode(), monkeypatch=monkeypatch)
    assert sum(counters().values()) == 23


def test_file_appended_after_its_run_is_another_content(calls_file, capsys, clean_run):
    command(calls_file, capsys)
    with calls_file.open("a") as f:
        f.write(LINES[0] + "\n")
    command(calls_file, capsys)
    assert IngestedFile.objects.count() == 2  # documented: a grown file is counted again in full
    assert sum(counters().values()) == 22 + 23


def test_overlong_line_in_a_file(tmp_path, capsys, settings):
    settings.AVAILABILITY_INGEST_MAX_LINE_BYTES = 300
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join([LINES[0], "z" * 10_000, LINES[1]]) + "\n")
    code, out, err = command(path, capsys)
    assert code == 1
    assert "ligne 2 : ligne trop longue (plus de 300 octets)" in err
    assert "2 appels comptés, 1 lignes rejetées" in out
