"""import_detections: validation refuses whole imports; summaries, identities, CSV and JSON."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from identities.models import Identity
from media_api.models import Detection, Trace
from media_api.services.detections_import import ImportValidationError, import_detections
from media_api.services.traces import refresh_trace_summaries


def row(**overrides):
    base = {"trace_id": 1, "frame_number": 10, "x": 100, "y": 50, "width": 60, "height": 70,
            "confidence": 0.9, "label": "face"}
    base.update(overrides)
    return base


def write_json(tmp_path, rows, name="d.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"detections": rows}))
    return path


BAD_ROWS = {
    "box_right_of_frame": row(x=600, width=60),  # 660 > 640
    "box_below_frame": row(y=300, height=70),  # 370 > 360
    "negative_x": row(x=-1),
    "zero_width": row(width=0),
    "negative_height": row(height=-5),
    "confidence_above_1": row(confidence=1.2),
    "confidence_negative": row(confidence=-0.1),
    "confidence_text": row(confidence="high"),
    "frame_past_end": row(frame_number=275),
    "negative_frame": row(frame_number=-1),
    "float_trace_id": row(trace_id=1.5),
    "text_trace_id": row(trace_id="abc"),
    "missing_field": {k: v for k, v in row().items() if k != "height"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_each_kind_of_bad_row_refuses_everything(hamilton, tmp_path, kind, capsys):
    rows = [row(frame_number=1), row(frame_number=2), BAD_ROWS[kind], row(frame_number=3)]
    with pytest.raises(ImportValidationError) as info:
        import_detections(hamilton, rows)
    assert [bad["row"] for bad in info.value.errors] == [3]
    with pytest.raises(CommandError, match="nothing was written"):
        call_command("import_detections", hamilton.file_uuid, str(write_json(tmp_path, rows)))
    assert "row 3" in capsys.readouterr().err
    assert Detection.objects.count() == 0 and Trace.objects.count() == 0


@pytest.mark.django_db
def test_every_bad_row_is_listed(hamilton):
    rows = [row(x=-1), row(), row(confidence=3), row(frame_number=9999)]
    with pytest.raises(ImportValidationError) as info:
        import_detections(hamilton, rows)
    assert [bad["row"] for bad in info.value.errors] == [1, 3, 4]
    assert Detection.objects.count() == 0


@pytest.mark.django_db
def test_import_then_trace_summaries(hamilton, tmp_path, capsys):
    rows = [row(trace_id=1, frame_number=f, confidence=c) for f, c in [(5, 0.5), (9, 0.7), (7, 0.9)]]
    rows += [row(trace_id=2, frame_number=100, confidence=0.8, identity="Lin-Manuel Miranda")]
    call_command("import_detections", hamilton.file_uuid, str(write_json(tmp_path, rows)))
    assert "imported 4 detections into 2 traces" in capsys.readouterr().out
    t1 = Trace.objects.get(file=hamilton, trace_id=1)
    assert (t1.face_count, t1.start_frame, t1.end_frame) == (3, 5, 9)
    assert t1.avg_confidence == pytest.approx(0.7)
    assert t1.identity is None
    t2 = Trace.objects.get(file=hamilton, trace_id=2)
    assert t2.identity.name == "Lin-Manuel Miranda" and t2.identity.source == "import"

    # A second import appends to trace 1 and binds trace 1 by uuid; summaries follow.
    uuid = t2.identity.identity_uuid
    more = [row(trace_id=1, frame_number=200, confidence=1.0, identity=uuid)]
    call_command("import_detections", hamilton.file_uuid, str(write_json(tmp_path, more, "more.json")))
    t1.refresh_from_db()
    assert (t1.face_count, t1.start_frame, t1.end_frame) == (4, 5, 200)
    assert t1.avg_confidence == pytest.approx(0.775)
    assert t1.identity_id == t2.identity_id
    assert Identity.objects.count() == 1


@pytest.mark.django_db
def test_csv_import_and_replace(hamilton, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "trace_id,frame_number,x,y,width,height,confidence,label,identity\n"
        "7,0,10,10,50,50,0.5,face,Alex\n"
        "7,274,10,10,50.4,50,0.7,face,Alex\n"
        "8,3,0,0,640,360,1,person,\n"
    )
    call_command("import_detections", hamilton.file_uuid, str(path))
    t7 = Trace.objects.get(trace_id=7)
    assert (t7.face_count, t7.start_frame, t7.end_frame, t7.identity.name) == (2, 0, 274, "Alex")
    assert Detection.objects.get(trace=t7, frame_number=274).width == 50
    assert Detection.objects.get(frame_number=3).label == "person"

    version = t7.detections_version
    call_command("import_detections", hamilton.file_uuid, str(write_json(tmp_path, [row(trace_id=7)])), "--replace")
    t7.refresh_from_db()
    assert t7.face_count == 1 and t7.detections_version > version
    assert not Trace.objects.filter(trace_id=8).exists()


@pytest.mark.django_db
def test_conflicting_identities_for_one_trace(hamilton):
    rows = [row(identity="A"), row(frame_number=11, identity="B")]
    with pytest.raises(ImportValidationError, match="1 bad row"):
        import_detections(hamilton, rows)


@pytest.mark.django_db
def test_unknown_file_and_bad_files(hamilton, tmp_path):
    with pytest.raises(CommandError, match="unknown file_uuid"):
        call_command("import_detections", "0" * 32, str(write_json(tmp_path, [row()])))
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_detections", hamilton.file_uuid, str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match="import refused"):
        call_command("import_detections", hamilton.file_uuid, str(broken))
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("trace,frame\n1,2\n")
    with pytest.raises(CommandError, match="import refused"):
        call_command("import_detections", hamilton.file_uuid, str(bad_header))
    assert Detection.objects.count() == 0


@pytest.mark.django_db
def test_refresh_on_emptied_trace(hamilton):
    import_detections(hamilton, [row(), row(frame_number=20)])
    trace = Trace.objects.get()
    Detection.objects.filter(trace=trace).delete()
    refresh_trace_summaries([trace.pk])
    trace.refresh_from_db()
    assert (trace.face_count, trace.start_frame, trace.end_frame, trace.avg_confidence) == (0, None, None, None)


BAD_ROWS_MORE = {
    "trace_id_past_int32": row(trace_id=2**31),
    "negative_trace_id": row(trace_id=-3),
    "unknown_origin": row(origin="guessed"),
    "long_identity": row(identity="x" * 201),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(BAD_ROWS_MORE))
def test_more_bad_rows_refuse_everything(hamilton, kind):
    with pytest.raises(ImportValidationError):
        import_detections(hamilton, [row(frame_number=1), BAD_ROWS_MORE[kind]])
    assert not Detection.objects.exists() and not Trace.objects.exists()


@pytest.mark.django_db
def test_any_number_of_traces_imports(hamilton, tmp_path):
    """40 000 distinct traces: more values than SQLite accepts in one statement (32 766)."""
    count = 40_000
    path = tmp_path / "many.csv"
    with path.open("w") as out:
        out.write("trace_id,frame_number,x,y,width,height,confidence,identity\n")
        for t in range(count):
            out.write(f"{t},{t % 275},{t % 500},10,40,40,0.8,{'Crowd' if t % 2 else ''}\n")
    call_command("import_detections", hamilton.file_uuid, str(path))
    assert Trace.objects.filter(file=hamilton).count() == count
    assert Detection.objects.filter(file=hamilton).count() == count
    assert Trace.objects.filter(file=hamilton, identity__name="Crowd").count() == count // 2
    assert Trace.objects.filter(face_count=1).count() == count  # every summary refreshed
    # --replace keeping half of them deletes the other half, again past the variable limit
    with path.open("w") as out:
        out.write("trace_id,frame_number,x,y,width,height,confidence\n")
        for t in range(0, count, 2):
            out.write(f"{t},1,0,0,10,10,0.5\n")
    call_command("import_detections", hamilton.file_uuid, str(path), "--replace")
    assert Trace.objects.filter(file=hamilton).count() == count // 2


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["object", "list", "object-with-extra-keys-first"])
def test_json_is_streamed_in_both_shapes(hamilton, tmp_path, shape):
    rows = [row(trace_id=t, frame_number=f, origin="tracked" if f % 2 else "detected")
            for t in (1, 2) for f in range(0, 20)]
    if shape == "object":
        payload = {"detections": rows}
    elif shape == "list":
        payload = rows
    else:
        payload = {"trace_embeddings": {"1": [0.1] * 128}, "note": {"detections": "not these"}, "detections": rows}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(payload))
    call_command("import_detections", hamilton.file_uuid, str(path))
    assert Detection.objects.count() == 40
    assert Detection.objects.filter(origin=Detection.Origin.TRACKED).count() == 20


@pytest.mark.django_db
def test_invalid_json_and_wrong_shapes_are_refused(hamilton, tmp_path):
    for text in ('{"detections": [{"trace_id": 1,', '{"other": []}', '"text"', '{"detections": 5}'):
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(CommandError):
            call_command("import_detections", hamilton.file_uuid, str(path))
    assert not Detection.objects.exists()


@pytest.mark.django_db
def test_import_reads_rows_twice_without_keeping_them(hamilton):
    """A source that is iterated: validated first (nothing written), then written."""
    passes = []

    def source():
        if not passes:  # (the second pass runs during PostgreSQL's COPY: no other query may run then)
            assert not Detection.objects.exists()
        passes.append(len(passes) + 1)
        return (row(trace_id=1, frame_number=f) for f in range(10))

    result = import_detections(hamilton, source)
    assert result.detections == 10 and passes == [1, 2]
