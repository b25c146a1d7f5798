# Every stored embedding names its model, so vectors of two models are never compared (issue 19).
# Embeddings made before this migration are dlib's ResNet (Faces v2).

from django.db import migrations, models


def name_existing(apps, schema_editor):
    Trace = apps.get_model("media_api", "Trace")
    Trace.objects.filter(embedding__isnull=False).update(embedding_model="dlib-resnet-v1")


class Migration(migrations.Migration):

    dependencies = [
        ('media_api', '0005_mediafile_truncated'),
    ]

    operations = [
        migrations.AddField(
            model_name='trace',
            name='embedding_model',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.RunPython(name_existing, migrations.RunPython.noop),
    ]
