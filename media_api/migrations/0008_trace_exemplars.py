"""Trace exemplar sets (issue 19): up to a few face vectors per trace, packed in one column."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("media_api", "0007_shot")]

    operations = [
        migrations.AddField(
            model_name="trace",
            name="exemplars",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
    ]
