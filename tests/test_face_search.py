"""Search by photo (issue 22 part 1): POST /api/v1/faces/search with faces cut from the demo clips.

The stored traces are the demo's (demo/detections/*.json: what the face pipeline produces for the clips,
SFace vectors included); the photos are frames of the clips rendered by the thumbnail service (the
FFmpeg layer), cropped around a known person's face. The search itself runs the real detector and
embedding on the upload.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.db.models import F
from PIL import Image

from identities.models import Identity
from media_api.faces.embeddings import from_bytes, to_bytes
from media_api.ffmpeg.images import Box
from media_api.models import Detection, Trace
from media_api.services import face_search
from media_api.services.thumbnails import frame_thumbnail
from tests.conftest import FACENET_UUID, HAMILTON_UUID
from tests.helpers_rest import key_client
from tests.test_suggestions import _bind, _load, traces_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/faces/search"
PERFORMER = "Lin-Manuel Miranda"


@pytest.fixture(autouse=True)
def _fresh_index():
    """Each test's database starts again (a rolled-back one can repeat a trace pk): no copy carried over."""
    face_search.forget_index()
    yield
    face_search.forget_index()


@pytest.fixture
def cast(hamilton, facenet):
    """The demo traces; the performer's wide and medium-shot traces bound to him, four facenet people named."""
    _load(hamilton, "face_recognition_short_hamilton_clip")
    _load(facenet, "facenet_pytorch_video")
    wide, _, medium = traces_of(hamilton, PERFORMER)
    performer = Identity.objects.create(name=PERFORMER)
    for trace_id in (wide, medium):
        _bind(hamilton, trace_id, performer)
    for person in ("red-haired young man", "boy in blue jacket", "white-haired woman", "grey-haired man"):
        _bind(facenet, traces_of(facenet, person)[0], Identity.objects.create(name=person))
    return hamilton, facenet, performer, medium


def performer_photo(hamilton, trace_id: int, margin: float = 0.8) -> tuple[bytes, Detection]:
    """A JPEG of the performer's face (his largest detected box in the trace, with ``margin`` of context each
    side), cut from the frame by the thumbnail service."""
    face = (Detection.objects.filter(trace__file=hamilton, trace__trace_id=trace_id, origin=Detection.Origin.DETECTED)
            .order_by(-(F("width") * F("height")), "frame_number").first())
    x0, y0 = max(0, int(face.x - margin * face.width)), max(0, int(face.y - margin * face.height))
    x1 = min(hamilton.width, int(face.x + (1 + margin) * face.width))
    y1 = min(hamilton.height, int(face.y + (1 + margin) * face.height))
    return frame_thumbnail(hamilton, face.frame_number, Box(x0, y0, x1 - x0, y1 - y0)), face


def post(client, photo: bytes | None, name: str = "photo.jpg", **fields):
    data = dict(fields)
    if photo is not None:
        data["image"] = _named(photo, name)
    return client.post(URL, data, format="multipart")


