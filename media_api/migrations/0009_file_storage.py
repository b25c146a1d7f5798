"""Reserved for object storage (issue 21); filled in by that change. Empty until then."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("media_api", "0008_trace_exemplars")]

    operations = []
