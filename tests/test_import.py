"""import_detections: validation refuses whole imports; summaries, identities, CSV and JSON; face vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from identities.models import Identity
from media_api.faces import exemplars
from media_api.faces.embeddings import EMBEDDING_DIM, MODEL_NAME, from_bytes, normalise
from media_api.faces.exemplars import MAX_EXEMPLARS
from media_api.models import Detection, Trace
from media_api.services.detections_import import ImportValidationError, export_vectors, import_detections, import_file
from media_api.services.traces import refresh_trace_summaries
from tests.conftest import REPO


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


# --- face vectors: the means and exemplar sets detect_faces --export-dir writes ---------------------------

DEMO_HAMILTON = REPO / "demo" / "detections" / "face_recognition_short_hamilton_clip.json"


def _unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=EMBEDDING_DIM)
    return [round(float(v), 6) for v in vector / np.linalg.norm(vector)]


def _with_vectors(tmp_path, vectors: dict, rows=None):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"detections": rows or [row(trace_id=1), row(trace_id=2, frame_number=11)],
                                **vectors}))
    return path


@pytest.mark.django_db
def test_exemplars_round_trip_through_export_and_import(hamilton):
    """The committed demo file is detect_faces --export-dir's output: imported, its traces hold its vectors
    (exemplar sets best first), and exporting them again gives the same vectors."""
    exported = json.loads(DEMO_HAMILTON.read_text())
    assert exported["embedding_model"] == MODEL_NAME and exported["trace_exemplars"]
    result = import_file(hamilton, DEMO_HAMILTON)
    assert result.traces_embedded == len(exported["trace_embeddings"])
    assert result.traces_with_exemplars == len(exported["trace_exemplars"]) and not result.vectors_skipped
    for trace_id, vectors in exported["trace_exemplars"].items():
        trace = Trace.objects.get(file=hamilton, trace_id=int(trace_id))
        assert trace.embedding_model == MODEL_NAME
        assert np.allclose(exemplars.of_trace(trace.exemplars, trace.embedding), vectors, atol=2e-6)
    again = export_vectors(hamilton)
    assert again.keys() == {"embedding_model", "trace_embeddings", "trace_exemplars"}
    for key in ("trace_embeddings", "trace_exemplars"):
        assert again[key].keys() == exported[key].keys()
        for trace_id, value in exported[key].items():
            assert np.allclose(again[key][trace_id], value, atol=2e-6), (key, trace_id)


@pytest.mark.django_db
def test_means_without_exemplars_are_a_set_of_one_and_other_models_are_not_used(hamilton, tmp_path, capsys):
    mean, other = _unit(1), _unit(2)
    path = _with_vectors(tmp_path, {"embedding_model": MODEL_NAME, "trace_embeddings": {"1": mean},
                                    "trace_exemplars": {"2": [other, mean]}})
    call_command("import_detections", hamilton.file_uuid, str(path))
    assert "face vectors stored for 2 trace(s), 1 with exemplars" in capsys.readouterr().out
    one, two = Trace.objects.filter(file=hamilton).order_by("trace_id")
    assert one.exemplars is None and np.allclose(exemplars.of_trace(one.exemplars, one.embedding), [mean], atol=1e-6)
    assert np.allclose(exemplars.unpack(two.exemplars), [other, mean], atol=1e-6)  # best first, as given
    assert np.allclose(from_bytes(two.embedding), normalise(np.add(other, mean)), atol=1e-6)  # no mean given
    # vectors of another model (or of no named one) are not stored: the traces keep theirs
    for vectors in ({"embedding_model": "dlib-resnet-v1", "trace_embeddings": {"1": [0.5] * 4}},
                    {"trace_exemplars": {"1": [other]}}):
        call_command("import_detections", hamilton.file_uuid, str(_with_vectors(tmp_path, vectors)))
        assert "face vectors not used" in capsys.readouterr().err
        one.refresh_from_db()
        assert np.allclose(from_bytes(one.embedding), mean, atol=1e-6) and one.embedding_model == MODEL_NAME


@pytest.mark.django_db
def test_vector_keys_written_with_escapes_are_read(hamilton, tmp_path):
    """The byte scan that spares rows-only files a JSON pass does not miss a key spelt with \\u escapes."""
    path = tmp_path / "escaped.json"
    escaped = f'"embedding_\\u006dodel": "{MODEL_NAME}", "trace_\\u0065xemplars": {{"1": [{json.dumps(_unit(3))}]}}'
    path.write_text(f'{{"detections": {json.dumps([row()])}, {escaped}}}')
    assert import_file(hamilton, path).traces_with_exemplars == 1
    assert np.allclose(exemplars.unpack(Trace.objects.get().exemplars), [_unit(3)], atol=1e-6)


BAD_VECTORS = {
    "too_many_exemplars": {"trace_exemplars": {"1": [_unit(i) for i in range(MAX_EXEMPLARS + 1)]}},
    "no_exemplar": {"trace_exemplars": {"1": []}},
    "short_vector": {"trace_exemplars": {"1": [_unit(1)[:-1]]}},
    "not_unit": {"trace_exemplars": {"1": [[v * 3 for v in _unit(1)]]}},
    "not_finite": {"trace_exemplars": {"1": [[1e999] + _unit(1)[1:]]}},
    "text_value": {"trace_exemplars": {"1": [["0.1"] * EMBEDDING_DIM]}},
    "unknown_trace": {"trace_exemplars": {"9": [_unit(1)]}},
    "bad_key": {"trace_embeddings": {"one": _unit(1)}},
    "mean_not_unit": {"trace_embeddings": {"1": [0.0] * EMBEDDING_DIM}},
    "not_an_object": {"trace_exemplars": [[_unit(1)]]},
    "bad_model_name": {"embedding_model": 7},
    "huge_integer": {"trace_exemplars": {"1": [[10**400] + _unit(1)[1:]]}},
    "exemplars_cancel_out": {"trace_exemplars": {"2": [_unit(1), [-v for v in _unit(1)]]}},
    "non_canonical_key": {"trace_exemplars": {"01": [_unit(1)]}},
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(BAD_VECTORS))
def test_bad_vectors_refuse_the_import(hamilton, tmp_path, kind, capsys):
    vectors = {"embedding_model": MODEL_NAME, "trace_embeddings": {"1": _unit(5)}, **BAD_VECTORS[kind]}
    with pytest.raises(ImportValidationError) as info:
        import_detections(hamilton, [row(trace_id=1), row(trace_id=2, frame_number=11)], vectors=vectors)
    assert info.value.errors[0]["row"] == 0
    with pytest.raises(CommandError, match="nothing was written"):
        call_command("import_detections", hamilton.file_uuid, str(_with_vectors(tmp_path, vectors)))
    assert "file: " in capsys.readouterr().err
    assert not Detection.objects.exists() and not Trace.objects.exists()
