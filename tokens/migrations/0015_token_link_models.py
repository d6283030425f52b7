# Token.privileges and Token.contacts get link models of their own, on the tables Django had created for them
# (migration 0001, indexes trimmed by 0006): the same columns, indexes and constraint names, so the state changes
# and the database does not.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tokens', '0014_tokenevent_kinds'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='TokenPrivilege',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('token', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tokens.token')),
                        ('privilege', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tokens.privilege')),
                    ],
                    options={
                        'verbose_name': "privilège d'un jeton",
                        'verbose_name_plural': 'privilèges des jetons',
                        'db_table': 'tokens_token_privileges',
                        'constraints': [models.UniqueConstraint(fields=('token', 'privilege'), name='tokens_token_privileges_token_id_privilege_id_fdf877d5_uniq')],
                    },
                ),
                migrations.AlterField(
                    model_name='token',
                    name='privileges',
                    field=models.ManyToManyField(related_name='tokens', through='tokens.TokenPrivilege', to='tokens.privilege', verbose_name='privilèges'),
                ),
                migrations.CreateModel(
                    name='TokenContact',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('token', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tokens.token')),
                        ('contact', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tokens.contact')),
                    ],
                    options={
                        'verbose_name': "contact d'un jeton",
                        'verbose_name_plural': 'contacts des jetons',
                        'db_table': 'tokens_token_contacts',
                        'constraints': [models.UniqueConstraint(fields=('token', 'contact'), name='tokens_token_contacts_token_id_contact_id_14309766_uniq')],
                    },
                ),
                migrations.AlterField(
                    model_name='token',
                    name='contacts',
                    field=models.ManyToManyField(blank=True, related_name='tokens', through='tokens.TokenContact', to='tokens.contact', verbose_name='contacts'),
                ),
            ],
        ),
    ]
