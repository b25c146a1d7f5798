"""Reserved for shots (issue 22); filled in by that change. Empty until then."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("media_api", "0006_trace_embedding_model")]

    operations = []
