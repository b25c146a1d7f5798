"""Object storage (issue 21): where a file's bytes are (local or S3) and whether the service owns them."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("media_api", "0008_trace_exemplars")]

    operations = [
        migrations.AddField(
            model_name="mediafile",
            name="storage",
            field=models.CharField(choices=[("local", "local"), ("s3", "S3")], default="local", max_length=8),
        ),
        migrations.AddField(
            model_name="mediafile",
            name="owned",
            field=models.BooleanField(default=False),
        ),
    ]
