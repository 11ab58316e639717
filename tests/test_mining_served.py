"""ServedBackend and the answer cache against a real OpenAI-compatible server on 127.0.0.1 (a tiny real model).

The server (`python -m deepinterestgr.mining.server`) runs in a subprocess for the whole module; `/stats` counts the
chat requests it received, so tests see exactly what was sent, retried or skipped. `--test-faults` lets a test make
the next requests fail with a status, or answer slowly.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from deepinterestgr.mining.backends import GenerationRequest, GenerationResult
from deepinterestgr.mining.cache import AnswerCache, answer_all
from deepinterestgr.mining.served import ServedBackend
from tests.tiny_chat import build_tiny_chat_model

API_KEY = "test-key-not-a-secret"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
SERVER_ENV = {**ENV, "HF_HUB_OFFLINE": "1"}  # the server loads its model from a folder; clients must not be offline
CLIENT_ENV = {key: value for key, value in ENV.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running chat server over the tiny model; stopped at teardown."""
    # one byte, one token and a 512-token context: the "prompt too long" test knows exactly what exceeds it
    folder = tmp_path_factory.mktemp("tiny-chat-model")
    model_dir = build_tiny_chat_model(folder, trained=False, max_position_embeddings=512)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "deepinterestgr.mining.server", "--model", str(model_dir), "--port", str(port)]
    command += ["--threads", "1", "--max-batch-size", "8", "--api-key", API_KEY, "--test-faults"]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=SERVER_ENV)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode} before answering:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /health within 90 s:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def no_faults(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every server test starts with no injected faults, and online (HF_HUB_OFFLINE blocks even 127.0.0.1)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if "server" in request.fixturenames:
        set_faults(request.getfixturevalue("server"))


def set_faults(url: str, **faults: float) -> None:
    httpx.post(f"{url}/test/faults", json=faults, timeout=5).raise_for_status()


def received(url: str) -> int:
    """How many chat requests the server has received so far (failed, rejected and answered)."""
    return httpx.get(f"{url}/stats", timeout=5).json()["requests"]


def backend(url: str, **options: object) -> ServedBackend:
    settings = {"api_key": API_KEY, "timeout": 20.0, "max_retries": 3, "backoff": 0.05} | options
    return ServedBackend(f"{url}/v1", "tiny-llama", **settings)  # type: ignore[arg-type]


def chat(text: str, **options: object) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **options)  # type: ignore[arg-type]


def index_request(i: int) -> GenerationRequest:
    """A request whose schema admits exactly one answer, {"i": i}: its answer tells which request it was."""
    schema = {"type": "object", "properties": {"i": {"const": i}}, "required": ["i"], "additionalProperties": False}
    return chat(f"which index? {i}", json_schema=schema, max_new_tokens=40)


# --- the cache on its own -------------------------------------------------------------------------------------------


def test_cache_round_trip_persists_and_stores_failures(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    with AnswerCache(path) as cache:
        cache.put("a", GenerationResult('{"x": 1}', "stop"))
        cache.put("b", GenerationResult('{"x": ', "length"))
        cache.put("c", GenerationResult("", "error", "HTTP 503 from http://host"))
        assert len(cache) == 3 and "a" in cache and "z" not in cache
    with AnswerCache(path) as again:  # a new process would see the same
        assert again.get("a") == GenerationResult('{"x": 1}', "stop")
        assert again.get("b") == GenerationResult('{"x": ', "length")
        assert again.get("c") == GenerationResult("", "error", "HTTP 503 from http://host")
        assert again.get("z") is None
        assert again.counts() == {"stop": 1, "length": 1, "error": 1}
        again.put("c", GenerationResult("ok", "stop"))  # a retried failure replaces its row
        assert again.get("c") == GenerationResult("ok", "stop") and len(again) == 3


def test_cache_export_and_import_carry_every_answer_and_refuse_a_bad_line(tmp_path: Path) -> None:
    with AnswerCache(tmp_path / "a.sqlite") as cache:
        cache.put("a", GenerationResult('{"x": 1}', "stop"))
        cache.put("b", GenerationResult('{"x": ', "length"))
        cache.put("c", GenerationResult("", "error", "timeout"))
        assert cache.export_jsonl(tmp_path / "answers.jsonl.gz") == 3
    with AnswerCache(tmp_path / "b.sqlite") as other:
        other.put("a", GenerationResult("kept", "stop"))  # answers already in the cache win
        assert other.import_jsonl(tmp_path / "answers.jsonl.gz") == 2
        assert other.get("a") == GenerationResult("kept", "stop")
        assert other.get("b") == GenerationResult('{"x": ', "length")
        assert other.get("c") == GenerationResult("", "error", "timeout")
        assert other.import_jsonl(tmp_path / "answers.jsonl.gz") == 0  # a second import adds nothing
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"key": "d", "text": "", "finish_reason": "stop", "error": None, "created": 1.0}) + "\n")
        f.write('{"key": "e"}\n')
    with AnswerCache(tmp_path / "c.sqlite") as fresh:
        with pytest.raises(ValueError, match=r"bad.jsonl.gz, line 2: not an exported answer"):
            fresh.import_jsonl(bad)
        assert len(fresh) == 0  # the good first line was rolled back with the rest