def _named(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_a_face_cut_from_a_frame_finds_the_named_person_first(cast, api_client):
    hamilton, facenet, performer, medium = cast
    photo, face = performer_photo(hamilton, medium)
    response = post(api_client, photo)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True and body["file_uuid"] is None and body["model"] == face_search.MODEL_NAME
    assert body["image"]["format"] == "JPEG" and body["image"]["width"] < hamilton.width
    assert body["faces"], body
    found = body["faces"][0]  # the largest face: the performer's
    assert found["searched"] is True and found["message"] is None
    best = found["identities"][0]
    assert best["identity_uuid"] == performer.identity_uuid and best["name"] == PERFORMER
    assert best["confident"] is True and best["distance"] <= body["thresholds"]["confident"]
    assert best["source"] == "user_defined" and best["status"] == "confirmed"
    assert best["trace"]["file_uuid"] == HAMILTON_UUID
    assert Trace.objects.get(file=hamilton, trace_id=best["trace"]["trace_id"]).identity_id == performer.pk
    distances = [m["distance"] for m in found["identities"]]
    assert distances == sorted(distances) and all(d <= body["thresholds"]["offered"] for d in distances)
    assert len({m["identity_uuid"] for m in found["identities"]}) == len(found["identities"])
    for match in found["traces"]:  # unbound traces only
        assert Trace.objects.get(file__file_uuid=match["file_uuid"], trace_id=match["trace_id"]).identity_id is None
    # The box is the face's, in the photo's pixels: about where the crop put it (margin 0.8 of its size).
    box = found["bbox"]
    assert abs(box["width"] - face.width) < 0.35 * face.width
    assert abs(box["x"] + box["width"] / 2 - body["image"]["width"] / 2) < 0.3 * face.width
    assert "search;dur=" in response["Server-Timing"]


def test_boxes_of_a_whole_frame_are_its_faces_and_limit_caps_the_lists(cast, api_client):
    hamilton, _, performer, medium = cast
    _, face = performer_photo(hamilton, medium)
    frame = Image.open(io.BytesIO(frame_thumbnail(hamilton, face.frame_number, None)))
    body = post(api_client, encoded(frame, "WEBP", quality=95), "frame.webp", limit="1").json()
    assert body["image"] == {"width": hamilton.width, "height": hamilton.height, "format": "WEBP"}
    stored = list(Detection.objects.filter(trace__file=hamilton, frame_number=face.frame_number))
    assert body["faces"]
    for found in body["faces"]:
        assert len(found["identities"]) <= 1 and len(found["traces"]) <= 1
        b = found["bbox"]
        assert max(_iou((b["x"], b["y"], b["width"], b["height"]), (d.x, d.y, d.width, d.height))
                   for d in stored) > 0.5, (b, stored)
    performer_face = max(body["faces"], key=lambda f: _iou(
        (f["bbox"]["x"], f["bbox"]["y"], f["bbox"]["width"], f["bbox"]["height"]),
        (face.x, face.y, face.width, face.height)))
    assert performer_face["identities"][0]["identity_uuid"] == performer.identity_uuid


def _iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union else 0.0


def test_scope_other_files_are_never_searched_and_their_uuid_is_a_404(cast, plain_user):
    hamilton, facenet, performer, medium = cast
    photo, _ = performer_photo(hamilton, medium)
    facenet_only, _ = key_client(plain_user, file_uuids=[FACENET_UUID])
    body = post(facenet_only, photo).json()
    found = body["faces"][0]
    assert found["searched"] is True
    assert performer.identity_uuid not in {m["identity_uuid"] for m in found["identities"]}
    assert {m["trace"]["file_uuid"] for m in found["identities"]} | {m["file_uuid"] for m in found["traces"]} \
        <= {FACENET_UUID}
    hidden = post(facenet_only, photo, file_uuid=HAMILTON_UUID)
    unknown = post(facenet_only, photo, file_uuid="0" * 32)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.content.replace(HAMILTON_UUID.encode(), b"<uuid>") == unknown.content.replace(b"0" * 32, b"<uuid>")
    # An unlimited key names one file: only that file's traces answer.
    everyone, _ = key_client(plain_user)
    body = post(everyone, photo, file_uuid=HAMILTON_UUID).json()
    assert body["file_uuid"] == HAMILTON_UUID
    assert body["faces"][0]["identities"][0]["identity_uuid"] == performer.identity_uuid
    # Hidden traces, and vectors of another model, are never answered (read back at search time: no reload).
    Trace.objects.filter(identity=performer).update(ignored=True)
    Trace.objects.filter(file=hamilton, identity__isnull=True).update(embedding_model="dlib-resnet-v1")
    body = post(everyone, photo, file_uuid=HAMILTON_UUID).json()
    assert body["faces"][0]["identities"] == [] and body["faces"][0]["traces"] == []


def test_the_copy_follows_new_traces_bindings_and_replaced_vectors(cast):
    """The in-process copy against the database: a binding is read back, a new trace reloads it, a vector
    replaced in place is seen once embeddings_changed() says so."""
    hamilton, facenet, performer, medium = cast
    vector = from_bytes(Trace.objects.get(file=hamilton, trace_id=medium).embedding)
    first = face_search.match([vector])[0]
    assert first.identities[0].identity_uuid == performer.identity_uuid
    loaded = face_search.current_index()
    renamed = Identity.objects.create(name="Renamed")
    Trace.objects.filter(identity=performer).update(identity=renamed)
    assert face_search.match([vector])[0].identities[0].name == "Renamed"  # read back, same copy
    assert face_search.current_index() is loaded
    copy = Trace.objects.create(file=facenet, trace_id=999, embedding=to_bytes(vector),
                                embedding_model=face_search.MODEL_NAME)
    found = face_search.match([vector])[0]
    assert face_search.current_index() is not loaded  # a new pk: reloaded
    assert (FACENET_UUID, 999, 0.0) in {(m.file_uuid, m.trace_id, m.distance) for m in found.traces}
    # Replaced in place: the old copy still has the old vector until the token changes.
    elsewhere = -vector
    Trace.objects.filter(pk=copy.pk).update(embedding=to_bytes(elsewhere))
    assert 999 not in {m.trace_id for m in face_search.match([vector])[0].traces}  # read back: not near now
    assert 999 not in {m.trace_id for m in face_search.match([elsewhere])[0].traces}  # the copy has not seen it
    face_search.cache.set(face_search.CHANGE_TOKEN_KEY, "changed")  # what embeddings_changed() does on commit
    assert 999 in {m.trace_id for m in face_search.match([elsewhere])[0].traces}


def test_a_picture_without_faces_answers_no_faces(cast, api_client):
    gradient = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    response = post(api_client, encoded(gradient), "plain.png")
    assert response.status_code == 200
    assert response.json()["faces"] == [] and response.json()["image"]["format"] == "PNG"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds almost no data (what a bomb's header says)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _error(response, status: int, parameter: str | None = "image") -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    if parameter is not None:
        assert body["error"]["details"].get("parameter") == parameter, body
    return body["error"]


def test_bad_input_is_a_clean_json_400_or_413(cast, api_client):
    _error(post(api_client, b"this is no picture at all", "notes.txt"), 400)
    gif = encoded(Image.new("RGB", (64, 64), "white"), "GIF")
    assert "JPEG, PNG or WebP" in _error(post(api_client, gif, "a.gif"), 400)["message"]
    jpeg = encoded(Image.linear_gradient("L").convert("RGB"), "JPEG")
    _error(post(api_client, jpeg[: len(jpeg) // 2], "cut.jpg"), 400)  # truncated
    _error(post(api_client, None), 400)  # no image field
    _error(post(api_client, None, image="just text"), 400)  # a text field, not a file
    for limit in ("0", "101", "abc", "5.0", " 5", "+5"):
        _error(post(api_client, jpeg, limit=limit), 400, "limit")
    for file_uuid in ("not-a-uuid", HAMILTON_UUID.upper()):  # exactly the schema's pattern
        _error(post(api_client, jpeg, file_uuid=file_uuid), 400, "file_uuid")
    assert post(api_client, jpeg, limit="", file_uuid="").json()["file_uuid"] is None  # empty: not given
    _error(post(api_client, jpeg, colour="red"), 400, "colour")  # unknown field
    assert api_client.post(URL, {"image": "x"}, format="json").status_code == 415
    # Over 10 MB: the image part (413 from the view), and a body far over the route's limit (before any view).
    big = jpeg + b"\0" * (face_search.MAX_IMAGE_BYTES + 1 - len(jpeg))
    assert _error(post(api_client, big), 413)["details"]["max_bytes"] == face_search.MAX_IMAGE_BYTES
    _error(post(api_client, big + b"\0" * 200_000), 413, None)
    # A decompression bomb: 49 megapixels of black in a 50 KB PNG (refused from its header, never decoded).
    bomb = encoded(Image.new("L", (7000, 7000)), optimize=False)
    assert len(bomb) < 1_000_000
    details = _error(post(api_client, bomb, "bomb.png"), 413)["details"]
    assert details["max_pixels"] == face_search.MAX_IMAGE_PIXELS and details["width"] == 7000
    # Huge declared dimensions: beyond Pillow's own bomb guard too.
    _error(post(api_client, _png_header_only(100_000, 100_000), "huge.png"), 413)
    _error(post(api_client, _png_header_only(30_000, 1_000), "wide.png"), 400)  # allowed size, no real data


def test_search_needs_a_credential(cast, client):
    response = client.post(URL, {"image": _named(b"x", "a.jpg")})
    assert response.status_code in (401, 403) and response.json()["success"] is False


def test_a_phone_photo_turned_by_its_exif_orientation_is_searched_upright(cast, api_client):
    hamilton, _, performer, medium = cast
    photo, _ = performer_photo(hamilton, medium)
    upright = Image.open(io.BytesIO(photo))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned, as a phone does
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to show
    body = post(api_client, encoded(sideways, "JPEG", quality=95, exif=exif.tobytes())).json()
    assert (body["image"]["width"], body["image"]["height"]) == upright.size
    assert body["faces"][0]["identities"][0]["identity_uuid"] == performer.identity_uuid
