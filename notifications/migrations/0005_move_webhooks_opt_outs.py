"""Reminder opt-outs and webhooks move from portal to notifications: state only, the tables stay as they are (the
next migration renames them); the admin's content types follow, so that history and permissions are kept."""

import django.db.models.deletion
import django.utils.timezone
import uuid
from django.conf import settings
from django.db import migrations, models


MOVED = ("reminderoptout", "webhookendpoint", "webhookevent", "webhookdelivery", "webhookattempt")


def move_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not content_type.objects.filter(app_label="notifications", model=model).exists():
            content_type.objects.filter(app_label="portal", model=model).update(app_label="notifications")


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0004_reminder_messages'),
        ('portal', '0002_webhook_outbox'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('tokens', '0008_merge_20261206_0602'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='WebhookDelivery',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('url', models.CharField(blank=True, max_length=500, verbose_name='URL')),
                    ('status', models.CharField(choices=[('pending', 'en attente'), ('sending', "en cours d'envoi"), ('delivered', 'livré'), ('failed', 'échec')], default='pending', max_length=16, verbose_name='état')),
                    ('attempts', models.PositiveIntegerField(default=0, verbose_name='tentatives')),
                    ('next_attempt_at', models.DateTimeField(blank=True, null=True, verbose_name='prochaine tentative')),
                    ('delivered_at', models.DateTimeField(blank=True, null=True, verbose_name='livré le')),
                    ('lease_until', models.DateTimeField(blank=True, null=True, verbose_name="réservé jusqu'au")),
                    ('claimed_by', models.CharField(blank=True, db_default='', default='', max_length=64, verbose_name='réservé par')),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ],
                options={
                    'verbose_name': 'livraison webhook',
                    'verbose_name_plural': 'livraisons webhook',
                    'db_table': 'portal_webhookdelivery',
                    'ordering': ['-created_at', '-id'],
                },
            ),
            migrations.CreateModel(
                name='ReminderOptOut',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='le')),
                    ('by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('token', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='reminder_opt_out', to='tokens.token', verbose_name='jeton')),
                ],
                options={
                    'verbose_name': 'renouvellement décliné',
                    'verbose_name_plural': 'renouvellements déclinés',
                    'db_table': 'portal_reminderoptout',
                },
            ),
            migrations.CreateModel(
                name='WebhookAttempt',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('status_code', models.PositiveIntegerField(blank=True, null=True)),
                    ('cause', models.CharField(blank=True, choices=[('http', 'réponse HTTP'), ('timeout', 'délai dépassé'), ('certificate', 'certificat invalide'), ('tls', 'échec de la connexion sécurisée (TLS)'), ('address', 'adresse refusée'), ('port', 'port refusé'), ('dns', 'nom de domaine introuvable'), ('refused', 'connexion refusée'), ('network', 'erreur réseau'), ('invalid_response', 'réponse invalide'), ('disabled', 'webhook désactivé'), ('deleted', 'webhook supprimé'), ('interrupted', 'envoi interrompu trop de fois')], max_length=20, verbose_name='cause')),
                    ('error', models.TextField(blank=True)),
                    ('duration_ms', models.PositiveIntegerField(default=0)),
                    ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='notifications.webhookdelivery')),
                ],
                options={
                    'verbose_name': 'tentative',
                    'verbose_name_plural': 'tentatives',
                    'db_table': 'portal_webhookattempt',
                    'ordering': ['-at', '-id'],
                },
            ),
            migrations.CreateModel(
                name='WebhookEndpoint',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('url', models.URLField(max_length=500, verbose_name='URL')),
                    ('secret', models.CharField(editable=False, max_length=128)),
                    ('description', models.CharField(blank=True, max_length=255, verbose_name='description')),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='créé le')),
                    ('disabled_at', models.DateTimeField(blank=True, null=True, verbose_name='désactivé le')),
                    ('client', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhooks', to='tokens.client', verbose_name='client')),
                    ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'verbose_name': 'webhook',
                    'verbose_name_plural': 'webhooks',
                    'db_table': 'portal_webhookendpoint',
                    'ordering': ['client', 'created_at', 'id'],
                },
            ),
            migrations.AddField(
                model_name='webhookdelivery',
                name='endpoint',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deliveries', to='notifications.webhookendpoint'),
            ),
            migrations.CreateModel(
                name='WebhookEvent',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('type', models.CharField(choices=[('token.reminder_sent', 'rappel envoyé'), ('token.renewal_validated', 'renouvellement validé'), ('token.revoked', 'jeton révoqué'), ('token.expired', 'expiration du jeton'), ('ping', 'test')], max_length=40, verbose_name='type')),
                    ('payload', models.JSONField(default=dict)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='créé le')),
                    ('dedup_key', models.CharField(blank=True, max_length=120, null=True, unique=True)),
                    ('client', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_events', to='tokens.client')),
                ],
                options={
                    'verbose_name': 'événement webhook',
                    'verbose_name_plural': 'événements webhook',
                    'db_table': 'portal_webhookevent',
                    'ordering': ['-created_at'],
                },
            ),
            migrations.AddField(
                model_name='webhookdelivery',
                name='event',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='notifications.webhookevent'),
            ),
            migrations.AddIndex(
                model_name='webhookdelivery',
                index=models.Index(fields=['status', 'next_attempt_at'], name='webhook_delivery_due_idx'),
            ),
            migrations.AddIndex(
                model_name='webhookdelivery',
                index=models.Index(condition=models.Q(('status', 'sending')), fields=['lease_until', 'id'], name='webhook_delivery_lease_idx'),
            ),
            migrations.AddConstraint(
                model_name='webhookdelivery',
                constraint=models.UniqueConstraint(models.F('event'), models.F('endpoint'), name='webhook_delivery_once'),
            ),
            ],
        ),
        migrations.RunPython(move_content_types, migrations.RunPython.noop),
    ]
