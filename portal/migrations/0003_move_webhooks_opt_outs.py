"""Reminder opt-outs and webhooks now belong to notifications (its migration 0005): state only."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0002_webhook_outbox'),
        ('notifications', '0005_move_webhooks_opt_outs'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.RemoveField(
                model_name='webhookattempt',
                name='delivery',
            ),
            migrations.RemoveField(
                model_name='webhookdelivery',
                name='endpoint',
            ),
            migrations.RemoveField(
                model_name='webhookdelivery',
                name='event',
            ),
            migrations.RemoveField(
                model_name='webhookendpoint',
                name='client',
            ),
            migrations.RemoveField(
                model_name='webhookendpoint',
                name='created_by',
            ),
            migrations.RemoveField(
                model_name='webhookevent',
                name='client',
            ),
            migrations.DeleteModel(
                name='ReminderOptOut',
            ),
            migrations.DeleteModel(
                name='WebhookAttempt',
            ),
            migrations.DeleteModel(
                name='WebhookDelivery',
            ),
            migrations.DeleteModel(
                name='WebhookEndpoint',
            ),
            migrations.DeleteModel(
                name='WebhookEvent',
            ),
            ],
        ),
    ]
