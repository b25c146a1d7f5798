"""Rebuild the identity calibration set (bench/identity_set/) from its public sources.

    .venv/bin/python bench/identity_set/build.py --mirrors /work/.mirror      # photos + video crops
    .venv/bin/python bench/identity_set/build.py --video-only                 # only the demo-clip crops
    .venv/bin/python bench/identity_set/build.py --add-new                    # keep every crop, add new sources

Photos: each listed file is read from its repository at the pinned commit (``git show
COMMIT:PATH`` in ``MIRRORS/<owner>+<name>/repo``, a bare clone), the largest face YuNet finds is
cropped with 40 % margin on every side and stored as a JPEG of at most 200 px (quality 90).
Video: faces of the demo clips' known people (bench/faces_eval/people.json names a trace by a point
inside its box; boxes from demo/detections/*.json, the pipeline's own output), up to
FRAMES_PER_TRACE detected boxes per trace, spread over the trace, cropped the same way at native
resolution (only shrunk to 200 px). ``manifest.json`` lists every crop with its person, its
*session* (the photo, or the clip and trace: pairs within one session are not counted as genuine
pairs, they are near-duplicates) and where it came from. See README.md for licences and labelling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from media_api.faces import zoo  # noqa: E402

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
MAX_SIDE = 200
MARGIN = 0.4
FRAMES_PER_TRACE = 4
MIN_VIDEO_FACE = 24

REPOS = {
    "serengil/deepface": {"commit": "243209fd7b46ecdecf72665cc25219f6e8181f25", "licence": "MIT (repository)"},
    "justadudewhohacks/face-api.js": {"commit": "a86f011d72124e5fb93e59d5c4ab98f699dd5c9c",
                                      "licence": "MIT (repository)"},
    "ageitgey/face_recognition": {"commit": "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
                                  "licence": "MIT (repository)"},
    "cmusatyalab/openface": {"commit": "051475225b5ae335918621077313085bbb7ab5a0",
                             "licence": "Apache-2.0 (repository)"},
    "timesler/facenet-pytorch": {"commit": "787da06156087cd6b616fe6608213722bddc30cd",
                                 "licence": "MIT (repository)"},
    "krasserm/face-recognition": {"commit": "363e4ec0f700e74b2ea7abceba289390d29dd43f",
                                  "licence": "Apache-2.0 (repository)"},
    "davisking/dlib": {"commit": "3d40bf5790ca9073c160cebb898800d9f33e12ab",
                       "licence": "BSL-1.0 (repository)"},
    "Azure-Samples/cognitive-services-sample-data-files": {"commit": "65af3b93cab5f45c76594f3265210646d4b3809e",
                                                           "licence": "MIT (repository)"},
    "exadel-inc/CompreFace": {"commit": "ddf32da8245e2e6688c3ab6f60587fd3e31538c2",
                              "licence": "Apache-2.0 (repository)"},
    "davidsandberg/facenet": {"commit": "096ed770f163957c1e56efa7feeb194773920f6e",
                              "licence": "MIT (repository)"},
    # added 2026-12-05 14:20 (README.md, "How it was labelled")
    "jasmcaus/opencv-course": {"commit": "c028d3624fd77f34ae9f1a57a13106551a018c4c",
                               "licence": "MIT (repository); the photos from Kaggle's 5-celebrity-faces-dataset"},
    "TencentARC/PhotoMaker": {"commit": "060b4fcb10b76a4554edf565d6106b7e36c968f0",
                              "licence": "Apache-2.0 (repository)"},
    "instantX-research/InstantID": {"commit": "2145b67f9607da6234702063692330185f374486",
                                    "licence": "Apache-2.0 (repository)"},
    "ToTheBeginning/PuLID": {"commit": "1aa2fc7df4bf51080df39f355f9abdc1cbfefbaa",
                             "licence": "Apache-2.0 (repository)"},
    "VectorSpaceLab/OmniGen": {"commit": "d4752019ae16741dc3801fd4989432aad4c81a4f", "licence": "MIT (repository)"},
    "foivospar/Arc2Face": {"commit": "8f3acd701d17fda7fde4c9f1d170fc88fecbe9ad", "licence": "MIT (repository)"},
    "scikit-image/scikit-image": {"commit": "cd0a3d22b9f359f05618d75d5c7a29b91b4951ca",
                                  "licence": "public domain (NASA photograph; repository BSD-3-Clause)"},
    "deepinsight/insightface": {"commit": "7fadd420c2351d0ffa8cac403421c1a3ed733365",
                                "licence": "MIT (repository's code; test images carry no other licence)"},
}

_DEEPFACE = {
    "Angelina Jolie": [1, 2, 4, 5, 6, 7, 10, 11],
    "Jennifer Aniston": [3, 12, 53, 54, 55, 56],
    "Scarlett Johansson": [8, 9, 47, 48, 49, 50, 51],
    "Mark Zuckerberg": [13, 14, 15, 57, 58],
    "Jack Dorsey": [16, 17, 59, 61, 62],
    "Elon Musk": [18, 19, 67],
    "Jeff Bezos": [20, 21],
    "Marissa Mayer": [22, 23],
    "Sundar Pichai": [24, 25],
    "Katy Perry": [26, 27, 28, 42, 43, 44, 45, 46],
    "Matt Damon": [29, 30, 31, 32, 33],
    "Leonardo DiCaprio": [34, 35, 36, 37],
    "George Clooney": [38, 39, 40, 41],
}
_FACEAPI = {"Mayim Bialik (Amy)": "amy", "Melissa Rauch (Bernadette)": "bernadette",
            "Simon Helberg (Howard)": "howard", "Johnny Galecki (Leonard)": "leonard",
            "Kaley Cuoco (Penny)": "penny", "Kunal Nayyar (Raj)": "raj", "Jim Parsons (Sheldon)": "sheldon",
            "Kevin Sussman (Stuart)": "stuart"}
_FACE_RECOGNITION = {
    "Barack Obama": ["examples/obama.jpg", "examples/obama2.jpg", "tests/test_images/obama3.jpg",
                     "examples/knn_examples/test/obama1.jpg"],
    "Joe Biden": ["examples/biden.jpg", "examples/knn_examples/train/biden/biden2.jpg"],
    "Alex Lacamoire": ["examples/alex-lacamoire.png", "examples/knn_examples/train/alex_lacamoire/img1.jpg",
                       "examples/knn_examples/test/alex_lacamoire1.jpg"],
    "Kit Harington": ["examples/knn_examples/train/kit_harington/john1.jpeg",
                      "examples/knn_examples/train/kit_harington/john2.jpeg",
                      "examples/knn_examples/test/johnsnow_test1.jpg"],
    "Rose Leslie": ["examples/knn_examples/train/rose_leslie/img1.jpg",
                    "examples/knn_examples/train/rose_leslie/img2.jpg"],
    "Lin-Manuel Miranda": ["examples/lin-manuel-miranda.png"],
}
_OPENFACE = {"Amy Adams": ["adams"], "Steve Carell": ["carell"], "Eric Clapton": ["clapton-1", "clapton-2"],
             "John Lennon": ["lennon-1", "lennon-2"]}
_FACENET = {"Angelina Jolie": "angelina_jolie", "Kate Siegel": "kate_siegel", "Paul Rudd": "paul_rudd",
            "Shea Whigham": "shea_whigham"}

#: krasserm/face-recognition images/<Name>/<Name>_<nnnn>.jpg: ten people of LFW (250x250), numbers 1-10
#: (Jacques Chirac: 1-5, 7-9, 19, 20).
_KRASSERM = ["Ariel_Sharon", "Arnold_Schwarzenegger", "Colin_Powell", "Donald_Rumsfeld", "George_W_Bush",
             "Gerhard_Schroeder", "Hugo_Chavez", "Jacques_Chirac", "Tony_Blair", "Vladimir_Putin"]
#: dlib examples/johns/<Name>/*.jpg (150x150 face chips, 11 per person), less copies of one photo:
#: byte-identical (Shimkus 000378_03227610) or the same photo re-cropped (SFace cosine < 0.06, checked by eye).
_DLIB_JOHNS = {
    "John_Salley": ["000179_02159509", "000183_02159543", "000186_02159346", "000189_02159361", "000190_02159501",
                    "000194_02159572", "000197_02159322", "000197_02159525", "000198_02159470", "000200_02159354"],
    "John_Savage": ["000264_01099001", "000274_01099061", "000277_01099000", "000289_01099139", "000290_01099067",
                    "000290_01099090", "000291_01099023", "000291_01099214", "000293_01099081", "000296_01099007",
                    "000299_01099008"],
    "John_Schneider": ["000288_00925786", "000302_00925785", "000307_00925823", "000325_00925954",
                       "000326_00925765", "000326_00926089", "000326_00926128", "000326_00926139",
                       "000329_00925859", "000329_00925963", "000331_00926012"],
    "John_Shimkus": ["000373_03228153", "000375_03227651", "000378_02340151", "000383_03227939", "000385_03227766",
                     "000388_03227773", "000390_03227666", "000394_02340150", "000396_03227722"],
    "John_Simm": ["000288_00470387", "000297_00470170", "000305_00470162", "000305_00470717", "000306_00470222",
                  "000306_00470223", "000309_00470287", "000310_00470421", "000310_00470511"],
}
#: Azure-Samples Face/images: stock photos of eight unnamed people, Family<N>-<Role><k>.jpg. The
#: quickstarts' person groups name two more photos: man2-person-group.jpg is "man" as man1/man3
#: (byte-identical to Family2-Man2/Man1), woman1-person-group.jpg is "woman" as woman2/woman3
#: (Family2-Lady2/Lady1). Left out: the byte-identical copies (child1-3, man1/3, woman2/3,
#: extra-woman-image, findsimilar) and the group photo test-image-person-group.jpg.
_AZURE = {"Family1-Dad": ["Family1-Dad1", "Family1-Dad2", "Family1-Dad3"],
          "Family1-Daughter": ["Family1-Daughter1", "Family1-Daughter2", "Family1-Daughter3"],
          "Family1-Mom": ["Family1-Mom1", "Family1-Mom2"], "Family1-Son": ["Family1-Son1", "Family1-Son2"],
          "Family2-Lady": ["Family2-Lady1", "Family2-Lady2", "woman1-person-group"],
          "Family2-Man": ["Family2-Man1", "Family2-Man2", "man2-person-group"],
          "Family3-Lady": ["Family3-Lady1"], "Family3-Man": ["Family3-Man1"]}
#: CompreFace embedding-calculator/sample_images: PERSONS in its annotations.py (A: 001-006, B: 007-008, C: 009).
_COMPREFACE = {"CompreFace person A": ["001_A", "002_A", "003_A", "004_A", "005_A", "006_A"],
               "CompreFace person B": ["007_B", "008_B"], "CompreFace person C": ["009_C"]}

#: Collages: one picture of several photos, several people; every face is a photo of its own (its own session)
#: and is named by a point inside it (pixels of the original picture). dlib's examples/faces/bald_guys.jpg:
#: 24 photos of four bald actors — the picture dlib's face-clustering example sorts into four people —
#: named by recognising them, face by face, on a numbered contact sheet (2026-12-05). Hard strangers: four
#: bald men of an age, two of them with the same stubble.
_COLLAGES = {
    ("davisking/dlib", "examples/faces/bald_guys.jpg"): {
        "Vin Diesel": [(145, 148), (636, 174), (140, 453), (387, 290), (645, 509), (150, 1369)],
        "Jason Statham": [(397, 100), (955, 175), (962, 474), (391, 514), (144, 767), (493, 915)],
        "Dwayne Johnson": [(1601, 236), (1880, 483), (1696, 747), (1166, 1387), (1513, 1394), (1869, 1390)],
        "Bruce Willis": [(855, 899), (1148, 838), (124, 1052), (453, 1331), (847, 1311), (1188, 1139)],
    },
}

#: people.json names -> the names used here (the same person as in the photos where there is one).
#: jasmcaus/opencv-course's Resources/Faces: (train folder, val folder) per person; its val photos and the first
#: five of train (the others are more of the same five people).
_OPENCV_COURSE = {"Ben Affleck": ("Ben Afflek", "ben_afflek"), "Elton John": ("Elton John", "elton_john"),
                  "Jerry Seinfeld": ("Jerry Seinfield", "jerry_seinfeld"), "Madonna": ("Madonna", "madonna"),
                  "Mindy Kaling": ("Mindy Kaling", "mindy_kaling")}
#: One or a few photos of a named person in image-generation and face-analysis repositories' examples (file names
#: say who; where a name is only a first name the person is labelled by it and the repository).
_NAMED_EXAMPLES = [
    *[("TencentARC/PhotoMaker", f"examples/yangmi_woman/yangmi_{n}.{'jpeg' if n == 2 else 'jpg'}", "Yang Mi")
      for n in range(1, 7)],
    *[("TencentARC/PhotoMaker", f"examples/scarletthead_woman/scarlett_{n}.jpg", "Scarlett Johansson")
      for n in range(4)],
    ("instantX-research/InstantID", "examples/musk_resize.jpeg", "Elon Musk"),
    ("instantX-research/InstantID", "examples/kaifu_resize.png", "Kai-Fu Lee"),
    ("instantX-research/InstantID", "examples/sam_resize.png", "Sam Altman"),
    ("instantX-research/InstantID", "examples/schmidhuber_resize.png", "Juergen Schmidhuber"),
    ("instantX-research/InstantID", "examples/yann-lecun_resize.jpg", "Yann LeCun"),
    ("ToTheBeginning/PuLID", "example_inputs/hinton.jpeg", "Geoffrey Hinton"),
    ("ToTheBeginning/PuLID", "example_inputs/lifeifei.jpg", "Fei-Fei Li"),
    ("ToTheBeginning/PuLID", "example_inputs/rihanna.webp", "Rihanna"),
    ("ToTheBeginning/PuLID", "example_inputs/liuyifei.png", "Liu Yifei"),
    ("VectorSpaceLab/OmniGen", "imgs/test_cases/yifei2.png", "Liu Yifei"),
    ("VectorSpaceLab/OmniGen", "imgs/test_cases/young_musk.jpg", "Elon Musk"),
    ("VectorSpaceLab/OmniGen", "imgs/test_cases/young_trump.jpeg", "Donald Trump"),
    ("VectorSpaceLab/OmniGen", "imgs/test_cases/Amanda.jpg", "OmniGen's Amanda"),
    ("VectorSpaceLab/OmniGen", "imgs/test_cases/mckenna.jpg", "OmniGen's Mckenna"),
    ("VectorSpaceLab/OmniGen", "imgs/demo_cases/emma.jpeg", "OmniGen's Emma"),
    ("foivospar/Arc2Face", "assets/examples/freeman.jpg", "Morgan Freeman"),
    ("foivospar/Arc2Face", "assets/examples/jackie.png", "Jackie Chan"),
    ("foivospar/Arc2Face", "assets/examples/joacquin.png", "Joaquin Phoenix"),
    ("scikit-image/scikit-image", "src/_skimage2/data/astronaut.png", "Eileen Collins"),
    ("deepinsight/insightface", "cpp-package/inspireface/test_res/data/bulk/Rob_Lowe_0001.jpg", "Rob Lowe"),
    ("deepinsight/insightface", "cpp-package/inspireface/test_res/data/bulk/Rob_Lowe_0002.jpg", "Rob Lowe"),
    ("deepinsight/insightface", "cpp-package/inspireface/test_res/data/bulk/Nathalie_Baye_0002.jpg", "Nathalie Baye"),
    ("deepinsight/insightface", "cpp-package/inspireface/test_res/data/bulk/yifei.jpg", "Liu Yifei"),
]

VIDEO_NAMES = {"Alex Lacamoire (pianist)": "Alex Lacamoire"}


def photo_sources() -> list[tuple[str, str, str]]:
    """(repo, path, person) of every photo in the set."""
    rows = []
    for person, numbers in _DEEPFACE.items():
        rows += [("serengil/deepface", f"tests/unit/dataset/img{n}.jpg", person) for n in numbers]
    for person, folder in _FACEAPI.items():
        rows += [("justadudewhohacks/face-api.js", f"examples/images/{folder}/{folder}{n}.png", person)
                 for n in range(1, 6)]
    for person, paths in _FACE_RECOGNITION.items():
        rows += [("ageitgey/face_recognition", path, person) for path in paths]
    for person, names in _OPENFACE.items():
        rows += [("cmusatyalab/openface", f"images/examples/{name}.jpg", person) for name in names]
    for person, folder in _FACENET.items():
        rows.append(("timesler/facenet-pytorch", f"data/test_images/{folder}/1.jpg", person))
    for folder in _KRASSERM:
        numbers = [1, 2, 3, 4, 5, 7, 8, 9, 19, 20] if folder == "Jacques_Chirac" else range(1, 11)
        rows += [("krasserm/face-recognition", f"images/{folder}/{folder}_{n:04d}.jpg", folder.replace("_", " "))
                 for n in numbers]
    for folder, stems in _DLIB_JOHNS.items():
        rows += [("davisking/dlib", f"examples/johns/{folder}/{stem}.jpg", folder.replace("_", " ")) for stem in stems]
    rows.append(("davisking/dlib", "examples/faces/Tom_Cruise_avp_2014_4.jpg", "Tom Cruise"))
    for role, stems in _AZURE.items():
        rows += [("Azure-Samples/cognitive-services-sample-data-files", f"Face/images/{stem}.jpg",
                  f"Azure sample {role}") for stem in stems]
    for person, stems in _COMPREFACE.items():
        rows += [("exadel-inc/CompreFace", f"embedding-calculator/sample_images/{stem}.jpg", person) for stem in stems]
    rows += [("davidsandberg/facenet", f"data/images/Anthony_Hopkins_000{n}.jpg", "Anthony Hopkins") for n in (1, 2)]
    for person, (train, val) in _OPENCV_COURSE.items():
        rows += [("jasmcaus/opencv-course", f"Resources/Faces/{part}/{folder}/{n}.jpg", person)
                 for part, folder in (("train", train), ("val", val)) for n in range(1, 6)]
    return rows + _NAMED_EXAMPLES


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def crop_face(image: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, list[int]]:
    """The face with MARGIN of context on every side (clipped to the image), shrunk to MAX_SIDE,
    and the face's box in the crop's pixels."""
    x, y, w, h = box
    side = max(w, h)
    mx, my = MARGIN * side + (side - w) / 2, MARGIN * side + (side - h) / 2
    x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
    x1, y1 = min(image.shape[1], int(x + w + mx)), min(image.shape[0], int(y + h + my))
    crop = image[y0:y1, x0:x1]
    scale = min(1.0, MAX_SIDE / max(crop.shape[:2]))
    if scale < 1:
        crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    return crop, [round((x - x0) * scale), round((y - y0) * scale), round(w * scale), round(h * scale)]


def all_faces(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """YuNet's faces (x, y, w, h in the image's pixels), searched on the image shrunk to at most 1280 px."""
    scale = min(1.0, 1280 / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    _, faces = zoo.yunet(small.shape[1], small.shape[0]).detect(small)
    return [] if faces is None else [tuple(float(v) for v in row[:4] / scale) for row in faces]


def largest_face(image: np.ndarray) -> tuple[float, float, float, float] | None:
    """YuNet's largest face, searched on the image shrunk to at most 1280 px."""
    return max(all_faces(image), key=lambda box: box[2] * box[3], default=None)


