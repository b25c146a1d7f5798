"""Identity routes: list/search, detail, create, PATCH, DELETE, bind/unbind, merge, files; 403 without write."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from identities import curation
from identities.models import CurationChange, Identity
from identities.services import merge_identities
from media_api.models import Trace
from tests.conftest import FACENET_UUID, HAMILTON_UUID
from tests.helpers_rest import key_client, load_traces


@pytest.fixture
def people(hamilton, facenet):
    load_traces(hamilton, {1: (0, 10, 5), 2: (20, 30, 5), 3: (40, 50, 5), 4: (60, 70, 5)},
                {1: "Eliza", 2: "Eliza", 3: "Angelica"})
    load_traces(facenet, {1: (0, 10, 5), 2: (20, 30, 5)}, {1: "Angelica", 2: "Peggy"})
    Identity.objects.filter(name="Angelica").update(metadata={"aliases": ["Angie", "Ms. Schuyler"]})
    return {i.name: i for i in Identity.objects.all()}


@pytest.fixture
def writer(plain_user):
    return key_client(plain_user, write=True)[0]


@pytest.fixture
def reader(plain_user):
    return key_client(plain_user)[0]


def url(identity: Identity, suffix: str = "") -> str:
    return f"/api/v1/identity/{identity.identity_uuid}{suffix}"


def bound_ids(media_file, identity) -> list[int]:
    return sorted(Trace.objects.filter(file=media_file, identity=identity).values_list("trace_id", flat=True))


def error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


# --- reads ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_list_with_counts_in_few_queries(reader, people, django_assert_num_queries):
    for n in range(30):
        Identity.objects.create(name=f"Extra {n:02d}")
    # key, last_used update (in a savepoint here, as the test runs in a transaction; on SQLite between
    # two PRAGMAs so that it is skipped when the database is busy), the caller's file scope, count,
    # one page with counts as sub-queries
    with django_assert_num_queries(9 if connection.vendor == "sqlite" else 7):
        body = reader.get("/api/v1/identities?page_size=100").json()
    assert body["total"] == 33 and body["count"] == 33
    by_name = {i["name"]: i for i in body["identities"]}
    assert (by_name["Eliza"]["trace_count"], by_name["Eliza"]["file_count"]) == (2, 1)
    assert (by_name["Angelica"]["trace_count"], by_name["Angelica"]["file_count"]) == (2, 2)
    assert by_name["Angelica"]["aliases"] == ["Angie", "Ms. Schuyler"]
    assert by_name["Extra 00"]["trace_count"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("term,names", [("eliz", ["Eliza"]), ("ANGIE", ["Angelica"]), ("schuyler", ["Angelica"]),
                                        ("e", ["Angelica", "Eliza", "Peggy"]), ("nobody", [])])
def test_search_by_name_and_alias(reader, people, term, names):
    body = reader.get(f"/api/v1/identities?search={term}").json()
    assert [i["name"] for i in body["identities"]] == names


@pytest.mark.django_db
def test_status_filter_and_bad_status(reader, people):
    Identity.objects.filter(name="Peggy").update(status=Identity.Status.PENDING)
    assert [i["name"] for i in reader.get("/api/v1/identities?status=pending").json()["identities"]] == ["Peggy"]
    assert error(reader.get("/api/v1/identities?status=gone"), 400)["details"]["parameter"] == "status"


@pytest.mark.django_db
def test_detail_and_404s(reader, people):
    body = reader.get(url(people["Eliza"])).json()
    assert body["name"] == "Eliza" and body["trace_count"] == 2 and body["merged_into"] is None
    assert body["source"] == "import" and body["status"] == "confirmed"
    assert error(reader.get(f"/api/v1/identity/{'e' * 32}"), 404)["code"] == "NOT_FOUND"
    # a path value that cannot be a uuid is the same 404 as an unknown one (momentry.converters)
    assert error(reader.get("/api/v1/identity/not-a-uuid"), 404)["details"] == {"identity_uuid": "not-a-uuid"}


@pytest.mark.django_db
def test_identity_files(reader, people):
    body = reader.get(url(people["Angelica"], "/files")).json()
    assert sorted(f["file_uuid"] for f in body["files"]) == sorted([HAMILTON_UUID, FACENET_UUID])
    assert all(f["trace_count"] == 1 for f in body["files"]) and body["total"] == 2
    assert reader.get(url(people["Eliza"], "/files?page_size=1&page=2")).json()["files"] == []
    assert error(reader.get(url(people["Eliza"], "/files?page=0")), 400)["details"]["parameter"] == "page"
    assert reader.get(f"/api/v1/identity/{'e' * 32}/files").status_code == 404


# --- writes need admin or a write key ---------------------------------------------------

@pytest.mark.django_db
def test_writes_without_permission_are_403(reader, api_client, people, hamilton):
    eliza, peggy = people["Eliza"], people["Peggy"]
    attempts = [
        ("post", "/api/v1/identities", {"name": "X"}),
        ("patch", url(eliza), {"name": "X"}),
        ("delete", url(eliza), None),
        ("post", url(eliza, "/bind/trace"), {"file_uuid": HAMILTON_UUID, "trace_id": 4}),
        ("post", url(eliza, "/unbind/trace"), {"file_uuid": HAMILTON_UUID, "trace_id": 1}),
        ("post", url(eliza, "/merge"), {"from": [peggy.identity_uuid]}),
    ]
    for client in (reader, api_client):  # a read-only key, and a plain user's session
        for method, path, data in attempts:
            response = getattr(client, method)(path, data, format="json")
            assert error(response, 403)["code"] == "FORBIDDEN", (method, path)
    assert Identity.objects.get(pk=eliza.pk).name == "Eliza" and bound_ids(hamilton, eliza) == [1, 2]
    assert Identity.objects.count() == 3 and peggy.traces.count() == 1


@pytest.mark.django_db
def test_admin_session_and_staff_key_may_write(admin_client_api, staff_user, people):
    assert admin_client_api.patch(url(people["Peggy"]), {"name": "Margarita"}, format="json").status_code == 200
    staff_key_client, _ = key_client(staff_user)  # admin role: any key of theirs writes
    assert staff_key_client.patch(url(people["Peggy"]), {"name": "Peggy"}, format="json").status_code == 200


@pytest.mark.django_db
def test_anonymous_write_is_401(people):
    response = APIClient().patch(url(people["Peggy"]), {"name": "X"}, format="json")
    assert error(response, 401)["code"] == "UNAUTHORIZED"


# --- create / patch / delete --------------------------------------------------------------

@pytest.mark.django_db
def test_create_identity(writer):
    response = writer.post("/api/v1/identities", {"name": "  Aaron Burr ", "aliases": ["Burr"]}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Aaron Burr" and body["source"] == "user_defined" and body["aliases"] == ["Burr"]
    assert body["trace_count"] == 0 and Identity.objects.filter(identity_uuid=body["identity_uuid"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("data,param", [({}, "name"), ({"name": ""}, "name"),
                                        ({"name": "A", "status": "dead"}, "status"),
                                        ({"name": "A", "colour": "red"}, "colour"),
                                        ({"name": "A", "metadata": [1]}, "metadata")])
def test_create_identity_400(writer, data, param):
    assert error(writer.post("/api/v1/identities", data, format="json"), 400)["details"]["parameter"] == param


@pytest.mark.django_db
def test_patch_identity(writer, people):
    eliza = people["Eliza"]
    body = writer.patch(url(eliza), {"name": "Eliza Hamilton", "status": "pending", "aliases": ["Betsey"]},
                        format="json").json()
    assert body["name"] == "Eliza Hamilton" and body["status"] == "pending" and body["aliases"] == ["Betsey"]
    eliza.refresh_from_db()
    assert eliza.name == "Eliza Hamilton" and eliza.metadata == {"aliases": ["Betsey"]}
    body = writer.patch(url(eliza), {"metadata": {"born": 1757}, "identity_type": None}, format="json").json()
    assert body["metadata"] == {"born": 1757} and body["identity_type"] is None and body["name"] == "Eliza Hamilton"


@pytest.mark.django_db
@pytest.mark.parametrize("data,param", [({"name": ""}, "name"), ({"status": "x"}, "status"),
                                        ({"identity_type": "robot"}, "identity_type"), ({"nick": "x"}, "nick")])
def test_patch_400(writer, people, data, param):
    assert error(writer.patch(url(people["Eliza"]), data, format="json"), 400)["details"]["parameter"] == param


@pytest.mark.django_db
def test_patch_and_delete_unknown_404(writer):
    assert writer.patch(f"/api/v1/identity/{'e' * 32}", {"name": "x"}, format="json").status_code == 404
    assert writer.delete(f"/api/v1/identity/{'e' * 32}").status_code == 404


@pytest.mark.django_db
def test_delete_identity_unbinds_its_traces_and_is_recorded(writer, people, hamilton):
    eliza = people["Eliza"]
    body = writer.delete(url(eliza)).json()
    assert body == {"success": True, "identity_uuid": eliza.identity_uuid, "deleted": True, "traces_unbound": 2}
    assert not Identity.objects.filter(pk=eliza.pk).exists()
    assert Trace.objects.filter(file=hamilton, trace_id__in=[1, 2], identity__isnull=True).count() == 2
    assert CurationChange.objects.filter(kind="delete", identity_uuid=eliza.identity_uuid).exists()


# --- bind / unbind ------------------------------------------------------------------------

@pytest.mark.django_db
def test_bind_and_unbind_trace(writer, people, hamilton):
    peggy = people["Peggy"]
    body = writer.post(url(peggy, "/bind/trace"), {"file_uuid": HAMILTON_UUID, "trace_id": 4}, format="json").json()
    assert body["rows_affected"] == 1 and body["changed"] == 1 and bound_ids(hamilton, peggy) == [4]
    again = writer.post(url(peggy, "/bind/trace"), {"file_uuid": HAMILTON_UUID, "trace_id": 4}, format="json").json()
    assert again["rows_affected"] == 1 and again["changed"] == 0
    # taking traces from another identity, several at once
    body = writer.post(url(peggy, "/bind/trace"), {"file_uuid": HAMILTON_UUID, "trace_ids": [1, 3]},
                       format="json").json()
    assert body["rows_affected"] == 2 and bound_ids(hamilton, peggy) == [1, 3, 4]
    assert bound_ids(hamilton, people["Eliza"]) == [2]
    # unbind: only traces bound to this identity are touched
    body = writer.post(url(peggy, "/unbind/trace"), {"file_uuid": HAMILTON_UUID, "trace_id": 4}, format="json").json()
    assert body["rows_affected"] == 1 and bound_ids(hamilton, peggy) == [1, 3]
    body = writer.post(url(peggy, "/unbind/trace"), {"file_uuid": HAMILTON_UUID, "trace_id": 2}, format="json").json()
    assert body["rows_affected"] == 0 and bound_ids(hamilton, people["Eliza"]) == [2]


@pytest.mark.django_db
@pytest.mark.parametrize("data,status,param", [
    ({"trace_id": 1}, 400, "file_uuid"),
    ({"file_uuid": HAMILTON_UUID}, 400, "trace_id"),
    ({"file_uuid": HAMILTON_UUID, "trace_id": 1, "trace_ids": [2]}, 400, "trace_id"),
    ({"file_uuid": HAMILTON_UUID, "trace_id": "one"}, 400, "trace_id"),
    ({"file_uuid": HAMILTON_UUID, "trace_id": -1}, 400, "trace_id"),
    ({"file_uuid": HAMILTON_UUID, "trace_ids": []}, 400, "trace_ids"),
    ({"file_uuid": "nope", "trace_id": 1}, 400, "file_uuid"),
    ({"file_uuid": HAMILTON_UUID, "trace_id": 1, "extra": 1}, 400, "extra"),
    ({"file_uuid": "f" * 32, "trace_id": 1}, 404, None),
    ({"file_uuid": HAMILTON_UUID, "trace_id": 99}, 404, None),
    ({"file_uuid": HAMILTON_UUID, "trace_ids": [1, 99]}, 404, None),
])
def test_bind_errors(writer, people, hamilton, data, status, param):
    for route in ("/bind/trace", "/unbind/trace"):
        err = error(writer.post(url(people["Peggy"], route), data, format="json"), status)
        if param:
            assert err["details"]["parameter"] == param
    assert bound_ids(hamilton, people["Peggy"]) == [] and bound_ids(hamilton, people["Eliza"]) == [1, 2]


@pytest.mark.django_db
def test_bind_to_unknown_identity_and_non_json_body(writer, people):
    body = {"file_uuid": HAMILTON_UUID, "trace_id": 1}
    assert writer.post(f"/api/v1/identity/{'e' * 32}/bind/trace", body, format="json").status_code == 404
    response = writer.post(url(people["Peggy"], "/bind/trace"), "{not json", content_type="application/json")
    assert error(response, 400)["code"] == "BAD_REQUEST"
    response = writer.post(url(people["Peggy"], "/bind/trace"), [1, 2], format="json")
    assert error(response, 400)["details"]["parameter"] == "body"


@pytest.mark.django_db
def test_bind_traces_of_several_files_is_one_undoable_change(writer, people, hamilton, facenet, plain_user):
    peggy, before = people["Peggy"], CurationChange.objects.count()
    traces = [{"file_uuid": HAMILTON_UUID, "trace_id": 1}, {"file_uuid": FACENET_UUID, "trace_id": 1},
              {"file_uuid": HAMILTON_UUID.upper(), "trace_id": 3}]
    body = writer.post(url(peggy, "/bind/trace"), {"traces": traces}, format="json").json()
    assert body == {"success": True, "identity_uuid": peggy.identity_uuid, "rows_affected": 3, "changed": 3,
                    "files": [{"file_uuid": HAMILTON_UUID, "trace_ids": [1, 3]},
                              {"file_uuid": FACENET_UUID, "trace_ids": [1]}]}
    assert bound_ids(hamilton, peggy) == [1, 3] and bound_ids(facenet, peggy) == [1, 2]
    assert CurationChange.objects.count() == before + 1
    curation.undo(CurationChange.objects.latest("pk"), plain_user)
    assert bound_ids(hamilton, peggy) == [] and bound_ids(facenet, peggy) == [2]
    assert bound_ids(hamilton, people["Eliza"]) == [1, 2] and bound_ids(hamilton, people["Angelica"]) == [3]
    assert bound_ids(facenet, people["Angelica"]) == [1]
    body = writer.post(url(peggy, "/unbind/trace"), {"traces": [{"file_uuid": FACENET_UUID, "trace_id": 2},
                                                                {"file_uuid": HAMILTON_UUID, "trace_id": 2}]},
                       format="json").json()
    assert body["rows_affected"] == 1 and bound_ids(facenet, peggy) == []


@pytest.mark.django_db
def test_bind_traces_of_several_files_is_all_or_nothing(people, plain_user, hamilton, facenet):
    only_hamilton = key_client(plain_user, write=True, file_uuids=[HAMILTON_UUID])[0]
    eliza, before = people["Eliza"], CurationChange.objects.count()  # Eliza: traces in the Hamilton clip only
    body = {"traces": [{"file_uuid": HAMILTON_UUID, "trace_id": 3}, {"file_uuid": FACENET_UUID, "trace_id": 1}]}
    err = error(only_hamilton.post(url(eliza, "/bind/trace"), body, format="json"), 404)
    assert err["details"] == {"file_uuid": FACENET_UUID}
    body = {"traces": [{"file_uuid": HAMILTON_UUID, "trace_id": 3}, {"file_uuid": FACENET_UUID, "trace_id": 99}]}
    everything = key_client(plain_user, write=True)[0]
    err = error(everything.post(url(eliza, "/bind/trace"), body, format="json"), 404)
    assert err["details"] == {"file_uuid": FACENET_UUID, "trace_ids": [99]}
    assert bound_ids(hamilton, eliza) == [1, 2] and bound_ids(facenet, eliza) == []
    assert CurationChange.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize("traces,param", [
    ([{"file_uuid": HAMILTON_UUID, "trace_id": n % 4 + 1} for n in range(1001)], "traces"),
    ([], "traces"),
    ([{"file_uuid": HAMILTON_UUID}], "traces"),
    ([{"file_uuid": HAMILTON_UUID, "trace_id": 1, "extra": 1}], "traces"),
    ([{"file_uuid": "nope", "trace_id": 1}], "traces"),
])
def test_bind_traces_of_several_files_400(writer, people, hamilton, traces, param):
    response = writer.post(url(people["Peggy"], "/bind/trace"), {"traces": traces}, format="json")
    assert error(response, 400)["details"]["parameter"] == param
    response = writer.post(url(people["Peggy"], "/bind/trace"), {"traces": traces[:1], "trace_id": 1}, format="json")
    assert error(response, 400)["details"]["parameter"] == "trace_id"
    assert bound_ids(hamilton, people["Peggy"]) == []


# --- merge -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_merge_moves_every_trace_and_retires_the_sources(writer, people, hamilton, facenet):
    eliza, angelica, peggy = people["Eliza"], people["Angelica"], people["Peggy"]
    moved_pks = set(Trace.objects.filter(identity__in=[angelica, peggy]).values_list("pk", flat=True))
    assert len(moved_pks) == 3
    response = writer.post(url(eliza, "/merge"), {"from": [angelica.identity_uuid, peggy.identity_uuid]},
                           format="json")
    body = response.json()
    assert response.status_code == 200 and body["traces_moved"] == 3
    assert body["moved_per_identity"] == {angelica.identity_uuid: 2, peggy.identity_uuid: 1}
    assert set(Trace.objects.filter(identity=eliza).values_list("pk", flat=True)) == moved_pks | set(
        Trace.objects.filter(file=hamilton, trace_id__in=[1, 2]).values_list("pk", flat=True))
    assert not Trace.objects.filter(identity__in=[angelica, peggy]).exists()
    for source in (angelica, peggy):
        source.refresh_from_db()
        assert (source.status, source.source, source.merged_into_id) == ("inactive", "merged", eliza.pk)
    change = CurationChange.objects.get(pk=body["change_id"])
    recorded = {pk for pks in change.payload["moved"].values() for pk in pks}
    assert change.kind == "merge" and recorded == moved_pks
    detail = writer.get(url(angelica)).json()
    assert detail["merged_into"] == eliza.identity_uuid and detail["trace_count"] == 0
    assert writer.get(url(eliza)).json()["trace_count"] == 5


@pytest.mark.django_db
def test_merge_service_reports_pks_per_source(people):
    result = merge_identities(people["Peggy"], [people["Angelica"].identity_uuid])
    assert set(result.moved) == {people["Angelica"].identity_uuid}
    assert sorted(result.moved[people["Angelica"].identity_uuid]) == sorted(
        Trace.objects.filter(identity=people["Peggy"]).exclude(file__file_uuid=FACENET_UUID, trace_id=2)
        .values_list("pk", flat=True))


@pytest.mark.django_db
def test_merge_errors_change_nothing(writer, people):
    eliza, peggy = people["Eliza"], people["Peggy"]
    before = list(Trace.objects.order_by("pk").values_list("pk", "identity_id"))
    assert error(writer.post(url(eliza, "/merge"), {"from": [eliza.identity_uuid]}, format="json"), 400)[
        "details"]["parameter"] == "from"
    assert error(writer.post(url(eliza, "/merge"), {"from": [peggy.identity_uuid, eliza.identity_uuid]},
                             format="json"), 400)["details"]["parameter"] == "from"
    assert error(writer.post(url(eliza, "/merge"), {"from": []}, format="json"), 400)["details"]["parameter"] == "from"
    assert error(writer.post(url(eliza, "/merge"), {}, format="json"), 400)["details"]["parameter"] == "from"
    assert error(writer.post(url(eliza, "/merge"), {"from": ["zz"]}, format="json"), 400)["details"][
        "parameter"] == "from"
    err = error(writer.post(url(eliza, "/merge"), {"from": [peggy.identity_uuid, "e" * 32]}, format="json"), 404)
    assert err["details"]["identity_uuids"] == ["e" * 32]
    assert writer.post(f"/api/v1/identity/{'e' * 32}/merge", {"from": [peggy.identity_uuid]},
                       format="json").status_code == 404
    assert list(Trace.objects.order_by("pk").values_list("pk", "identity_id")) == before
    peggy.refresh_from_db()
    assert peggy.status == "confirmed" and peggy.merged_into_id is None


@pytest.mark.django_db
def test_merge_into_a_merged_identity_is_400(writer, people):
    eliza, angelica, peggy = people["Eliza"], people["Angelica"], people["Peggy"]
    assert writer.post(url(eliza, "/merge"), {"from": [angelica.identity_uuid]}, format="json").status_code == 200
    response = writer.post(url(angelica, "/merge"), {"from": [peggy.identity_uuid]}, format="json")
    assert error(response, 400)["code"] == "BAD_REQUEST"


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["José", "ñan", "50%", "a_b"])
def test_search_non_ascii_and_wildcards_in_aliases(reader, term):
    Identity.objects.create(name="Zoë", metadata={"aliases": ["José", "Mañana", "50% off", "a_b"]})
    Identity.objects.create(name="Other", metadata={"aliases": ["Jose", "Manana", "500 off", "axb"]})
    body = reader.get("/api/v1/identities", {"search": term}).json()
    assert [i["name"] for i in body["identities"]] == ["Zoë"]
