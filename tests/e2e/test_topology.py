"""The production topology end to end, driven from outside: tokens issued with manage.py, the reminder sweep fired by
beat's schedule, reminders received over SMTP, /v2/privileges and the stats API over HTTP, health, static files."""

import datetime as dt
import json
import re

import pytest

from tests.e2e.topology import Topology, issued_on_for, today

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ENDPOINT = "api/v3/entreprises_restored"


def test_production_topology(report):
    with Topology(beat_interval=3, extra_env={"REMINDER_DELIVERY_INTERVAL": "2"}) as topo:
        status, health = topo.get_json("/healthz")
        report(f"/healthz before any sweep: {status} {health['status']} (no sweep recorded yet)")
        assert status == 503 and not health["checks"]["reminder_sweep"]["ok"]
        assert all(health["checks"][c]["ok"] for c in ("database", "cache", "broker"))

        # Tokens from outside, one per reminder threshold and one of the old platform.
        secrets = {}
        for days_left, origin in ((10, "api_gouv"), (25, "api_gouv"), (80, "demarches_simplifiees")):
            out = topo.manage(
                "issue_token",
                "--siret",
                "13002526500013",
                "--name",
                "DINUM",
                "--privileges",
                "entreprises,attestations_fiscales_dgfip",
                "--issued-at",
                issued_on_for(days_left).isoformat(),
                "--origin",
                origin,
                "--contact",
                f"holder-{days_left}@e2e.example",
                "--contact",
                f"HOLDER-{days_left}@E2E.example",
                "--label",
                f"e2e {days_left}",
            )
            secrets[days_left] = out.stdout.strip().splitlines()[-1]
        fresh = topo.manage("issue_token", "--siret", "13002526500013", "--privileges", "entreprises")
        secrets[0] = fresh.stdout.strip().splitlines()[-1]
        report("issued 4 tokens with manage.py issue_token (10, 25, 80 days left; one fresh)")

        topo.start_beat()
        mails = topo.wait_until(
            lambda: len(topo.messages()) >= 3 and topo.messages(), timeout=90, what="three reminders"
        )
        report(f"beat's sweep (every 3 s) queued them; the sink received {len(mails)} mails")
        by_threshold = {m["X-Reminder-Threshold"]: m for m in mails}
        assert sorted(by_threshold, key=int) == ["15", "30", "90"]
        assert len(mails) == 3
        for threshold, days_left in (("15", 10), ("30", 25), ("90", 80)):
            message = by_threshold[threshold]
            route = "demarches_simplifiees" if days_left == 80 else "api_gouv"
            assert message["X-Reminder-Route"] == route
            assert re.fullmatch(r"[0-9a-f-]{36}", message["X-Token-Id"])
            # Contacts deduplicated case-insensitively: one address in To.
            assert message["To"].lower().count(f"holder-{days_left}@e2e.example") == 1
            parts = [p for p in message.walk() if p.get_content_type() in ("text/plain", "text/html")]
            assert {p.get_content_type() for p in parts} == {"text/plain", "text/html"}
            plain = next(p for p in parts if p.get_content_type() == "text/plain")
            text = plain.get_payload(decode=True).decode(plain.get_content_charset() or "utf-8")
            assert topo.env["SITE_URL"] in text
            assert secrets[days_left] not in message.as_string()
        report("headers X-Reminder-Threshold 15/30/90, X-Reminder-Route and X-Token-Id as in docs/emails.md")

        # Later sweeps of the same day send nothing more.
        sweeps_before = int(topo.sql("SELECT count(*) FROM notifications_sweeprun")[0][0])
        topo.wait_until(
            lambda: int(topo.sql("SELECT count(*) FROM notifications_sweeprun")[0][0]) >= sweeps_before + 2,
            timeout=30,
            what="two more sweeps",
        )
        assert len(topo.messages()) == 3
        report("two more scheduled sweeps: still 3 mails")

        status, health = topo.get_json("/healthz")
        report(f"/healthz after the sweep: {status} {health['status']}")
        assert status == 200 and health["status"] == "ok"
        assert health["checks"]["reminder_sweep"]["age_hours"] < 1

        # /v2/privileges over HTTP, query parameter and bearer header.
        status, body = topo.get_json(f"/v2/privileges?token={secrets[10]}")
        assert (status, body) == (200, {"privileges": ["attestations_fiscales_dgfip", "entreprises"]})
        status, body = topo.get_json("/v2/privileges", headers={"Authorization": f"Bearer {secrets[0]}"})
        assert (status, body) == (200, {"privileges": ["entreprises"]})
        status, headers, raw = topo.get(
            "/v2/privileges?token=nope", headers={"X-Request-ID": "e2e-request-0001"}
        )
        assert status == 401 and json.loads(raw)["errors"][0]["code"] == "invalid_token"
        assert headers["X-Request-ID"] == "e2e-request-0001"
        report("/v2/privileges: 200 with the privileges, 401 JSON for an unknown token")

        # Stats API after ingesting a few calls.
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        lines = [
            {"timestamp": (now - dt.timedelta(minutes=i)).isoformat(), "endpoint": ENDPOINT, "status": s}
            for i, s in enumerate([200] * 7 + [404, 502, 503])
        ]
        topo.manage("ingest_calls", "-", input="\n".join(json.dumps(line) for line in lines) + "\n")
        status, stats = topo.get_json(
            f"/api/watchdoge/stats/provider_availabilities?period=1d&endpoint={ENDPOINT}"
        )
        assert status == 200, stats
        totals = {
            k: sum(day[k] for day in stats["days_availability"].values())
            for k in ("total", "404", "502", "503")
        }
        assert totals == {"total": 10, "404": 1, "502": 1, "503": 1}
        assert stats["total_availability"] == 80.0
        assert today().isoformat() in stats["days_availability"]
        report(
            f"ingested 10 calls; stats API: total_availability {stats['total_availability']}, days {totals}"
        )

        # Static files: whitenoise, hashed names from the manifest, DEBUG off.
        status, ready = topo.get_json("/readyz")
        assert ready == {"status": "ready", "debug": False}
        manifest = json.loads((topo.static_root / "staticfiles.json").read_text())["paths"]
        name = next(n for n in sorted(manifest) if n.endswith(".css"))
        status, headers, body = topo.get(f"/static/{manifest[name]}", headers={"Accept-Encoding": "gzip"})
        assert status == 200 and body
        assert "immutable" in headers.get("Cache-Control", "")
        report(
            f"static /static/{manifest[name]}: 200, {headers.get('Cache-Control')}, {headers.get('Content-Encoding')}"
        )

        # JSON logs: one object per line with a request_id field (the id itself is echoed on the response above).
        entries = [json.loads(line) for line in topo.log("web").splitlines() if line.startswith("{")]
        assert entries and all(
            {"time", "level", "logger", "message", "request_id"} <= e.keys() for e in entries
        )
        unauthorized = [
            e for e in entries if e["logger"] == "django.request" and "/v2/privileges" in e["message"]
        ]
        report(
            f"web log: {len(entries)} JSON lines; django.request's 401 line has request_id "
            f"{unauthorized[-1]['request_id'] if unauthorized else None!r}"
        )
