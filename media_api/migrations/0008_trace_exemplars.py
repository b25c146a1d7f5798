"""Reserved for trace exemplar sets (issue 19); filled in by that change. Empty until then."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("media_api", "0007_shot")]

    operations = []
