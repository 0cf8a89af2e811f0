"""Schemathesis hooks for Cloister's API: sign what the API requires signed.

Requests that carry an owner's or an admin's signature (deploy manifests, secret writes,
activations, identity grants, registry changes, key writes) cannot be produced from the OpenAPI document
alone: a signature over random bytes is refused, as it must be. For schema-valid cases this
hook fills those fields in with real signatures made by `cloister identity sign` and
`cloister secret seal` (the CLI's own signing code: the signed format is defined once, in
Rust), so the server's logic behind the signature is exercised. Schema-violating (negative)
cases are sent as generated.

What cannot be fuzzed meaningfully is replaced, in positive cases only:
- a deploy's `code` by a small function defining the requested entrypoint (JavaScript
  validity is the compiler's business, tested elsewhere), and `sealedCode` is dropped;
- an invocation's `sealed` input is dropped (HPKE ciphertext is tested by the Rust and
  TypeScript suites);
- declared secrets that repeat a name under another category are dropped (names must differ,
  which a JSON schema cannot say).

Environment: CLOISTER_BIN, CLOISTER_URL, CLOISTER_TOKEN, CLOISTER_IDENTITY, CLOISTER_CONFIG
(the CLI's trust pins), CLOISTER_SIM_ROOT, CLOISTER_FUZZ_FUNCTION (a deployed function).
"""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import urllib.parse

import requests
import schemathesis