def _read_blob(mirrors: Path, repo: str, commit: str, path: str) -> bytes:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout


def _write(cropped: tuple[np.ndarray, list[int]], relative: str) -> dict:
    crop, box = cropped
    target = HERE / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    target.write_bytes(encoded.tobytes())
    return {"box": box, "sha256": hashlib.sha256(encoded.tobytes()).hexdigest()}


def build_photos(mirrors: Path, skip: set[str] = frozenset()) -> list[dict]:
    """Crops of the photo_sources() of the repositories not in ``skip``."""
    entries = []
    for repo, path, person in photo_sources():
        if repo in skip:
            continue
        commit = REPOS[repo]["commit"]
        data = _read_blob(mirrors, repo, commit, path)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        box = None if image is None else largest_face(image)
        if box is None:
            print(f"skipped (no face found): {repo} {path}", file=sys.stderr)
            continue
        name = slug(repo.split("/")[1] + "_" + "_".join(path.split("/")[-3 if "Resources/Faces" in path else -2:-1])
                    + "_" + Path(path).stem)
        relative = f"photos/{slug(person)}/{name}.jpg"
        entries.append({"file": relative, "person": person, "session": f"{repo}:{path}", "kind": "photo",
                        "source": {"repo": repo, "path": path, "commit": commit,
                                   "licence": REPOS[repo]["licence"],
                                   "original_sha256": hashlib.sha256(data).hexdigest()},
                        "face_px": round(box[3]), **_write(crop_face(image, box), relative)})
    return entries


