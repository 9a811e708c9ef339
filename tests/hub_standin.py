"""A local stand-in for the Hugging Face Hub's HTTP API, so that pushes are tested offline.

It answers the calls ``huggingface_hub.HfApi`` (2.x) makes for ``create_repo`` and
``upload_folder``, on 127.0.0.1 at a random port (point ``HfApi(endpoint=...)``, or
``hub.endpoint``, at :attr:`HubStandIn.url`):

- ``POST /api/repos/create``: records the repository and its visibility (409 when it exists,
  which ``exist_ok=True`` accepts);
- ``POST /api/validate-yaml``: checks a README.md's metadata (between ``---`` lines) as the
  Hub does before an upload, in outline: a YAML mapping whose list fields (tags, datasets)
  are lists of strings and whose text fields are strings; keeps the last one checked;
- ``GET /api/models/{repo}``: the repository's info (``create_repo`` asks after a 401/403);
- ``POST /api/models/{repo}/preupload/{rev}``: says how each file travels. The real Hub
  decides this, by the repository's ``.gitattributes`` (``*.safetensors`` are LFS there);
  here files go as ``regular`` git blobs, base64 in the commit, unless their suffix is in
  ``lfs_suffixes``. An LFS file is then uploaded through huggingface_hub's own LFS path,
  which it takes only without ``hf_xet`` (set ``HF_HUB_DISABLE_XET``); with ``hf_xet`` it
  would go to Xet storage, which this stand-in does not emulate;
- ``POST /{repo}.git/info/lfs/objects/batch`` and ``PUT /lfs/{oid}``: the basic LFS transfer;
- ``POST /api/models/{repo}/commit/{rev}``: the ndjson commit; records every file's bytes.

Every call must carry ``Authorization: Bearer <token>`` (else 401). ``fail`` makes an
endpoint answer an HTTP error, as a refused token or a broken Hub does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

# the token the stand-in accepts and tests put in $HF_TOKEN (conftest.hub_env)
TOKEN = "hf_standin_token"

_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
ROUTES = (  # (method, name, path pattern)
    ("POST", "create", re.compile(r"^/api/repos/create$")),
    ("POST", "validate_yaml", re.compile(r"^/api/validate-yaml$")),
    ("GET", "info", re.compile(rf"^/api/models/{_REPO}(/revision/[^/]+)?$")),
    ("POST", "preupload", re.compile(rf"^/api/models/{_REPO}/preupload/[^/]+$")),
    ("POST", "commit", re.compile(rf"^/api/models/{_REPO}/commit/[^/]+$")),
    ("POST", "lfs_batch", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/batch$")),
    ("PUT", "lfs_put", re.compile(r"^/lfs/(?P<oid>[0-9a-f]{64})$")),
)


@dataclass
class Repo:
    """A repository as the stand-in holds it: visibility, files (path -> bytes), commits."""

    private: bool | None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    lfs_paths: set[str] = field(default_factory=set)


class HubStandIn:
    """The server; use it as a context manager. See the module docstring."""

    def __init__(self, token: str = "hf_standin_token", lfs_suffixes: tuple[str, ...] = ()):
        self.token = token
        self.lfs_suffixes = lfs_suffixes
        self.repos: dict[str, Repo] = {}
        self.fail: dict[str, int] = {}
        self.calls: list[str] = []
        self.lfs_objects: dict[str, bytes] = {}
        self.metadata: dict[str, Any] | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # each handler returns (status, JSON body)

    def create(self, body: bytes, **_: str) -> tuple[int, Any]:
        d = json.loads(body)
        repo_id = f"{d['organization']}/{d['name']}" if d.get("organization") else f"user/{d['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        visibility = d.get("visibility")
        self.repos[repo_id] = Repo(private=None if visibility is None else visibility == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def validate_yaml(self, body: bytes, **_: str) -> tuple[int, Any]:
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"invalid YAML: {err}"}]}
        errors = []
        if not isinstance(meta, dict):
            errors.append("metadata must be a mapping")
        else:
            errors += [f"{k} must be a list of strings" for k in ("tags", "datasets")
                       if k in meta and not (isinstance(meta[k], list)
                                             and all(isinstance(v, str) for v in meta[k]))]
            errors += [f"{k} must be a string" for k in ("library_name", "license", "pipeline_tag",
                                                          "base_model")
                       if k in meta and not isinstance(meta[k], str)]
        if errors:
            return 400, {"errors": [{"message": e} for e in errors]}
        self.metadata = meta
        return 200, {"warnings": []}

    def info(self, body: bytes, repo: str, **_: str) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        return 200, {"id": repo, "sha": self._head(repo), "private": bool(self.repos[repo].private)}

    def preupload(self, body: bytes, repo: str) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        files = [{"path": f["path"], "shouldIgnore": False,
                  "uploadMode": "lfs" if f["path"].endswith(self.lfs_suffixes) else "regular"}
                 for f in json.loads(body)["files"]]
        return 200, {"files": files, "commitOid": self._head(repo)}

    def lfs_batch(self, body: bytes, repo: str) -> tuple[int, Any]:
        objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                    "actions": {"upload": {"href": f"{self.url}/lfs/{o['oid']}"}}}
                   for o in json.loads(body)["objects"]]
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_put(self, body: bytes, oid: str) -> tuple[int, Any]:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 mismatch"}
        self.lfs_objects[oid] = body
        return 200, {}

    def commit(self, body: bytes, repo: str) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        target, message = self.repos[repo], ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                target.files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile" and value["oid"] in self.lfs_objects:
                target.files[value["path"]] = self.lfs_objects[value["oid"]]
                target.lfs_paths.add(value["path"])
            else:
                return 400, {"error": f"unsupported commit operation {key} {value.get('path')}"}
        target.commits.append(message)
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{self._head(repo)}",
                     "commitOid": self._head(repo)}

    def _head(self, repo: str) -> str:
        return hashlib.sha1(str(len(self.repos[repo].commits)).encode()).hexdigest()


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            found = [(name, m) for method, name, pattern in ROUTES
                     if method == self.command and (m := pattern.match(path))]
            if not found:
                return self._reply(404, {"error": f"no stand-in for {self.command} {path}"})
            name, match = found[0]
            hub.calls.append(name)
            if name != "lfs_put" and self.headers.get("authorization") != f"Bearer {hub.token}":
                return self._reply(401, {"error": "Invalid credentials in Authorization header"})
            if name in hub.fail:
                return self._reply(hub.fail[name], {"error": f"stand-in failure of {name}"})
            self._reply(*getattr(hub, name)(body, **match.groupdict()))

        do_GET = do_POST = do_PUT = _serve

        def _reply(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler
