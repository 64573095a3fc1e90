"""Reviews through the real API (TestClient, real SQLite and files): corrections, ETag and
If-Match, undo, two tabs at once, tenants and admin keys, the reviewed CSV and COCO, and the
job.reviewed webhook delivered to a real receiver."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest

from tests.fixtures_service import in_process_api
from tests.fixtures_webhooks import make_sender
from tests.test_api import complete_with_outputs, upload
from tests.waiting import wait_until

ALICE, BOB, ADMIN = "alice-key-5f0e1c", "bob-key-93a7d2", "admin-key-c3d9a8"
KEYS = {"api_keys": [f"alice:{ALICE}", f"bob:{BOB}"], "admin_api_keys": [f"ops:{ADMIN}"],
        "webhook_allow_private": True}


def track(track_id: int, cls: str, first: int, last: int) -> dict:
    return {"id": track_id, "class": cls, "first_frame": first, "last_frame": last, "first_time_s": first / 10,
            "last_time_s": last / 10, "frames_seen": last - first + 1, "mean_confidence": 0.5,
            "raw_ids": [track_id]}


TRACKS = [track(1, "cow", 0, 1), track(2, "cow", 1, 2), track(3, "sheep", 0, 2), track(4, "cow", 2, 2)]
STATS = {"video": {"width": 64, "height": 48}, "counts": {"total_unique": 4, "by_class": {"cow": 3, "sheep": 1}},
         "tracks": TRACKS}
CATEGORIES = [{"id": 0, "name": "cow", "supercategory": "object"}, {"id": 1, "name": "sheep", "supercategory": "object"},
              {"id": 2, "name": "horse", "supercategory": "object"}]
COCO = {"info": {"description": "CattleCounter tracked detections"}, "categories": CATEGORIES, "images": [],
        "annotations": []}


def frame(index: int, *tracks: tuple[int, str]) -> str:
    detections = [{"track_id": t, "class": cls, "score": 0.5, "box": [t, t, t + 10, t + 10]} for t, cls in tracks]
    return json.dumps({"frame": index, "time_s": index / 10, "detections": detections})


DETECTIONS = "\n".join([frame(0, (1, "cow"), (3, "sheep")), frame(1, (1, "cow"), (2, "cow"), (3, "sheep")),
                        frame(2, (2, "cow"), (3, "sheep"), (4, "cow"))]) + "\n"
OUTPUTS = {"stats.json": json.dumps(STATS).encode(), "coco.json": json.dumps(COCO).encode(),
           "detections.jsonl": DETECTIONS.encode(), "annotated.mp4": b"\0" * 64}


@pytest.fixture
def api(make_settings):
    with in_process_api(make_settings("local", **KEYS)) as client:
        client.headers["X-API-Key"] = ALICE
        yield client


def completed_job(api, clip, **fields) -> str:
    response = upload(api, clip, **fields)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    complete_with_outputs(api, job_id, OUTPUTS)
    return job_id


def correct(api, job_id: str, etag: str, **body):
    return api.post(f"/jobs/{job_id}/review", json=body, headers={"If-Match": etag})


def test_corrections_round_trip_with_who_and_when_and_undo_back_to_the_automatic_count(api, small_clip):
    job_id = completed_job(api, small_clip)
    first = api.get(f"/jobs/{job_id}/review")
    assert first.status_code == 200 and first.headers["ETag"] == '"0"'
    assert first.json()["automatic"] == first.json()["reviewed"] == {"total_unique": 4,
                                                                     "by_class": {"cow": 3, "sheep": 1}}

    made = correct(api, job_id, '"0"', action="merge", track=1, into=2)
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == f"/jobs/{job_id}/review/1"
    assert api.get(made.headers["Location"]).json()["into"] == 2
    made = correct(api, job_id, made.headers["ETag"], action="not_animal", track=4)
    made = correct(api, job_id, made.headers["ETag"], action="class", track=3, **{"class": "horse"})
    assert made.status_code == 201, made.text
    review = api.get(f"/jobs/{job_id}/review").json()
    assert review["reviewed"] == {"total_unique": 2, "by_class": {"cow": 1, "horse": 1}}
    assert review["automatic"]["total_unique"] == 4  # kept beside the reviewed one
    assert [(c["n"], c["action"], c["by"], c["admin"]) for c in review["corrections"]] == [
        (1, "merge", "alice", False), (2, "not_animal", "alice", False), (3, "class", "alice", False)]
    assert all(c["at"] and c["undone"] is None for c in review["corrections"])
    assert {t["id"]: t["final_id"] for t in review["tracks"]} == {1: 2, 2: 2, 3: 3, 4: None}

    etag = made.headers["ETag"]
    for n in (2, 1, 3):  # one by one, in any order nothing depends on
        undone = api.delete(f"/jobs/{job_id}/review/{n}", headers={"If-Match": etag})
        assert undone.status_code == 200, undone.text
        etag = undone.headers["ETag"]
    review = api.get(f"/jobs/{job_id}/review").json()
    assert review["reviewed"] == review["automatic"]
    assert all(c["undone"]["by"] == "alice" for c in review["corrections"])  # the history stays
    assert api.get(f"/jobs/{job_id}/result").json()["counts"]["total_unique"] == 4  # stats.json untouched


def test_two_tabs_with_the_same_etag_one_wins_and_the_other_gets_412(api, small_clip):
    job_id = completed_job(api, small_clip)
    etag = api.get(f"/jobs/{job_id}/review").headers["ETag"]
    tab_one = correct(api, job_id, etag, action="not_animal", track=4)
    tab_two = correct(api, job_id, etag, action="merge", track=1, into=2)
    assert (tab_one.status_code, tab_two.status_code) == (201, 412)
    assert tab_two.json()["error"]["code"] == "review_changed"
    assert tab_two.headers["ETag"] == tab_one.headers["ETag"]  # what to read again
    again = correct(api, job_id, tab_two.headers["ETag"], action="merge", track=1, into=2)
    assert again.status_code == 201
    assert api.get(f"/jobs/{job_id}/review").json()["reviewed"]["total_unique"] == 2  # both corrections kept


def test_tabs_posting_at_the_same_moment_save_exactly_one_correction(api, small_clip):
    """Requests in parallel may all pass the If-Match check before any has written: the
    conditional write in storage still lets one through and answers the others 412."""
    job_id = completed_job(api, small_clip)
    barrier = threading.Barrier(6)
    answers: list[int] = []

    def tab(track_id: int) -> None:
        barrier.wait()
        answers.append(correct(api, job_id, '"0"', action="not_animal", track=track_id % 4 + 1).status_code)

    threads = [threading.Thread(target=tab, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 412, 412, 412, 412, 412]
    review = api.get(f"/jobs/{job_id}/review")
    assert review.headers["ETag"] == '"1"' and len(review.json()["corrections"]) == 1


def test_undo_that_a_later_correction_needs_is_refused_and_loses_nothing(api, small_clip):
    job_id = completed_job(api, small_clip)
    made = correct(api, job_id, '"0"', action="merge", track=1, into=2)
    made = correct(api, job_id, made.headers["ETag"], action="merge", track=3, into=1)  # 3 joins #2's animal
    undo = api.delete(f"/jobs/{job_id}/review/1", headers={"If-Match": made.headers["ETag"]})
    assert undo.status_code == 200  # #3 then joins #1 alone: still valid
    review = api.get(f"/jobs/{job_id}/review").json()
    assert {t["id"]: t["final_id"] for t in review["tracks"]} == {1: 1, 2: 2, 3: 1, 4: 4}

    made = correct(api, job_id, undo.headers["ETag"], action="not_animal", track=2)
    made = correct(api, job_id, made.headers["ETag"], action="class", track=4, **{"class": "sheep"})
    made = correct(api, job_id, made.headers["ETag"], action="not_animal", track=1)
    refused = api.post(f"/jobs/{job_id}/review", json={"action": "merge", "track": 4, "into": 1},
                       headers={"If-Match": made.headers["ETag"]})
    assert refused.status_code == 409 and "not an animal" in refused.json()["error"]["message"]
    assert api.get(f"/jobs/{job_id}/review").headers["ETag"] == made.headers["ETag"]  # nothing written


def test_an_admin_may_review_another_tenants_job_and_is_recorded_as_admin(api, small_clip):
    job_id = completed_job(api, small_clip)
    assert api.get(f"/jobs/{job_id}/review", headers={"X-API-Key": BOB}).status_code == 404
    refused = api.post(f"/jobs/{job_id}/review", json={"action": "not_animal", "track": 4},
                       headers={"X-API-Key": BOB, "If-Match": '"0"'})
    assert refused.status_code == 404
    made = api.post(f"/jobs/{job_id}/review", json={"action": "not_animal", "track": 4},
                    headers={"X-API-Key": ADMIN, "If-Match": '"0"'})
    assert made.status_code == 201
    assert [(c["by"], c["admin"]) for c in made.json()["corrections"]] == [("ops", True)]


def test_reviewed_tracks_csv_and_coco(api, small_clip):
    job_id = completed_job(api, small_clip)
    made = correct(api, job_id, '"0"', action="merge", track=1, into=2)
    made = correct(api, job_id, made.headers["ETag"], action="not_animal", track=4)
    correct(api, job_id, made.headers["ETag"], action="class", track=3, **{"class": "horse"})

    response = api.get(f"/jobs/{job_id}/review/exports/tracks.csv", params={"download": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert [(r["id"], r["class"], r["first_frame"], r["last_frame"], r["merged_ids"]) for r in rows] == [
        ("2", "cow", "0", "2", "1"), ("3", "horse", "0", "2", "")]

    coco = api.get(f"/jobs/{job_id}/review/exports/coco").json()
    assert coco["categories"] == CATEGORIES
    assert [image["id"] for image in coco["images"]] == [1, 2, 3]
    labels = sorted((a["image_id"], a["track_id"], a["category_id"]) for a in coco["annotations"])
    assert labels == [(1, 2, 0), (1, 3, 2), (2, 2, 0), (2, 2, 0), (2, 3, 2), (3, 2, 0), (3, 3, 2)]  # no #4, #1 is #2

    with_query_key = api.get(f"/jobs/{job_id}/review/exports/tracks.csv", params={"api_key": ALICE},
                             headers={"X-API-Key": ""})
    assert with_query_key.status_code == 200  # a download link, as the other exports


def test_job_reviewed_webhook_is_delivered(api, small_clip, receivers, make_settings):
    receiver = receivers()
    job_id = completed_job(api, small_clip, callback_url=receiver.url)
    made = correct(api, job_id, '"0"', action="not_animal", track=4)
    assert made.status_code == 201
    api.delete(f"/jobs/{job_id}/review/1", headers={"If-Match": made.headers["ETag"]})
    assert [e.type for e in api.backends.outbox.events(job_id)] == ["job.reviewed", "job.reviewed"]

    sender = make_sender(make_settings, api.backends.outbox)
    try:
        def delivered() -> bool:
            for future in sender.claim_and_send():
                future.result()
            return len(receiver.received) == 2
        wait_until(delivered, timeout=30, what="both job.reviewed webhooks delivered")
    finally:
        sender.close()
    bodies = [json.loads(body) for _, body in receiver.received]
    assert [b["type"] for b in bodies] == ["job.reviewed", "job.reviewed"]
    assert bodies[0]["data"]["job_id"] == job_id
    assert [b["data"]["review"]["reviewed"]["total_unique"] for b in bodies] == [3, 4]
    assert list(bodies[1]["data"]["review"]["change"]) == ["undone"]
