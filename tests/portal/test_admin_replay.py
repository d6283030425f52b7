"""Replaying webhook deliveries from the admin: the change permission is required, each replay is recorded."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse

from notifications import webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifications_webhookdelivery_changelist")


@pytest.fixture
def failed(own_client, _no_broker):
    WebhookEndpoint.objects.create(client=own_client, url="https://x.example.fr/hook", secret="s")
    event = webhooks.webhook_emit(client=own_client, event_type="ping", payload={})
    delivery = event.deliveries.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.FAILED, attempts=5)
    return delivery


def _replay(client, delivery):
    return client.post(CHANGELIST, {"action": "replay", "_selected_action": [delivery.pk], "index": "0"})


def test_replay_needs_the_change_permission(client, django_user_model, failed, _no_broker):
    viewer = django_user_model.objects.create_user("viewer@example.org", "x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(viewer)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    action_form = page.context["action_form"]
    assert "replay" not in (dict(action_form.fields["action"].choices) if action_form else {})
    _replay(client, failed)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (WebhookDelivery.Status.FAILED, 5)
    assert not LogEntry.objects.exists()
    assert _no_broker == []


def test_replay_requeues_and_is_recorded(
    admin_client, admin_user, failed, _no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _replay(admin_client, failed)
    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (WebhookDelivery.Status.PENDING, 0)
    assert _no_broker == [failed.pk]
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id) == (admin_user, CHANGE, str(failed.pk))
    assert entry.change_message == "Livraison rejouée (remise en file)."
