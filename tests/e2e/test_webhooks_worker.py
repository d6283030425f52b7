"""Webhook deliveries travel on their own Celery queue, and the topology's workers consume it."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

EMIT = """
from notifications.models import WebhookEndpoint
from notifications.webhooks import webhook_emit
from tokens.models import Client

client = Client.objects.get(siret="13002526500013")
WebhookEndpoint.objects.create(client=client, url="{url}", secret="whsec_e2e")
print(webhook_emit(client=client, event_type="ping", payload={{"message": "ping"}}).id)
"""


def test_a_webhook_is_delivered_by_a_worker_of_the_webhooks_queue(report):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Topology(extra_env={"WEBHOOK_ALLOW_LOOPBACK": "1"}) as topo:
            topo.manage("issue_token", "--siret", "13002526500013", "--privileges", "entreprises")
            url = f"http://127.0.0.1:{server.server_port}/hook"
            event_id = topo.manage("shell", "-c", EMIT.format(url=url)).stdout.strip().splitlines()[-1]
            topo.wait_until(lambda: received, timeout=60, what="the webhook delivery")
            assert received[0][0]["X-Webhook-Id"] == event_id
            query = "SELECT status, coalesce(lease_until::text, '-') FROM notifications_webhookdelivery"
            rows = topo.wait_until(
                lambda: (rows := topo.sql(query)) and rows[0][0] == "delivered" and rows,
                timeout=30,
                what="the delivery settled",
            )
            assert rows == [("delivered", "-")]
            report(
                f"ping {event_id} routed to the `webhooks` queue, delivered by a worker (-Q celery,webhooks)"
            )
    finally:
        server.shutdown()
        server.server_close()
