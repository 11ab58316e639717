"""A Hugging Face Hub-compatible HTTP server for tests: real commits, branches, LFS uploads and file downloads.

The real `huggingface_hub`, `datasets` and `transformers` clients talk to it through `HF_ENDPOINT` (with
`HF_HUB_DISABLE_XET=1`), so a push/pull round trip exercises the same HTTP calls as the Hub. State lives under a
folder: `blobs/<sha256>` (file contents, shared) and `repos/<type>/<namespace>/<name>.json` (refs, commits, the
file table of every commit), so old revisions stay readable and a restarted server keeps its repos.

Implemented (what huggingface_hub 2.4, datasets 5.2 and transformers 5.24 call in a push/pull round trip):
`GET /api/whoami-v2`, `POST /api/repos/create`, `DELETE /api/repos/delete`, `POST /api/validate-yaml`,
`GET /api/{type}s/{repo}[/revision/{rev}]`, `POST .../preupload/{rev}`, `POST {repo}.git/info/lfs/objects/batch`
(+ the signed `PUT` upload and `POST` verify), `POST .../commit/{rev}` (NDJSON), `GET .../commits/{rev}`,
`GET .../refs`, `POST .../branch/{name}`, `GET .../tree/{rev}[/{path}]`, `POST .../paths-info/{rev}`,
`HEAD/GET [{type}s/]{repo}/resolve/{rev}/{path}` (ETag, X-Repo-Commit, X-Linked-Etag/-Size, Range).
Anything else answers 404 with the route in `X-Error-Message` and is recorded in `HubServer.unknown_routes`.

Run it by hand: `python tests/hub_server.py --root /tmp/hub --port 8765 --token hf_local --user me`.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
MAX_REGULAR_SIZE = 10 * 1024 * 1024  # larger files must go through LFS, as on the Hub
NAME_RE = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
LICENSES = {
    "apache-2.0", "mit", "bsd-3-clause", "bsd-2-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0", "cc0-1.0", "gpl-3.0", "lgpl-3.0", "openrail", "llama3", "other", "unknown",
}  # fmt: skip
DEFAULT_GITATTRIBUTES = (
    "".join(
        f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
        for pattern in (
            "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.msgpack",
            "*.npy", "*.npz", "*.onnx", "*.parquet", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors",
            "*.tar", "*.tflite", "*.zip", "*.zst", "*tfevents*",
        )
    )
)  # fmt: skip


def git_blob_sha1(content: bytes) -> str:
    """Git object id of a blob."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubError(Exception):
    """An HTTP error answer: status, message and the Hub's `X-Error-Code` when it has one."""

    def __init__(
        self, status: int, message: str, code: str | None = None, extra: dict | None = None, body: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.extra, self.body = status, message, code, extra or {}, body or {}


@dataclass
class Repo:
    """One repository: visibility, branches -> commit ids, and every commit's file table."""

    repo_type: str
    repo_id: str
    private: bool = False
    created_at: str = field(default_factory=now_iso)
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict] = field(default_factory=dict)
    lfs_objects: dict[str, int] = field(default_factory=dict)  # sha256 -> size uploaded to this repo

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> str:
        """Commit id of a branch name, a full commit id or an unambiguous prefix of one (>= 7 characters)."""
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [sha for sha in self.commits if sha.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, sha: str) -> list[dict]:
        """Commits reachable from `sha`, newest first (first parents)."""
        out = []
        while sha:
            commit = self.commits[sha]
            out.append(commit)
            sha = commit["parents"][0] if commit["parents"] else ""
        return out