def build_collages(mirrors: Path) -> list[dict]:
    """Every named face of the _COLLAGES pictures (a face no point names is left out)."""
    entries = []
    for (repo, path), people in _COLLAGES.items():
        commit = REPOS[repo]["commit"]
        data = _read_blob(mirrors, repo, commit, path)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for number, box in enumerate(sorted(all_faces(image), key=lambda b: (round(b[1]), round(b[0])))):
            named = [person for person, points in people.items()
                     if any(box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3] for x, y in points)]
            if len(named) != 1:
                continue
            name = slug(repo.split("/")[1] + "_" + Path(path).stem + f"_{number:02d}")
            relative = f"photos/{slug(named[0])}/{name}.jpg"
            entries.append({"file": relative, "person": named[0], "session": f"{repo}:{path}#{number}",
                            "kind": "photo",
                            "source": {"repo": repo, "path": path, "commit": commit, "face": number,
                                       "box": [round(v) for v in box], "licence": REPOS[repo]["licence"],
                                       "original_sha256": hashlib.sha256(data).hexdigest()},
                            "face_px": round(box[3]), **_write(crop_face(image, box), relative)})
    return entries


def _person_of(boxes: dict[int, tuple], points: list) -> bool:
    return any(frame in boxes and boxes[frame][0] <= x < boxes[frame][0] + boxes[frame][2]
               and boxes[frame][1] <= y < boxes[frame][1] + boxes[frame][3] for frame, x, y in points)


