"""File scope (per key and per user): out-of-scope files answer byte-for-byte like unknown ones."""

from __future__ import annotations

import pytest
from django.test import Client

from identities.models import Identity
from media_api.models import Trace
from momentry.models import UserScope
from momentry.services import create_api_key
from tests.conftest import FACENET_UUID, HAMILTON_UUID
from tests.helpers_rest import key_client, load_traces

UNKNOWN_UUID = "0" * 32


def file_routes(file_uuid: str) -> list[str]:
    return [
        f"/api/v1/file/{file_uuid}",
        f"/api/v1/file/{file_uuid}/traces",
        f"/api/v1/file/{file_uuid}/trace/1",
        f"/api/v1/file/{file_uuid}/trace/1/faces",
    ]


def not_found_body(client, file_uuid: str, path: str) -> bytes:
    """The response body with the file's uuid replaced, so unknown and hidden compare byte for byte."""
    response = client.get(path)
    assert response.status_code == 404, (path, response.content)
    assert response["Content-Type"] == "application/json"
    return response.content.replace(file_uuid.encode(), b"<uuid>")


@pytest.fixture
def two_files(hamilton, facenet):
    load_traces(hamilton, {1: (0, 40, 10), 2: (50, 90, 10)}, {1: "Eliza"})
    load_traces(facenet, {1: (0, 20, 5)}, {1: "Eliza"})
    return hamilton, facenet


@pytest.mark.django_db
def test_key_scope_limits_lists_and_hides_other_files_like_unknown(plain_user, two_files):
    client, _ = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    listing = client.get("/api/v1/files").json()
    assert [f["file_uuid"] for f in listing["files"]] == [HAMILTON_UUID] and listing["total"] == 1
    for path in file_routes(HAMILTON_UUID):
        assert client.get(path).status_code == 200, path
    for hidden, unknown in zip(file_routes(FACENET_UUID), file_routes(UNKNOWN_UUID), strict=True):
        assert not_found_body(client, FACENET_UUID, hidden) == not_found_body(client, UNKNOWN_UUID, unknown)
    # an unlimited client sees both, and the hidden file does exist
    assert Client().get("/api/v1/files", HTTP_X_API_KEY=create_api_key(plain_user).key).json()["total"] == 2


@pytest.mark.django_db
def test_exact_same_bytes_for_hidden_and_unknown_file_detail(plain_user, two_files):
    client, _ = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    hidden = client.get(f"/api/v1/file/{FACENET_UUID}")
    unknown = client.get(f"/api/v1/file/{UNKNOWN_UUID}")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"] == {"code": "NOT_FOUND", "message": "File not found.",
                                      "details": {"file_uuid": FACENET_UUID}}
    assert hidden.content.replace(FACENET_UUID.encode(), b"") == unknown.content.replace(UNKNOWN_UUID.encode(), b"")
    assert sorted(hidden.headers) == sorted(unknown.headers)


@pytest.mark.django_db
def test_key_with_empty_scope_sees_nothing(plain_user, two_files):
    client, _ = key_client(plain_user, file_uuids=[])
    assert client.get("/api/v1/files").json()["total"] == 0
    assert client.get(f"/api/v1/file/{HAMILTON_UUID}").status_code == 404


@pytest.mark.django_db
def test_user_scope_applies_to_session_and_is_intersected_with_key_scope(api_client, plain_user, two_files):
    scope = UserScope.objects.create(user=plain_user)
    scope.files.set([two_files[1]])  # facenet only
    listing = api_client.get("/api/v1/files").json()
    assert [f["file_uuid"] for f in listing["files"]] == [FACENET_UUID]
    assert api_client.get(f"/api/v1/file/{HAMILTON_UUID}").status_code == 404
    # a key limited to hamilton, of a user limited to facenet: nothing
    client, _ = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    assert client.get("/api/v1/files").json()["total"] == 0
    assert client.get(f"/api/v1/file/{HAMILTON_UUID}").status_code == 404


@pytest.mark.django_db
def test_identity_counts_and_files_only_cover_files_in_scope(plain_user, two_files):
    eliza = Identity.objects.get(name="Eliza")
    everything, _ = key_client(plain_user)
    scoped, _ = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    full = everything.get(f"/api/v1/identity/{eliza.identity_uuid}").json()
    assert (full["trace_count"], full["file_count"]) == (2, 2)
    limited = scoped.get(f"/api/v1/identity/{eliza.identity_uuid}").json()
    assert (limited["trace_count"], limited["file_count"]) == (1, 1)
    files = scoped.get(f"/api/v1/identity/{eliza.identity_uuid}/files").json()
    assert [f["file_uuid"] for f in files["files"]] == [HAMILTON_UUID]


@pytest.mark.django_db
def test_bind_needs_the_file_in_scope(plain_user, two_files):
    eliza = Identity.objects.get(name="Eliza")
    client, _ = key_client(plain_user, write=True, file_uuids=[HAMILTON_UUID])
    url = f"/api/v1/identity/{eliza.identity_uuid}/bind/trace"
    hidden = client.post(url, {"file_uuid": FACENET_UUID, "trace_id": 1}, format="json")
    unknown = client.post(url, {"file_uuid": UNKNOWN_UUID, "trace_id": 1}, format="json")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.content.replace(FACENET_UUID.encode(), b"") == unknown.content.replace(UNKNOWN_UUID.encode(), b"")
    assert client.post(url, {"file_uuid": HAMILTON_UUID, "trace_id": 2}, format="json").json()["rows_affected"] == 1