class HubState:
    """Repos, users and blobs; every mutation holds the lock and is written to disk before it is answered."""

    def __init__(self, root: Path, users: dict[str, tuple[str, list[str]]]):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.users = users  # token -> (user name, organisations)
        self.lock = threading.RLock()
        self.secret = secrets.token_bytes(16)
        self.repos: dict[tuple[str, str], Repo] = {}
        for path in sorted((self.root / "repos").glob("*/*/*.json")):
            data = json.loads(path.read_text())
            self.repos[(data["repo_type"], data["repo_id"])] = Repo(**data)

    # storage
    def save(self, repo: Repo) -> None:
        path = self.root / "repos" / repo.repo_type / f"{repo.repo_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo.__dict__, indent=1))
        tmp.replace(path)

    def put_blob(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.root / "blobs" / sha256
        if not path.exists():
            tmp = path.with_name(f".{sha256}.{secrets.token_hex(4)}")
            tmp.write_bytes(content)
            tmp.replace(path)
        return sha256

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    # auth
    def user_of(self, token: str | None) -> tuple[str, list[str]] | None:
        if token is None:
            return None
        if token not in self.users:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.users[token]

    def can_write(self, user: tuple[str, list[str]] | None, namespace: str) -> bool:
        return user is not None and (namespace == user[0] or namespace in user[1])

    def repo(self, repo_type: str, repo_id: str, user, *, write: bool = False) -> Repo:
        """The repo if it exists and `user` may see it (or write to it); 404/401/403 as the Hub answers."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.can_write(user, repo.namespace)):
            status = 401 if user is None else 404
            raise HubError(status, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        if write and not self.can_write(user, repo.namespace):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # commits
    def create_repo(self, repo_type: str, repo_id: str, private: bool, author: str) -> Repo:
        repo = Repo(repo_type, repo_id, private=private)
        files = {}
        self.add_regular(files, ".gitattributes", DEFAULT_GITATTRIBUTES.encode())
        self.commit(repo, "main", files, "initial commit", "", author, parent=None)
        return repo

    def add_regular(self, files: dict, path: str, content: bytes) -> None:
        files[path] = {"oid": git_blob_sha1(content), "size": len(content), "blob": self.put_blob(content), "lfs": None}

    def commit(self, repo: Repo, branch: str, files: dict, title: str, message: str, author: str, parent) -> str:
        """Record a commit whose id hashes its parent, file table, message, author and time; move the branch."""
        date = now_iso()
        body = {"parents": [parent] if parent else [], "files": files, "title": title, "message": message}
        sha = hashlib.sha1(json.dumps({**body, "author": author, "date": date}, sort_keys=True).encode()).hexdigest()
        repo.commits[sha] = {"id": sha, **body, "author": author, "date": date}
        repo.refs[branch] = sha
        self.save(repo)
        return sha


class HubHandler(BaseHTTPRequestHandler):
    """Routes one request; `server.hub` is the `HubServer`."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test output stays readable
        pass

    # plumbing
    @property
    def hub(self) -> HubServer:
        return self.server.hub

    @property
    def state(self) -> HubState:
        return self.server.hub.state

    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def json_body(self) -> Any:
        raw = self.body()
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"invalid JSON body: {err}") from None

    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def user(self, *, required: bool = False):
        user = self.state.user_of(self.token())
        if required and user is None:
            raise HubError(401, "You must be authenticated to do this: pass a token (Authorization: Bearer ...)")
        return user

    def send(self, status: int, body: Any = None, headers: dict | None = None, content_type: str | None = None) -> None:
        if isinstance(body, (dict, list)):
            payload, content_type = json.dumps(body).encode(), content_type or "application/json"
        else:
            payload = body or b""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def base_url(self) -> str:
        return self.hub.url

    # dispatch
    def do_GET(self) -> None:
        self.dispatch()

    def do_HEAD(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
        route = self.command + " " + split.path
        try:
            handled = self.route(segments)
            if handled is None:
                self.hub.unknown_routes.append(route)
                print(f"hub_server: no route for {route}", file=sys.stderr)
                self.body()
                raise HubError(404, f"test hub server: no route for {route}")
        except HubError as err:
            headers = {"X-Error-Message": err.message[:300].encode("ascii", "replace").decode(), **err.extra}
            if err.code:
                headers["X-Error-Code"] = err.code
            self.send(err.status, {"error": err.message, **err.body}, headers)
        except Exception as err:  # a server bug: answer 500 and keep the traceback for the test log
            import traceback

            traceback.print_exc()
            self.send(500, {"error": f"test hub server bug: {type(err).__name__}: {err}"})
        finally:
            self.hub.requests.append((self.command, split.path + (" (Range)" if self.headers.get("Range") else "")))

    def route(self, seg: list[str]):
        method = self.command
        if seg[:1] == ["api"]:
            rest = seg[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self.whoami()
            if rest == ["repos", "create"] and method == "POST":
                return self.create_repo()
            if rest == ["repos", "delete"] and method == "DELETE":
                return self.delete_repo()
            if rest == ["validate-yaml"] and method == "POST":
                return self.validate_yaml()
            if len(rest) >= 3 and rest[0] in REPO_TYPES:
                repo_type, repo_id, action = REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                if not action and method == "GET":
                    return self.repo_info(repo_type, repo_id, "main")
                if len(action) == 2 and action[0] == "revision" and method == "GET":
                    return self.repo_info(repo_type, repo_id, action[1])
                if len(action) == 2 and action[0] == "preupload" and method == "POST":
                    return self.preupload(repo_type, repo_id, action[1])
                if len(action) == 2 and action[0] == "commit" and method == "POST":
                    return self.commit(repo_type, repo_id, action[1])
                if len(action) == 2 and action[0] == "commits" and method == "GET":
                    return self.list_commits(repo_type, repo_id, action[1])
                if action == ["refs"] and method == "GET":
                    return self.list_refs(repo_type, repo_id)
                if len(action) == 2 and action[0] == "branch" and method == "POST":
                    return self.create_branch(repo_type, repo_id, action[1])
                if len(action) >= 2 and action[0] == "tree" and method == "GET":
                    return self.tree(repo_type, repo_id, action[1], "/".join(action[2:]))
                if len(action) == 2 and action[0] == "paths-info" and method == "POST":
                    return self.paths_info(repo_type, repo_id, action[1])
            return None
        if seg[:1] == ["_lfs"] and len(seg) >= 5:  # our signed upload / verify URLs
            repo_type, repo_id, oid = seg[1], f"{seg[2]}/{seg[3]}", seg[4]
            if len(seg) == 5 and method == "PUT":
                return self.lfs_put(repo_type, repo_id, oid)
            if seg[5:] == ["verify"] and method == "POST":
                return self.lfs_verify(repo_type, repo_id, oid)
            return None
        repo_type = "model"
        if seg[:1] in (["datasets"], ["spaces"]):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            if method == "POST":
                return self.lfs_batch(repo_type, f"{seg[0]}/{seg[1][:-4]}")
            return None
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self.resolve(repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        return None

    # account and repos
    def whoami(self) -> bool:
        user = self.user(required=True)
        orgs = [{"type": "org", "name": org, "roleInOrg": "write"} for org in user[1]]
        body = {
            "type": "user",
            "id": hashlib.sha1(user[0].encode()).hexdigest()[:24],
            "name": user[0],
            "fullname": user[0],
            "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "test token", "role": "write"}},
        }
        self.send(200, body)
        return True

    def create_repo(self) -> bool:
        user = self.user(required=True)
        payload = self.json_body()
        repo_type = payload.get("type") or "model"
        name, namespace = payload.get("name") or "", payload.get("organization") or user[0]
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        if not NAME_RE.match(name) or not NAME_RE.match(namespace):
            raise HubError(400, f"invalid repo name {namespace}/{name}: use letters, digits, '-', '_', '.'")
        if not self.state.can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.base_url()}/{URL_PREFIX[repo_type]}{repo_id}"
        private = payload.get("private", payload.get("visibility") == "private") or False
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                raise HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            self.state.repos[(repo_type, repo_id)] = self.state.create_repo(repo_type, repo_id, bool(private), user[0])
        self.send(200, {"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})
        return True

    def delete_repo(self) -> bool:
        user = self.user(required=True)
        payload = self.json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user[0]}/{payload.get('name')}"
        with self.state.lock:
            self.state.repo(repo_type, repo_id, user, write=True)
            del self.state.repos[(repo_type, repo_id)]
            (self.state.root / "repos" / repo_type / f"{repo_id}.json").unlink()
        self.send(200, {})
        return True

    def validate_yaml(self) -> bool:
        payload = self.json_body()
        errors, warnings = validate_card_metadata(payload.get("content", ""), payload.get("repoType") or "model")
        self.send(400 if errors else 200, {"errors": errors, "warnings": warnings})
        return True

    def repo_info(self, repo_type: str, repo_id: str, revision: str) -> bool:
        repo = self.state.repo(repo_type, repo_id, self.user())
        sha = repo.resolve(revision)
        commit = repo.commits[sha]
        card = self.card_data(commit)
        body = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo.namespace,
            "sha": sha,
            "lastModified": commit["date"],
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []),
            "cardData": card,
            "siblings": [{"rfilename": path} for path in sorted(commit["files"])],
            "usedStorage": sum(entry["size"] for entry in commit["files"].values()),
        }
        if repo_type == "model" and card.get("library_name"):
            body["library_name"] = card["library_name"]
        self.send(200, body)
        return True

    def card_data(self, commit: dict) -> dict:
        entry = commit["files"].get("README.md")
        if entry is None:
            return {}
        metadata, _ = split_front_matter(self.state.blob_path(entry["blob"]).read_text(encoding="utf-8"))
        return metadata if isinstance(metadata, dict) else {}

    def list_refs(self, repo_type: str, repo_id: str) -> bool:
        repo = self.state.repo(repo_type, repo_id, self.user())
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": sha} for n, sha in sorted(repo.refs.items())]
        self.send(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        return True

    def create_branch(self, repo_type: str, repo_id: str, branch: str) -> bool:
        user = self.user(required=True)
        payload = self.json_body()
        with self.state.lock:
            repo = self.state.repo(repo_type, repo_id, user, write=True)
            if branch in repo.refs:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}", branch) or branch in repo.commits:
                raise HubError(400, f"invalid branch name {branch!r}")
            repo.refs[branch] = repo.resolve(payload.get("startingPoint") or "main")
            self.state.save(repo)
        self.send(200, {})
        return True

    def list_commits(self, repo_type: str, repo_id: str, revision: str) -> bool:
        repo = self.state.repo(repo_type, repo_id, self.user())
        body = [
            {
                "id": c["id"],
                "title": c["title"],
                "message": c["message"],
                "authors": [{"user": c["author"]}],
                "date": c["date"],
                "parents": c["parents"],
            }
            for c in repo.history(repo.resolve(revision))
        ]
        self.send(200, body)
        return True

    # files: listing and download
    def entry(self, repo: Repo, sha: str, path: str, expand: bool) -> dict:
        """A `/tree` or `/paths-info` item for a file or folder at commit `sha`."""
        files = repo.commits[sha]["files"]
        if path in files:
            meta = files[path]
            item = {"type": "file", "oid": meta["oid"], "size": meta["size"], "path": path}
            if meta["lfs"]:
                item["lfs"] = dict(meta["lfs"])
        else:
            children = sorted((p, f["oid"]) for p, f in files.items() if p.startswith(path + "/"))
            item = {"type": "directory", "oid": hashlib.sha1(repr(children).encode()).hexdigest(), "size": 0}
            item["path"] = path
        if expand:
            last = self.last_commit(repo, sha, path)
            item["lastCommit"] = {"id": last["id"], "title": last["title"], "date": last["date"]}
            if item["type"] == "file":
                item["securityFileStatus"] = {"status": "safe", "avScan": {}, "pickleImportScan": {}}
        return item

    @staticmethod
    def last_commit(repo: Repo, sha: str, path: str) -> dict:
        """The newest commit reachable from `sha` that changed `path` (a file or anything under a folder)."""

        def view(commit: dict) -> list:
            files = commit["files"]
            return sorted((p, f["oid"]) for p, f in files.items() if p == path or p.startswith(path + "/"))

        history = repo.history(sha)
        for commit, older in zip(history, [*history[1:], None], strict=True):
            if older is None or view(commit) != view(older):
                return commit
        return history[-1]

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> bool:
        repo = self.state.repo(repo_type, repo_id, self.user())
        sha = repo.resolve(revision)
        files = repo.commits[sha]["files"]
        path = path.strip("/")
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        prefix = f"{path}/" if path else ""
        if path and path in files:
            raise HubError(404, f"{path} is a file, not a folder", "EntryNotFound")
        under = [p for p in sorted(files) if p.startswith(prefix)]
        if path and not under:
            raise HubError(404, f"{path} does not exist at {revision}", "EntryNotFound")
        listed: dict[str, None] = {}
        for p in under:
            parts = p[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for n in range(1, min(depth, len(parts)) + 1):
                listed[prefix + "/".join(parts[:n])] = None
        items = [self.entry(repo, sha, p, expand) for p in listed]
        items.sort(key=lambda item: (item["type"] != "directory", item["path"]))
        self.send(200, items)
        return True

    def paths_info(self, repo_type: str, repo_id: str, revision: str) -> bool:
        repo = self.state.repo(repo_type, repo_id, self.user())
        sha = repo.resolve(revision)
        raw = self.body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(raw or "{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(raw)
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0].lower() in ("1", "true")
        files = repo.commits[sha]["files"]
        items = []
        for path in paths:
            path = path.strip("/")
            if path in files or any(p.startswith(path + "/") for p in files):
                items.append(self.entry(repo, sha, path, expand))
        self.send(200, items)
        return True

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> bool:
        repo = self.state.repo(repo_type, repo_id, self.user())
        sha = repo.resolve(revision)
        meta = repo.commits[sha]["files"].get(path)
        if meta is None:
            raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
        blob = self.state.blob_path(meta["blob"])
        size = meta["size"]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{meta["oid"]}"', "Accept-Ranges": "bytes"}
        if meta["lfs"]:
            headers["X-Linked-Etag"] = f'"{meta["lfs"]["oid"]}"'
            headers["X-Linked-Size"] = size
        start, end, status = 0, size - 1, 200
        requested = self.headers.get("Range")
        if requested:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", requested.strip())
            if not match or match.groups() == ("", ""):
                raise HubError(416, f"bad Range {requested!r}", extra={"Content-Range": f"bytes */{size}"})
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            else:
                start, end = max(size - int(last), 0), size - 1
            if start >= size or start > end:
                raise HubError(416, f"Range {requested} not satisfiable", extra={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = end - start + 1 if size else 0
        payload = b""
        if self.command == "GET" and size:
            with blob.open("rb") as handle:
                handle.seek(start)
                payload = handle.read(end - start + 1)
        self.send(status, payload, headers, "application/octet-stream")
        return True

    # uploads
    def upload_mode(self, files: dict, path: str, size: int, sample: bytes) -> str:
        attributes = files.get(".gitattributes")
        patterns = []
        if attributes:
            text = self.state.blob_path(attributes["blob"]).read_text(encoding="utf-8", errors="replace")
            patterns = [line.split()[0] for line in text.splitlines() if "filter=lfs" in line and line.split()]
        name = path.rsplit("/", 1)[-1]
        if size >= MAX_REGULAR_SIZE or b"\0" in sample:
            return "lfs"
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns):
            return "lfs"
        return "regular"

    def preupload(self, repo_type: str, repo_id: str, revision: str) -> bool:
        user = self.user(required=True)
        repo = self.state.repo(repo_type, repo_id, user, write=True)
        files = repo.commits[repo.resolve(revision)]["files"]
        out = []
        for item in self.json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = self.upload_mode(files, item["path"], int(item["size"]), sample)
            existing = files.get(item["path"])
            oid = None
            if existing:
                oid = existing["lfs"]["oid"] if existing["lfs"] else existing["oid"]
            out.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self.send(200, {"files": out, "commitOid": repo.resolve(revision)})
        return True

    def sign(self, repo_type: str, repo_id: str, oid: str, size: int) -> str:
        return hmac.new(self.state.secret, f"{repo_type}/{repo_id}/{oid}/{size}".encode(), "sha256").hexdigest()

    def lfs_batch(self, repo_type: str, repo_id: str) -> bool:
        user = self.user(required=True)
        payload = self.json_body()
        repo = self.state.repo(repo_type, repo_id, user, write=True)
        if payload.get("operation") != "upload":
            raise HubError(400, "this server only takes LFS uploads (downloads go through /resolve)")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item = {"oid": oid, "size": size, "authenticated": True}
            if repo.lfs_objects.get(oid) != size:
                base = f"{self.base_url()}/_lfs/{repo_type}/{repo_id}/{oid}"
                item["actions"] = {
                    "upload": {"href": f"{base}?size={size}&sig={self.sign(repo_type, repo_id, oid, size)}"},
                    "verify": {"href": f"{base}/verify"},
                }
            objects.append(item)
        self.send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")
        return True

    def lfs_put(self, repo_type: str, repo_id: str, oid: str) -> bool:
        size = int(self.query.get("size", ["-1"])[0])
        signature = self.query.get("sig", [""])[0]
        if not hmac.compare_digest(signature, self.sign(repo_type, repo_id, oid, size)):
            self.body()
            raise HubError(403, "invalid or expired upload signature")
        content = self.body()
        if len(content) != size or hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not match oid {oid} / size {size}")
        with self.state.lock:
            self.state.put_blob(content)
            repo = self.state.repos[(repo_type, repo_id)]
            repo.lfs_objects[oid] = size
            self.state.save(repo)
        self.send(200, b"")
        return True

    def lfs_verify(self, repo_type: str, repo_id: str, oid: str) -> bool:
        user = self.user(required=True)
        payload = self.json_body()
        repo = self.state.repo(repo_type, repo_id, user, write=True)
        if repo.lfs_objects.get(oid) != payload.get("size"):
            raise HubError(404, f"LFS object {oid} of size {payload.get('size')} was not uploaded")
        self.send(200, {})
        return True

    def commit(self, repo_type: str, repo_id: str, revision: str) -> bool:
        user = self.user(required=True)
        if self.query.get("create_pr", ["0"])[0] not in ("0", "false", ""):
            raise HubError(400, "pull requests are not supported by the test hub server")
        lines = [json.loads(line) for line in self.body().decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        with self.state.lock:
            repo = self.state.repo(repo_type, repo_id, user, write=True)
            if revision not in repo.refs:
                raise HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
            parent = repo.refs[revision]
            expected = header.get("parentCommit")
            if expected and not parent.startswith(expected):
                raise HubError(412, f"A commit has happened since {expected}: {revision} is at {parent}")
            files = {path: dict(meta) for path, meta in repo.commits[parent]["files"].items()}
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "").strip("/")
                if key == "file":
                    content = (
                        base64.b64decode(value["content"])
                        if value.get("encoding") == "base64"
                        else value["content"].encode()
                    )
                    if len(content) >= MAX_REGULAR_SIZE or b"\0" in content[:1024]:
                        raise HubError(400, f"{path}: binary or large files must be uploaded with LFS")
                    self.state.add_regular(files, path, content)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in repo.lfs_objects:
                        raise HubError(422, f"{path}: LFS object {oid} was not uploaded to {repo_id}")
                    size = repo.lfs_objects[oid]
                    pointer = lfs_pointer(oid, size)
                    lfs = {"oid": oid, "size": size, "pointerSize": len(pointer)}
                    files[path] = {"oid": git_blob_sha1(pointer), "size": size, "blob": oid, "lfs": lfs}
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    doomed = [p for p in files if p.startswith(path + "/")]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            summary = header.get("summary") or "Update"
            sha = self.state.commit(repo, revision, files, summary, header.get("description") or "", user[0], parent)
        url = f"{self.base_url()}/{URL_PREFIX[repo_type]}{repo_id}/commit/{sha}"
        self.send(200, {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None})
        return True


def split_front_matter(text: str) -> tuple[Any, str]:
    """(YAML metadata, body) of a card; raises `yaml.YAMLError` on bad YAML."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return None, text
    return yaml.safe_load(match.group(1)), text[match.end() :]


def validate_card_metadata(content: str, repo_type: str) -> tuple[list[dict], list[dict]]:
    """Errors and warnings of a README's YAML header, with the checks the Hub makes on the fields we use."""
    try:
        metadata, _ = split_front_matter(content)
    except yaml.YAMLError as err:
        return [{"message": f"Invalid YAML in README.md metadata: {err}"}], []
    if metadata is None:
        return [], [{"message": "Empty or missing yaml metadata in repo card"}]
    if not isinstance(metadata, dict):
        return [{"message": "YAML metadata must be a mapping"}], []
    errors: list[str] = []
    license_ = metadata.get("license")
    if license_ is not None and license_ not in LICENSES:
        errors.append(f'"license" must be one of the Hub license ids, got {license_!r}')
    if license_ == "other" and not metadata.get("license_name"):
        errors.append('"license_name" is required when "license" is "other"')
    for key in ("tags", "datasets", "language"):
        value = metadata.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            errors.append(f'"{key}" must be a list of strings')
    for key in ("library_name", "pipeline_tag", "pretty_name", "license_name", "license_link"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string')
    if "base_model" in metadata and not isinstance(metadata["base_model"], (str, list)):
        errors.append('"base_model" must be a repo id or a list of them')
    if repo_type == "dataset" and "configs" in metadata:
        configs = metadata["configs"]
        if not isinstance(configs, list):
            errors.append('"configs" must be a list')
        else:
            for n, config in enumerate(configs):
                if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
                    errors.append(f'"configs[{n}]" needs a "config_name" string')
                    continue
                data_files = config.get("data_files")
                ok = isinstance(data_files, str) or (
                    isinstance(data_files, list)
                    and all(
                        isinstance(d, str) or (isinstance(d, dict) and {"split", "path"} <= set(d)) for d in data_files
                    )
                )
                if data_files is not None and not ok:
                    errors.append(f'"configs[{n}].data_files" must be a path, or a list of paths or {{split, path}}')
            names = [c.get("config_name") for c in configs if isinstance(c, dict)]
            if len(names) != len(set(names)):
                errors.append('"configs" has duplicate config_name values')
    return [{"message": e} for e in errors], []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class HubServer:
    """Start/stop the server on 127.0.0.1; `url`, `token` and `env()` are what a client needs."""

    def __init__(
        self,
        root: str | Path,
        *,
        users: dict[str, tuple[str, list[str]]] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
    ):
        self.users = users or {"hf_local_test_token": ("tester", ["deepinterestgr-test"])}
        self.token = next(iter(self.users))
        self.state = HubState(Path(root), self.users)
        self.host, self.port = host, port
        self.requests: list[tuple[str, str]] = []
        self.unknown_routes: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubServer:
        self._server = _Server((self.host, self.port), HubHandler)
        self._server.hub = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, hf_home: str | Path) -> dict[str, str]:
        """Environment variables pointing huggingface_hub / datasets / transformers at this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[dict]:
        """History of a branch, newest first, read from the server's own state (not through a client)."""
        repo = self.state.repos[(repo_type, repo_id)]
        return repo.history(repo.resolve(revision))

    def file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        """Content of a file at a revision, from the server's own state."""
        repo = self.state.repos[(repo_type, repo_id)]
        meta = repo.commits[repo.resolve(revision)]["files"][path]
        return self.state.blob_path(meta["blob"]).read_bytes()

    def endpoints_used(self) -> list[str]:
        """Distinct `METHOD /route` shapes seen so far (repo ids, revisions and paths replaced by placeholders)."""
        shapes = set()
        for method, path in self.requests:
            path, ranged = path.removesuffix(" (Range)"), path.endswith(" (Range)")
            shape = re.sub(r"/(resolve|tree|preupload|commit|commits|paths-info|revision|branch)/.*", r"/\1/{rev}...",
                           path)  # fmt: skip
            shape = re.sub(r"^/api/(models|datasets|spaces)/[^/]+/[^/]+", r"/api/\1/{repo}", shape)
            shape = re.sub(r"^/(datasets/|spaces/)?[^/]+/[^/]+(\.git|/resolve)", r"/\1{repo}\2", shape)
            shape = re.sub(r"^/_lfs/.*?(/verify)?$", r"/_lfs/{upload}\1", shape)
            shapes.add(f"{method} {quote(shape, safe='/{}.-_')}" + (" + Range" if ranged else ""))
        return sorted(shapes)


def main() -> None:
    """Serve until interrupted: `python tests/hub_server.py --root DIR [--port N] [--token T] [--user NAME]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="Folder for repos and blobs (kept between runs).")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="hf_local_test_token", help="The token clients must send.")
    parser.add_argument("--user", default="tester", help="User name of that token (its namespace).")
    parser.add_argument("--org", action="append", default=[], help="Organisation the user may write to.")
    args = parser.parse_args()
    server = HubServer(args.root, users={args.token: (args.user, args.org)}, port=args.port).start()
    print(f"hub server on {server.url} (HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1, token in --token)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