#: the demo detections the video crops were cut from (the files have been regenerated since; README)
DETECTIONS_COMMIT = "a55759d"


def _detections_at(commit: str, clip: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:demo/detections/{clip}.json"],
                          check=True, capture_output=True, text=True).stdout


def build_video() -> list[dict]:
    import av

    people = json.loads((ROOT / "bench" / "faces_eval" / "people.json").read_text())["clips"]
    entries = []
    for clip, persons in people.items():
        rows = json.loads(_detections_at(DETECTIONS_COMMIT, clip))["detections"]
        traces: dict[int, dict[int, tuple]] = {}
        detected: dict[int, list[int]] = {}
        for row in rows:
            box = (row["x"], row["y"], row["width"], row["height"])
            traces.setdefault(row["trace_id"], {})[row["frame_number"]] = box
            if row.get("origin", "detected") == "detected" and row["height"] >= MIN_VIDEO_FACE:
                detected.setdefault(row["trace_id"], []).append(row["frame_number"])
        wanted: dict[int, list[tuple[int, str, int]]] = {}
        for person, points in persons.items():
            for trace_id, boxes in sorted(traces.items()):
                frames = detected.get(trace_id, [])
                if not frames or not _person_of(boxes, points):
                    continue
                picks = sorted({frames[round(i * (len(frames) - 1) / max(1, FRAMES_PER_TRACE - 1))]
                                for i in range(min(FRAMES_PER_TRACE, len(frames)))})
                for frame in picks:
                    wanted.setdefault(frame, []).append((trace_id, VIDEO_NAMES.get(person, person), frame))
        with av.open(str(ROOT / "demo" / "media" / f"{clip}.mp4")) as container:
            for number, frame in enumerate(container.decode(video=0)):
                if number not in wanted:
                    continue
                image = frame.to_ndarray(format="bgr24")
                for trace_id, person, _ in wanted[number]:
                    box = traces[trace_id][number]
                    relative = f"video/{clip}/{slug(person)}/t{trace_id:03d}_f{number:04d}.jpg"
                    entries.append({"file": relative, "person": person, "session": f"{clip}:trace{trace_id}",
                                    "kind": "video",
                                    "source": {"repo": "this repository", "path": f"demo/media/{clip}.mp4",
                                               "frame": number, "box": list(box),
                                               "licence": "see demo/media/SOURCES.md"},
                                    "face_px": int(box[3]), **_write(crop_face(image, box), relative)})
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--video-only", action="store_true", help="keep the photos, rebuild the video crops")
    parser.add_argument("--collages-only", action="store_true", help="keep the rest, rebuild the collages' crops")
    parser.add_argument("--add-new", action="store_true",
                        help="keep every crop made before, add the photos of repositories not in the manifest yet")
    args = parser.parse_args()
    old = json.loads(MANIFEST.read_text())["faces"] if MANIFEST.exists() else []
    collage = {f"{repo}:{path}" for repo, path in _COLLAGES}
    if args.add_new:  # in the order a whole rebuild gives (the set's hash and its simulated sets depend on it)
        kept = [e for e in old if e["kind"] == "photo"]
        added = build_photos(args.mirrors, skip={e["source"]["repo"] for e in kept})
        order = {f"{repo}:{path}": number for number, (repo, path, _) in enumerate(photo_sources())}
        photos = (sorted((e for e in kept + added if e["session"] in order), key=lambda e: order[e["session"]])
                  + [e for e in kept if e["session"] not in order])  # the collages' crops
        faces = photos + [e for e in old if e["kind"] == "video"]
    elif args.collages_only:
        kept = [e for e in old if e["session"].split("#")[0] not in collage]
        faces = ([e for e in kept if e["kind"] == "photo"] + build_collages(args.mirrors)
                 + [e for e in kept if e["kind"] == "video"])
        photos = [e for e in faces if e["kind"] == "photo"]
    else:
        photos = ([e for e in old if e["kind"] == "photo"] if args.video_only
                  else build_photos(args.mirrors) + build_collages(args.mirrors))
        faces = photos + build_video()
    MANIFEST.write_text(json.dumps({"faces": faces}, indent=1, ensure_ascii=False) + "\n")
    people = {e["person"] for e in faces}
    print(f"{len(faces)} faces ({len(photos)} photos) of {len(people)} people -> {MANIFEST}")


if __name__ == "__main__":
    main()