def test_cache_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    with AnswerCache(tmp_path / "answers.sqlite") as cache:

        def write(worker: int) -> None:
            for i in range(50):
                cache.put(f"{worker}-{i}", GenerationResult(f"answer {worker} {i}", "stop"))

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(cache) == 200
        assert cache.get("3-49") == GenerationResult("answer 3 49", "stop")


def test_cache_refuses_a_file_that_is_not_a_cache(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    path.write_text("not a database, just text that happens to be long enough to be read as a header " * 20)
    with pytest.raises(ValueError, match=r"answers\.sqlite is not a readable SQLite answer cache.*new file"):
        AnswerCache(path)


class _FaultyBackend:
    """A backend that breaks the protocol (answers one request twice): answer_all must refuse it, not miscount."""

    name = "faulty"
    model = "none"

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        yield 0, GenerationResult("first", "stop")
        yield 0, GenerationResult("again", "stop")


def test_answer_all_refuses_a_backend_that_answers_twice(tmp_path: Path) -> None:
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        with pytest.raises(RuntimeError, match=r"faulty:none yielded index 0 \(already answered\)"):
            answer_all(_FaultyBackend(), [chat("a"), chat("b")], cache, progress=False)
        assert len(cache) == 1  # what arrived before the fault is kept


# --- ServedBackend against the server -------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_batch_answers_come_back_keyed_to_their_requests(server: str, concurrency: int) -> None:
    requests = [index_request(i) for i in range(12)] + [chat(f"free text {i}", max_new_tokens=3) for i in range(4)]
    before = received(server)
    results = dict(backend(server, concurrency=concurrency).generate(requests))
    assert sorted(results) == list(range(len(requests)))
    assert received(server) - before == len(requests)
    for i in range(12):
        assert results[i].finish_reason == "stop", results[i]
        assert json.loads(results[i].text) == {"i": i}
    for i in range(12, 16):
        assert results[i].finish_reason in ("stop", "length") and results[i].error is None


def test_json_schema_reaches_the_server_and_the_answer_parses(server: str) -> None:
    schema = {
        "type": "object",
        # ASCII only: the untrained byte-level tokenizer once emitted bytes that decoded to U+FFFD characters
        # (10 characters under maxLength 8 in CI), so the check is on a pattern, which the decoded text must match
        "properties": {
            "label": {"type": "integer", "enum": [0, 1]},
            "reason": {"type": "string", "pattern": "^[a-z ]{0,8}$"},
        },
        "required": ["label", "reason"],
        "additionalProperties": False,
    }
    stats_before = httpx.get(f"{server}/stats").json()
    results = dict(backend(server).generate([chat("judge this", json_schema=schema, max_new_tokens=64)]))
    stats_after = httpx.get(f"{server}/stats").json()
    assert stats_after["json_schema"] - stats_before["json_schema"] == 1
    answer = json.loads(results[0].text)
    assert set(answer) == {"label", "reason"} and answer["label"] in (0, 1)
    assert re.fullmatch(r"[a-z ]{0,8}", answer["reason"]), answer


def test_the_server_also_enforces_openai_shaped_response_format(server: str) -> None:
    """InferenceClient sends TGI's {"type": "json_object", "value": schema}; OpenAI clients send json_schema."""
    schema = index_request(3).json_schema
    body = {
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": "which index?"}],
        "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "index", "schema": schema, "strict": True}},
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answer = httpx.post(f"{server}/v1/chat/completions", json=body, headers=headers, timeout=30).json()
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert json.loads(answer["choices"][0]["message"]["content"]) == {"i": 3}


def test_5xx_and_429_are_retried_until_they_succeed(server: str) -> None:
    for status in (503, 429):
        set_faults(server, fail_next=2, status=status)
        before = received(server)
        results = dict(backend(server, max_retries=3).generate([index_request(5)]))
        assert json.loads(results[0].text) == {"i": 5}
        assert received(server) - before == 3  # two failures, then the answer


def test_retries_give_up_with_an_error_that_names_status_and_endpoint(server: str) -> None:
    set_faults(server, fail_next=10, status=502)
    before = received(server)
    results = dict(backend(server, max_retries=2).generate([chat("x")]))
    assert received(server) - before == 3
    assert results[0].finish_reason == "error"
    assert "HTTP 502" in results[0].error and f"{server}/v1" in results[0].error and "3 attempt" in results[0].error


def test_a_client_error_is_not_retried(server: str) -> None:
    before = received(server)
    bad_schema = chat("x", json_schema={"type": "no-such-type"})
    too_long = chat("y" * 600)  # the tiny model's context is 512 tokens (one byte, one token)
    results = dict(backend(server, max_retries=3).generate([bad_schema, index_request(1), too_long]))
    assert received(server) - before == 3  # one attempt each
    assert results[0].finish_reason == "error" and "HTTP 400" in results[0].error and server in results[0].error
    assert "not retried" in results[0].error and "schema could not be compiled" in results[0].error
    assert "HTTP 400" in results[2].error and "exceed the model's context of 512 tokens" in results[2].error
    assert json.loads(results[1].text) == {"i": 1}  # one bad request does not spoil the others


def test_the_hugging_face_token_is_not_sent_to_other_hosts(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", API_KEY)  # were it sent, the server would accept it
    results = dict(backend(server, api_key=None).generate([chat("x")]))
    assert results[0].finish_reason == "error" and "HTTP 401" in results[0].error
    assert API_KEY not in results[0].error and API_KEY not in repr(backend(server))


def test_a_slow_answer_times_out_into_an_error_without_hanging(server: str) -> None:
    set_faults(server, delay=3.0)
    before = received(server)
    start = time.monotonic()
    results = dict(backend(server, timeout=0.5, max_retries=1).generate([chat("slow")]))
    elapsed = time.monotonic() - start
    assert results[0].finish_reason == "error" and "Timeout" in results[0].error and "2 attempt" in results[0].error
    assert elapsed < 2.5
    assert received(server) - before == 2


def test_an_unreachable_endpoint_is_an_error_after_retries() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    results = dict(ServedBackend(dead, "m", timeout=2, max_retries=1, backoff=0.01).generate([chat("x")]))
    assert results[0].finish_reason == "error" and "ConnectError" in results[0].error and dead in results[0].error


def test_offline_mode_is_refused_before_anything_is_sent(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub refuses every request in offline mode: say so at once instead of caching errors."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = received(server)
    with pytest.raises(RuntimeError, match=r"HF_HUB_OFFLINE .* unset it"):
        list(backend(server).generate([chat("x")]))
    assert received(server) == before


def test_missing_images_are_refused_before_anything_is_sent(server: str, tmp_path: Path) -> None:
    before = received(server)
    request = chat("describe", images=(str(tmp_path / "missing.jpg"),))
    with pytest.raises(FileNotFoundError, match=r"request 1: image file\(s\) not found.*missing\.jpg"):
        list(backend(server).generate([chat("x"), request]))
    assert received(server) == before


def test_images_travel_as_image_url_parts(server: str, tmp_path: Path) -> None:
    """The server serves a text-only model, so it refuses image parts by name: proof they arrived as image_url."""
    image = tmp_path / "pixel.png"
    image.write_bytes(bytes.fromhex("89504e470d0a1a0a"))  # PNG signature is enough: this server reads no pixels
    results = dict(backend(server).generate([chat("describe", images=(str(image),))]))
    assert "HTTP 400" in results[0].error and "['image_url'] refused" in results[0].error


# --- answer_all: cache, duplicates, resume --------------------------------------------------------------------------


def test_answer_all_asks_each_request_once_and_a_rerun_asks_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = [index_request(i) for i in range(6)] + [index_request(2), index_request(4)]  # two duplicates
    path = tmp_path / "answers.sqlite"
    before = received(server)
    with AnswerCache(path) as cache:
        first = answer_all(backend(server, concurrency=4), requests, cache, progress=True)
        assert len(cache) == 6
    assert received(server) - before == 6
    assert [json.loads(result.text)["i"] for result in first] == [0, 1, 2, 3, 4, 5, 2, 4]
    assert "cached=0" in capsys.readouterr().err

    before = received(server)
    with AnswerCache(path) as cache:  # a new run, as after a restart
        second = answer_all(backend(server, concurrency=4), requests, cache, progress=True)
    assert received(server) == before
    assert second == first
    assert "cached=6" in capsys.readouterr().err


def test_failures_are_cached_and_retried_only_on_request(server: str, tmp_path: Path) -> None:
    requests = [index_request(7), chat("x", json_schema={"type": "no-such-type"})]
    with AnswerCache(tmp_path / "answers.sqlite") as cache:
        first = answer_all(backend(server), requests, cache, progress=False)
        assert first[1].finish_reason == "error" and cache.counts() == {"stop": 1, "error": 1}
        before = received(server)
        assert answer_all(backend(server), requests, cache, progress=False) == first
        assert received(server) == before
        answer_all(backend(server), requests, cache, retry_failed=True, progress=False)
        assert received(server) - before == 1  # only the failure was asked again


KILLED_RUN = """
import json, sys
from deepinterestgr.mining.backends import GenerationRequest
from deepinterestgr.mining.cache import AnswerCache, answer_all
from deepinterestgr.mining.served import ServedBackend

url, cache_path, key = sys.argv[1:4]
requests = [
    GenerationRequest(messages=({"role": "user", "content": f"item {i}"},), max_new_tokens=4) for i in range(40)
]
backend = ServedBackend(url + "/v1", "tiny-llama", api_key=key, concurrency=4, timeout=30, max_retries=0)
with AnswerCache(cache_path) as cache:
    results = answer_all(backend, requests, cache, progress=False)
print(json.dumps({"keys": [r.key(backend.name, backend.model) for r in requests],
                  "errors": sum(r.finish_reason == "error" for r in results)}))
"""


def _rows(path: Path) -> dict[str, tuple[str, float]]:
    """key -> (text, created) of every stored answer, read through a separate read-only connection."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return {key: (text, created) for key, text, created in db.execute("SELECT key, text, created FROM answers")}


def test_a_killed_run_loses_only_what_was_in_flight_and_resumes(server: str, tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    path = tmp_path / "answers.sqlite"
    command = [sys.executable, str(script), server, str(path), API_KEY]
    set_faults(server, delay=0.3)  # ~3 s for 40 answers at concurrency 4: time to kill it half-way
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLIENT_ENV)
    killed_at = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            try:
                killed_at = len(_rows(path))
            except sqlite3.OperationalError:  # the table is being created
                killed_at = 0
            if killed_at >= 8:
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.02)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, f"the run ended on its own: {process.stderr.read().decode()}"
    assert 8 <= killed_at < 40

    set_faults(server)
    time.sleep(0.5)  # requests the killed run had in flight are still counted by the server: let them land
    kept = _rows(path)
    assert 8 <= len(kept) < 40
    before = received(server)
    done = subprocess.run(command, capture_output=True, text=True, env=CLIENT_ENV, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)

    assert received(server) - before == 40 - len(kept)  # the resumed run asked only what was missing
    rows = _rows(path)
    assert sorted(rows) == sorted(summary["keys"]) and len(set(summary["keys"])) == 40  # every answer, once
    assert summary["errors"] == 0
    assert {key: rows[key] for key in kept} == kept  # answers stored before the kill were neither asked nor rewritten
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM answers").fetchone() == (40, 40)
