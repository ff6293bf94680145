"""The HTTP API of ``sonofm serve`` on loopback with tiny runs of every task: each answer equals what the Python API
gives for the same image (classifier, segmenter, enhancer, A-SAM prompted and automatic); bad inputs get a 4xx with a
clear message and the server keeps serving; uploads stay bounded in memory."""

from __future__ import annotations

import io
import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import sonofm
from sonofm.data.image_io import read_image
from sonofm.data.memory_files import decode_file
from sonofm.errors import SonofmError
from sonofm.serve.app import ServeSettings, build_app
from sonofm.serve.models import load_served_models
from sonofm.serve.server import bind, running_server
from sonofm.serve.sessions import UploadStore

KINDS = ("cls", "seg", "enhance", "prompter")


@pytest.fixture(scope="module")
def server(serve_run):
    models = load_served_models([serve_run(kind) for kind in KINDS], "32")
    with running_server(build_app(models, ServeSettings())) as url:
        yield url


def request(url: str, path: str, body: bytes | dict | None = None, headers: dict | None = None
            ) -> tuple[int, dict | bytes]:
    """``(status, JSON answer or raw bytes)`` of a GET (no body) or a POST (JSON for a dict) with the page's header."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"X-Sonofm": "1", **({"Content-Type": "application/json"} if isinstance(body, dict) else {}),
            **(headers or {})}
    call = urllib.request.Request(url + path.lstrip("/"), data=data, headers=sent,
                                  method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(call, timeout=60) as answer:
            status, raw, kind = answer.status, answer.read(), answer.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read(), error.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw


def upload(url: str, data: bytes, name: str) -> dict:
    status, info = request(url, f"/api/upload?name={urllib.request.quote(name)}", data)
    assert status == 200, info
    return info


def test_classifier_segmenter_and_enhancer_answer_as_the_python_api(server, serve_run, sample_image, reference):
    info = upload(server, sample_image.read_bytes(), "scan.png")
    assert (info["width"], info["height"], info["frames"], info["pixel_size_mm"]) == (72, 40, 1, None)
    image = read_image(sample_image)
    status, frame = request(server, f"/api/uploads/{info['upload']}/frames/0")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(frame)).convert("RGB")), image)

    status, classes = request(server, "/api/predict", {"model": "cls", "upload": info["upload"]})
    expected = sonofm.load(serve_run("cls")).predict(image)[0]
    assert status == 200 and classes["kind"] == "classes" and classes["probabilities"].keys() == expected.keys()
    assert all(classes["probabilities"][name] == pytest.approx(p, abs=1e-6) for name, p in expected.items())
    assert classes["predicted"] == max(expected, key=expected.get)
    assert reference.png(classes["gradcam"]).shape == (40, 72, 4)

    status, mask = request(server, "/api/predict", {"model": "seg", "upload": info["upload"]})
    expected_mask = sonofm.load(serve_run("seg")).predict(image)[0]
    assert status == 200 and np.array_equal(reference.png(mask["mask"]), expected_mask)
    assert [entry["pixels"] for entry in mask["legend"]] == [int((expected_mask == k).sum()) for k in (1, 2)]
    assert all(entry["unit"] == "px²" for entry in mask["legend"])

    status, restored = request(server, "/api/predict", {"model": "enhance", "upload": info["upload"]})
    expected_image = sonofm.load(serve_run("enhance")).predict(image)[0]
    assert status == 200 and np.array_equal(reference.png(restored["restored"]), expected_image)


def test_a_sam_masks_equal_the_models_own_for_the_same_prompts(server, serve_run, sample_image, reference):
    info = upload(server, sample_image.read_bytes(), "scan.png")
    target = {"model": "prompter", "upload": info["upload"]}
    status, embedded = request(server, "/api/embed", target)
    assert status == 200 and embedded["cached"] is False
    image = read_image(sample_image)
    for clicks, box in (([[40, 20, 1]], None), ([[40, 20, 1], [10, 30, 0]], None), ([[40, 20, 0]], [20, 5, 60, 35])):
        status, answer = request(server, "/api/prompt", {**target, "clicks": clicks, "box": box})
        assert status == 200 and answer["embedding_cached"] is True, answer
        expected, _ = reference.sam(serve_run("prompter"), image, clicks, box)
        assert np.array_equal(reference.png(answer["mask"]), expected.astype(np.uint8)), (clicks, box)
        assert answer["legend"][0]["pixels"] == int(expected.sum())
    assert 0 < expected.sum() < expected.size  # the tiny model gives a real mask for this prompt
    status, automatic = request(server, "/api/predict", target)
    _, anatomy = reference.sam(serve_run("prompter"), image, [], None)
    assert status == 200 and np.array_equal(reference.png(automatic["mask"]), anatomy)
    assert 0 <= automatic["confidence"] <= 1


def test_dicom_spacing_gives_areas_in_mm2_and_a_cine_its_frames(server, media, reference):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 40, 56), dtype=np.uint8)
    info = upload(server, media.dicom(frames, spacing_mm=0.25), "study.dcm")
    assert (info["kind"], info["frames"], info["pixel_size_mm"]) == ("dicom", 3, 0.25)
    status, frame = request(server, f"/api/uploads/{info['upload']}/frames/2")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(frame)).convert("L")), frames[2])
    status, mask = request(server, "/api/predict", {"model": "seg", "upload": info["upload"], "frame": 1})
    assert status == 200
    for entry in mask["legend"]:
        assert entry["unit"] == "mm²" and entry["area"] == pytest.approx(entry["pixels"] * 0.0625)
    status, fan = request(server, "/api/fan", {"upload": info["upload"]})
    assert status == 200 and fan["unit"] == "mm²" and reference.png(fan["overlay"]).shape == (40, 56, 4)

    cine = upload(server, media.gif(frames), "loop.gif")
    assert (cine["kind"], cine["frames"], cine["pixel_size_mm"]) == ("cine", 3, None)
    status, answer = request(server, "/api/predict", {"model": "cls", "upload": cine["upload"], "frame": 5})
    assert status == 400 and "no frame 5 (3 frames)" in answer["error"]


@pytest.mark.parametrize("name, content, status, message", [
    ("truncated.png", "TRUNCATED_PNG", 400, "cannot read image truncated.png: truncated or corrupt"),
    ("notes.png", b"these are notes, not pixels", 400, "cannot read image notes.png: not an image file"),
    ("../../etc/passwd", b"root:x:0:0", 415, "cannot read passwd: unsupported file type"),
    ("..\\..\\secret\\scan.dcm", "NO_PIXELS", 400, "cannot read DICOM scan.dcm: cannot decode pixel data"),
    ("big.png", "SIXTY_MB", 413, "big.png is 60.0 MB, over the limit of 50.0 MB"),
    ("empty.png", b"", 400, "empty.png is empty"),
])
def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(server, sample_image, media, name, content, status,
                                                                   message):
    content = {"TRUNCATED_PNG": sample_image.read_bytes()[:300], "SIXTY_MB": bytes(60 * 2**20),
               "NO_PIXELS": media.dicom(np.zeros((1, 8, 8), np.uint8), pixels=False)}.get(content, content)
    answer_status, answer = request(server, f"/api/upload?name={urllib.request.quote(name)}", content)
    assert answer_status == status and answer["error"].startswith(message), answer
    assert "root:" not in json.dumps(answer) and "/etc" not in answer["error"]
    assert upload(server, sample_image.read_bytes(), "scan.png")["name"] == "scan.png"


def test_path_like_names_are_reduced_to_a_display_name(server, sample_image):
    assert upload(server, sample_image.read_bytes(), "../../etc/passwd.png")["name"] == "passwd.png"
    assert upload(server, sample_image.read_bytes(), "C:\\Users\\x\\<b>scan</b>.png")["name"] == "b_.png"


@pytest.mark.parametrize("body, status, message", [
    ({"model": "nope", "upload": "x"}, 404, "unknown model 'nope'; this server has cls, seg, enhance, prompter"),
    ({"model": "cls", "upload": "missing"}, 404, "unknown upload 'missing'"),
    ({"model": "cls", "upload": "UPLOAD", "clicks": [[1, 1, 1]]}, 400, "model cls is a cls model"),
    ({"model": "prompter", "upload": "UPLOAD", "clicks": [[72, 1, 1]]}, 400, "(72, 1) is outside the 72x40 image"),
    ({"model": "prompter", "upload": "UPLOAD", "clicks": [[1, 1, 2]]}, 400, "a click must be [x, y, label]"),
    ({"model": "prompter", "upload": "UPLOAD", "box": [1, 2, 3]}, 400, "'box' must be [x0, y0, x1, y1] or null"),
    ({"model": "prompter", "upload": "UPLOAD"}, 400, "a prompt needs at least one click or a box"),
    ({"model": "prompter", "upload": "UPLOAD", "frame": -1}, 400, "'frame' must be an integer >= 0"),
])
def test_bad_prompt_requests_are_refused_in_words(server, sample_image, body, status, message):
    info = upload(server, sample_image.read_bytes(), "scan.png")
    body = {key: info["upload"] if value == "UPLOAD" else value for key, value in body.items()}
    answer_status, answer = request(server, "/api/prompt", body)
    assert answer_status == status and answer["error"].startswith(message), answer


def test_requests_from_other_pages_or_host_names_are_refused(server, sample_image):
    status, answer = request(server, "/api/upload?name=a.png", sample_image.read_bytes(), headers={"X-Sonofm": "0"})
    assert status == 403 and "X-Sonofm: 1" in answer["error"]
    status, answer = request(server, "/api/config", headers={"Host": "attacker.example:8000"})
    assert status == 400 and "unknown host name" in answer["error"]
    status, answer = request(server, "/api/predict", b"{not json")
    assert status == 400 and answer["error"] == "the request body is not JSON"
    status, page = request(server, "/")
    assert status == 200 and b'<script src="/static/app.js"' in page


def test_the_store_keeps_the_most_recent_uploads_within_its_bounds(sample_image):
    file = decode_file(sample_image.read_bytes(), "scan.png")
    store = UploadStore(max_uploads=3, max_bytes=1000)
    uploads = [store.add(file, 300) for _ in range(4)]
    with pytest.raises(SonofmError, match="unknown upload"):
        store.get(uploads[0].id)
    store.get(uploads[1].id)  # now the most recent: the next eviction takes uploads[2]
    store.add(file, 400)
    assert [store.get(upload.id) for upload in (uploads[1], uploads[3])]
    with pytest.raises(SonofmError, match="unknown upload"):
        store.get(uploads[2].id)


def test_the_listening_socket_lets_asyncio_turn_off_nagle():
    """asyncio sets TCP_NODELAY on accepted connections of an IPPROTO_TCP socket only; without it each answer waits
    ~40 ms for the client's delayed ACK."""
    listening = bind("127.0.0.1", 0)
    try:
        assert listening.proto == socket.IPPROTO_TCP
    finally:
        listening.close()
