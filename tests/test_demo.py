"""manage.py demo end to end: clips, traces, named people, a key that works in its own examples."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from media_api.models import MediaFile, Trace
from tests.conftest import FACENET_UUID, HAMILTON_UUID


@pytest.mark.django_db
def test_demo_sets_everything_up_and_its_examples_work(capsys):
    call_command("demo")
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    assert set(MediaFile.objects.values_list("file_uuid", flat=True)) == {HAMILTON_UUID, FACENET_UUID}
    assert Trace.objects.filter(file__file_uuid=HAMILTON_UUID).count() > 0
    assert Trace.objects.filter(file__file_uuid=FACENET_UUID).count() > 0
    # every person of demo/identities.json is named on the traces the new pipeline made
    for name, at_least in (("Lin-Manuel Miranda", 3), ("Alex Lacamoire", 1), ("Red-haired man", 1),
                           ("Boy in blue jacket", 1), ("White-haired woman", 1)):
        assert Trace.objects.filter(identity__name=name).count() >= at_least, name
    assert Trace.objects.filter(identity__isnull=True).count() >= 5  # others are left for staff to name

    client = Client()
    examples = re.findall(r'curl -s "\$API(/api/v1/[^"]+)" -H "X-API-Key: \$KEY"(?: -o \S+)?$', out, re.M)
    json_examples = [e for e in examples if not e.endswith(("thumbnail", "video")) and "thumbnail?" not in e
                     and "clip?" not in e]
    assert json_examples
    for path in json_examples:
        response = client.get(path, HTTP_X_API_KEY=key)
        assert response.status_code == 200, (path, response.content[:300])
        assert response.json()["success"] is True

    # Idempotent: a second run re-uses files, traces and people, and issues a new key.
    traces = Trace.objects.count()
    call_command("demo")
    second_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert MediaFile.objects.count() == 2 and Trace.objects.count() == traces
    assert second_key != key
    assert Client().get(f"/api/v1/file/{HAMILTON_UUID}", HTTP_X_API_KEY=second_key).status_code == 200
