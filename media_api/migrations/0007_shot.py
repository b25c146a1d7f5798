"""Shots of a file (issue 22): the hard cuts face analysis or ``detect_shots`` finds, one row per shot."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("media_api", "0006_trace_embedding_model")]

    operations = [
        migrations.CreateModel(
            name="Shot",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index", models.PositiveIntegerField()),
                ("start_frame", models.PositiveIntegerField()),
                ("end_frame", models.PositiveIntegerField()),
                ("file", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="shots",
                                           to="media_api.mediafile")),
            ],
            options={
                "ordering": ["file_id", "index"],
                "constraints": [models.UniqueConstraint(fields=("file", "index"), name="shot_unique_per_file")],
            },
        ),
    ]