@pytest.mark.django_db
def test_file_for_request_checks_credentials_on_plain_django_requests(rf, plain_user, two_files):
    """Views that are not DRF views get the same credentials and scope through the selector."""
    from media_api.selectors import file_for_request
    from momentry.errors import NotFound, Unauthorized

    _, key = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    request = rf.get("/x", HTTP_X_API_KEY=key)
    assert file_for_request(request, HAMILTON_UUID).file_uuid == HAMILTON_UUID
    with pytest.raises(NotFound):
        file_for_request(request, FACENET_UUID)
    anonymous = rf.get("/x")
    from django.contrib.auth.models import AnonymousUser

    anonymous.user = AnonymousUser()
    anonymous.session = {}
    with pytest.raises(Unauthorized) as info:
        file_for_request(anonymous, HAMILTON_UUID)
    assert "WWW-Authenticate" in info.value.headers
    with pytest.raises(Unauthorized):
        file_for_request(rf.get("/x", HTTP_X_API_KEY="mk_wrong"), HAMILTON_UUID)


@pytest.fixture
def cast_in_two_files(hamilton, facenet):
    """Real traces with real face embeddings in both files; one named person in each file, one everywhere."""
    from tests.test_suggestions import _bind, _load, traces_of

    _load(hamilton, "face_recognition_short_hamilton_clip")
    _load(facenet, "facenet_pytorch_video")
    performer = Identity.objects.create(name="Lin-Manuel Miranda")
    boy = Identity.objects.create(name="Boy in blue jacket")
    _bind(hamilton, traces_of(hamilton, "Lin-Manuel Miranda")[0], performer)  # the wide shot
    _bind(facenet, traces_of(facenet, "boy in blue jacket")[0], boy)
    fresh = Identity.objects.create(name="Nobody yet")  # no trace anywhere: shows no file's content
    return performer, boy, fresh


@pytest.mark.django_db
def test_two_scoped_keys_see_only_the_people_of_their_files(plain_user, hamilton, facenet, cast_in_two_files):
    performer, boy, fresh = cast_in_two_files
    key_a, _ = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    key_b, _ = key_client(plain_user, file_uuids=[FACENET_UUID])
    everything, _ = key_client(plain_user)

    def names(client) -> set[str]:
        return {i["name"] for i in client.get("/api/v1/identities?page_size=100").json()["identities"]}

    assert names(key_a) == {performer.name, fresh.name}
    assert names(key_b) == {boy.name, fresh.name}
    assert names(everything) == {performer.name, boy.name, fresh.name}

    # Suggestions only draw on traces the caller may see: key B never learns the performer's name.
    from tests.test_suggestions import traces_of

    medium = traces_of(hamilton, "Lin-Manuel Miranda")[2]
    suggestions_a = key_a.get(f"/api/v1/file/{HAMILTON_UUID}/trace/{medium}/suggestions").json()["suggestions"]
    assert [s["name"] for s in suggestions_a][:1] == [performer.name]
    for trace_id in Trace.objects.filter(file=facenet).values_list("trace_id", flat=True):
        body = key_b.get(f"/api/v1/file/{FACENET_UUID}/trace/{trace_id}/suggestions").content.decode()
        assert performer.name not in body and performer.identity_uuid not in body

    # Every identity read of the other file's person is the 404 of an unknown identity.
    unknown = "f" * 32
    for suffix in ("", "/files"):
        hidden = key_b.get(f"/api/v1/identity/{performer.identity_uuid}{suffix}")
        missing = key_b.get(f"/api/v1/identity/{unknown}{suffix}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.content.replace(performer.identity_uuid.encode(), b"<id>") == \
            missing.content.replace(unknown.encode(), b"<id>")
    cooccur = key_b.get(f"/api/v1/file/{FACENET_UUID}/identities/{performer.identity_uuid}/co-occur-with/"
                        f"{boy.identity_uuid}")
    assert cooccur.status_code == 404 and performer.name not in cooccur.content.decode()
    assert key_a.get(f"/api/v1/identity/{performer.identity_uuid}").status_code == 200
    assert key_b.get(f"/api/v1/identity/{fresh.identity_uuid}").status_code == 200


@pytest.mark.django_db
def test_scoped_writer_cannot_touch_people_of_other_files(plain_user, hamilton, facenet, cast_in_two_files):
    performer, boy, fresh = cast_in_two_files
    writer_b, _ = key_client(plain_user, file_uuids=[FACENET_UUID], write=True)
    assert writer_b.patch(f"/api/v1/identity/{performer.identity_uuid}", {"name": "X"},
                          format="json").status_code == 404
    merge = writer_b.post(f"/api/v1/identity/{boy.identity_uuid}/merge", {"from": [performer.identity_uuid]},
                          format="json")
    assert merge.status_code == 404 and merge.json()["error"]["details"]["identity_uuids"] == [
        performer.identity_uuid]
    bind = writer_b.post(f"/api/v1/identity/{fresh.identity_uuid}/bind/trace",
                         {"file_uuid": FACENET_UUID, "trace_id": 7}, format="json")
    assert bind.status_code == 200  # a person without traces can be given the caller's own traces
    performer.refresh_from_db()
    assert performer.name == "Lin-Manuel Miranda" and performer.status == "confirmed"