BIN = os.environ["CLOISTER_BIN"]
URL = os.environ["CLOISTER_URL"].rstrip("/")
TOKEN = os.environ["CLOISTER_TOKEN"]
FUZZ_FUNCTION = os.environ["CLOISTER_FUZZ_FUNCTION"]
SIM_ROOT = os.environ["CLOISTER_SIM_ROOT"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def cli(args, stdin=b"", identity=None):
    """Runs the CLI against the server under test; stdout, or None when it refused."""
    env = dict(os.environ)
    env.pop("CLOISTER_PROFILE", None)
    identity = identity or os.environ["CLOISTER_IDENTITY"]
    r = subprocess.run(
        [BIN, "--url", URL, "--token", TOKEN, "--identity", identity, *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
    )
    if r.returncode != 0:
        print(f"hook: cloister {' '.join(args[:3])} refused: {r.stderr.decode().strip()}", file=sys.stderr)
        return None
    return r.stdout.decode().strip()


def sign(domain, body, identity=None):
    return cli(["identity", "sign", domain, "--sim-root", SIM_ROOT], json.dumps(body).encode(), identity)


_identities = {}


def identity(role, label):
    """An identity file of `role` for this run, made and granted (by the run's admin) once:
    exports need two signers, neither of whom added the other to the registry."""
    if label not in _identities:
        path = os.path.join(os.environ["CLOISTER_FUZZ_DIR"], f"{label}.json")
        if not os.path.exists(path):
            subprocess.run([BIN, "identity", "create", "--file", path, "--label", label],
                           capture_output=True, check=True, timeout=60)
        shown = subprocess.run([BIN, "--identity", path, "--json", "identity", "show"],
                               capture_output=True, check=True, timeout=60)
        public = json.loads(shown.stdout)["publicKey"]
        cli(["identity", "grant", "--public-key", public, "--role", role, "--label", label])
        _identities[label] = path
    return _identities[label]


_export = []


def key_export():
    # An export of one exportable key of a function a developer owns, signed by her and by a
    # second admin (both added by the run's admin).
    owner = identity("developer", "fuzz-exporter")
    admin = identity("admin", "fuzz-admin-2")
    if not _export:
        code = os.path.join(os.environ["CLOISTER_FUZZ_DIR"], "exported.js")
        with open(code, "w") as f:
            f.write("function handler(p) { return p; }")
        if cli(["fn", "deploy", code, "--name", "fuzz-exported"], identity=owner) is None:
            return None
        info = function_info("fuzz-exported")
        name = f"x{secrets.token_hex(6)}"
        if info is None or cli(["key", "create", name, "--function", "fuzz-exported", "--exportable",
                                "--sim-root", SIM_ROOT], identity=owner) is None:
            return None
        _export.append((info, name))
    info, name = _export[0]
    body = {"function_id": info["functionId"], "function": info["name"], "name": name,
            "recipient": secrets.token_hex(32)}
    owner_signed = sign("cloister/key-export/v1", body, owner)
    admin_signed = sign("cloister/key-export/v1", body, admin)
    if owner_signed and admin_signed:
        return {"ownerSigned": owner_signed, "adminSigned": admin_signed}
    return None


def positive(case):
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    return generation is None or str(getattr(generation, "mode", "positive")) == "positive"


def function_info(name):
    r = requests.get(f"{URL}/v1/functions/{urllib.parse.quote(name, safe='')}", headers=AUTH, timeout=30)
    return r.json() if r.status_code == 200 else None


def deploy(body):
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return
    body.pop("sealedCode", None)
    # An egress policy must hold origins, roots and bindings consistent with each other and
    # with requiredSecrets, which the schema cannot say; the Rust tests cover it
    # (crates/cloister-cli/tests/cli/egress.rs).
    body.pop("egress", None)
    body.pop("manifest", None)
    # null is the field's absence (Option on the server).
    for k in [k for k, v in body.items() if v is None]:
        del body[k]
    entrypoint = body.get("entrypoint", "handler")
    body["code"] = f"function {entrypoint}(params) {{ return params ?? null; }}"
    seen, declared = set(), []
    for s in body.get("requiredSecrets", []):
        category, _, name = s.rpartition("/")
        if name not in seen:
            seen.add(name)
            declared.append(name if category in ("", "default") else s)
    body["requiredSecrets"] = declared
    existing = function_info(body["name"])
    limits = {k: v for k, v in (body.get("limits") or {}).items() if v is not None}
    manifest = {
        "name": body["name"],
        "function_id": existing["functionId"] if existing else None,
        "previous": existing["manifestDigest"] if existing else None,
        "environment": body.get("environment", "production"),
        "runtime": body["runtime"],
        "entrypoint": entrypoint,
        "code_hash": "sha256:" + hashlib.sha256(body["code"].encode()).hexdigest(),
        "secrets": declared,
        # JSON Schema integers may be written 243.0; the manifest holds integers.
        "limits": {"timeout_ms": int(limits.get("timeoutMs", 5000)), "memory_mb": int(limits.get("memoryMb", 64))},
        "activate": True,
    }
    if body.get("requiredKeys"):
        manifest["keys"] = body["requiredKeys"]
    key_limits = key_limits_of(body)
    if key_limits:
        manifest["key_limits"] = key_limits
    if body.get("env"):
        manifest["env"] = body["env"]
    if "sourceName" in body:
        manifest["source_name"] = body["sourceName"]
    signed = sign("cloister/deploy/v1", manifest)
    if signed:
        body["manifest"] = signed


def key_limits_of(body):
    """The deploy's keyLimits made consistent with rules the schema cannot say (each names a
    declared key; a prefix of 16-256 UTF-8 bytes, never with prehashed), written back to the
    body; JSON Schema integers may be written 243.0, the manifest holds integers."""
    declared = body.get("requiredKeys") or []
    out = {}
    for name, limits in (body.get("keyLimits") or {}).items():
        if name not in declared or not isinstance(limits, dict):
            continue
        l = {k: v for k, v in limits.items() if v is not None}
        prefix = l.get("prefix")
        if prefix is not None and not 16 <= len(prefix.encode()) <= 256:
            del l["prefix"]
        if "prefix" in l and "prehashed" in l.get("hashes", []):
            l["hashes"] = [h for h in l["hashes"] if h != "prehashed"]
            if not l["hashes"]:
                del l["hashes"]
        if "maxMessageBytes" in l:
            l["maxMessageBytes"] = int(l["maxMessageBytes"])
        if "rate" in l:
            l["rate"] = {k: int(v) for k, v in l["rate"].items()}
        out[name] = l
    if out:
        body["keyLimits"] = out
    else:
        body.pop("keyLimits", None)
    return out


_fuzz = [FUZZ_FUNCTION]
# How many times the hooks deployed the fuzz function again after the run deleted it, and
# that count when the run last deleted it (see filter_failure).
_redeploys = [0]
_redeploys_at_delete = [0]


def fuzz_function():
    """The function signed requests act on, deployed again when the run deleted it (keyvault
    keeps a deleted function's name bound to it: the owner's redeploy is its next version)."""
    info = function_info(_fuzz[0])
    if info is None:
        code = os.path.join(os.environ["CLOISTER_FUZZ_DIR"], f"{FUZZ_FUNCTION}.js")
        cli(["fn", "deploy", code, "--name", _fuzz[0]])
        _redeploys[0] += 1
        info = function_info(_fuzz[0])
    assert info, f"cannot deploy {_fuzz[0]}"
    return info


def activation():
    info = fuzz_function()
    return sign(
        "cloister/activate/v1",
        {"function_id": info["functionId"], "name": info["name"], "version": info["version"], "active": True},
    )


def grant():
    # A fresh developer identity each time (the registry only grows in a throwaway platform).
    key = cli(["--json", "identity", "create", "--file", os.path.join(os.environ["CLOISTER_FUZZ_DIR"], f"dev-{secrets.token_hex(8)}.identity")])
    if key is None:
        return None
    public = json.loads(key)["publicKey"]
    return sign("cloister/identity-grant/v1", {"public_key": public, "role": "developer", "label": "fuzz"})


def registry_change():
    # Adding an owner who already owns the function: a change keyvault verifies and audits.
    info = fuzz_function()
    return sign(
        "cloister/registry-change/v1",
        {"op": "owners", "function_id": info["functionId"], "name": info["name"], "add": info["owners"][:1], "remove": []},
    )


def key_write():
    # A new key of a fresh name each time, or a rotation of the last one: both succeed.
    info = fuzz_function()
    name = f"k{secrets.token_hex(6)}"
    _keys.append(name)
    if len(_keys) > 1 and secrets.randbelow(2):
        return sign("cloister/key-write/v1", {"function_id": info["functionId"], "function": info["name"], "name": _keys[-2], "op": "rotate"})
    return sign(
        "cloister/key-write/v1",
        {"function_id": info["functionId"], "function": info["name"], "name": name, "op": {"create": {"algorithm": "ed25519"}}},
    )


_keys = []
_use_key = []


def key_use(message_b64):
    # A signature with a key made once for this run, over the message the case carries.
    info = fuzz_function()
    if not _use_key:
        name = f"u{secrets.token_hex(6)}"
        if cli(["key", "create", name, "--function", info["name"], "--sim-root", SIM_ROOT]) is None:
            return None
        _use_key.append(name)
    try:
        message = base64.b64decode(message_b64, validate=True)
    except (ValueError, TypeError):
        # The schema's pattern admits strings that are not base64 ("fgg=="): sign the
        # bytes of a valid encoding instead, and send that.
        message = message_b64.encode()
    return sign(
        "cloister/key-use/v1",
        {"function_id": info["functionId"], "function": info["name"], "name": _use_key[0], "hash": "sha256",
         "message_sha256": hashlib.sha256(message).hexdigest(), "op": "sign"},
    )


def secret_body(path, rotate):
    args = ["secret", "seal", path, "--from-stdin", "--sim-root", SIM_ROOT]
    if rotate:
        args.append("--rotate")
    out = cli(args, secrets.token_hex(16).encode())
    return json.loads(out) if out else None


@schemathesis.hook
def before_call(context, case, kwargs):
    op = (case.method.upper(), case.operation.path)
    if op == ("DELETE", "/v1/functions/{name}") and (case.path_parameters or {}).get("name") == _fuzz[0]:
        _redeploys_at_delete[0] = _redeploys[0]
    if not positive(case):
        return
    if op == ("POST", "/v1/functions"):
        deploy(case.body)
    elif op == ("POST", "/v1/functions/{name}/invoke") and isinstance(case.body, dict):
        case.body.pop("sealed", None)
    elif op in (("POST", "/v1/activations"), ("POST", "/v1/identities"), ("POST", "/v1/registry"), ("POST", "/v1/keys")):
        make = {"/v1/activations": activation, "/v1/identities": grant, "/v1/registry": registry_change, "/v1/keys": key_write}[op[1]]
        signed = make()
        if signed:
            case.body = {"signed": signed}
    elif op == ("POST", "/v1/keys/export"):
        body = key_export()
        if body:
            case.body = body
    elif op == ("POST", "/v1/keys/use") and isinstance(case.body, dict) and (
            isinstance(case.body.get("message"), str) or isinstance(case.body.get("sealed"), str)):
        # The schema's pattern admits strings that are not canonical base64 ("Mq==", "fgg=="):
        # send the canonical encoding of what they decode to (or of the text itself). A body
        # with `sealed` is sent with that text as its plain `message` instead: sealing to
        # keyvault's HPKE key needs the CLI (the Rust tests cover sealed key uses).
        message = case.body.get("message")
        if not isinstance(message, str):
            message = case.body["sealed"]
        try:
            message = base64.b64encode(base64.b64decode(message, validate=True)).decode()
        except (ValueError, TypeError):
            message = base64.b64encode(message.encode()).decode()
        signed = key_use(message)
        if signed:
            case.body = {"signed": signed, "message": message}
    elif op in (("PUT", "/v1/secrets/{path}"), ("POST", "/v1/secrets/{path}")):
        path = urllib.parse.unquote(case.path_parameters["path"])
        body = secret_body(path.removesuffix(":rotate"), op[0] == "POST")
        if body:
            case.body = body
    elif op == ("DELETE", "/v1/secrets/{path}"):
        signed = sign(
            "cloister/secret-write/v1",
            {"path": urllib.parse.unquote(case.path_parameters["path"]), "op": "delete", "sealed_digest": ""},
        )
        if signed:
            case.headers = {**(case.headers or {}), "cloister-signed": signed}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but two misreadings.

    After a deploy, "Created resource not found" (ST302) takes any 404 from a follow-up call
    for the function gone. A call whose *body* names a version the function does not have
    (invoke, set current) is rightly 404 `function_not_found` "... has no version N": the
    check looks only at path and query parameters. Any other 404 still fails the run.

    After a delete, "Deleted resource still available" (ST301) takes the function's latest
    manifest for the function itself: by contract (openapi.json) a deleted function's latest
    manifest stays readable, since keyvault keeps its name bound and a redeploy names it as
    previous. Nor is the fuzz function deleted when a hook deployed it again since (signed
    requests need it: `fuzz_function`). Any other resource still there after its delete fails
    the run."""
    code = getattr(failure, "code", None)
    if code == "ST301":
        if case.operation.path == "/v1/functions/{name}/manifest":
            return False
        redeployed = _redeploys[0] > _redeploys_at_delete[0]
        return not (redeployed and (case.path_parameters or {}).get("name") == _fuzz[0])
    if code != "ST302":
        return True
    body_version = case.operation.path in ("/v1/functions/{name}/invoke", "/v1/functions/{name}/current")
    return not (body_version and b"has no version" in response.content)

