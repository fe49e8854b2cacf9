#!/usr/bin/env python3
"""make check-python: the shipped JSON Schemas, read by Python's jsonschema (as
apiops_schema reads them for the example publisher), judge every command as the
worker does.

The commands are the testdata corpus (the example commands, the rotation, the plans,
the sealed example, testdata/invalid-commands.jsonl) and a sweep that puts
characters engines read differently (line terminators, Unicode whitespace, digits
other than 0-9, ...) into every field that has a pattern. The worker's verdicts
come from the real decoder (go run ./internal/verdicts), not from a copy of its
rules. A command the worker rejects may pass the schemas only for a reason
docs/contract.md gives (the subject's project, a replyTo outside the project's
inbox, a key given twice); any other difference fails the check.

    GO=go python3 examples/python/check_corpus.py [-v]
"""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # leave no __pycache__ in the work tree

import apiops_schema  # noqa: E402
import publish  # noqa: E402

TESTDATA = ROOT / "testdata"


class Case:
    def __init__(self, name, project, type_name, text):
        self.name, self.project, self.type, self.text = name, project, type_name, text


def corpus():
    """The commands of testdata/, each on the subject it is meant for."""
    cases = []

    def named_by_body(name, text):
        body = json.loads(text)
        cases.append(Case(name, body["project"], body["type"], text))

    for path in sorted((TESTDATA / "commands").glob("*.json")):
        named_by_body(f"commands/{path.name}", path.read_text(encoding="utf-8"))
    for n, line in enumerate((TESTDATA / "rotation.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            named_by_body(f"rotation.jsonl:{n}", line)
    for path in sorted((TESTDATA / "plans").glob("*.json")):
        named_by_body(f"plans/{path.name}", path.read_text(encoding="utf-8"))
    named_by_body("sealed/keystore.create.sealed.json", (TESTDATA / "sealed" / "keystore.create.sealed.json").read_text(encoding="utf-8"))
    for line in (TESTDATA / "invalid-commands.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            tc = json.loads(line)
            cases.append(Case(f"invalid: {tc['name']}", tc["project"], tc["type"], tc["command"]))
    return cases


# Characters whose reading differs between regex engines, or that the worker treats
# specially, by a name for the report.
PROBES = {
    "LF": "\n", "CR": "\r", "CRLF": "\r\n", "VT": "\x0b", "FF": "\x0c", "U+001C": "\x1c", "DEL": "\x7f",
    "NEL": "\x85", "U+009F": "\x9f", "space": " ", "tab": "\t", "NBSP": "\xa0", "U+1680": "\u1680",
    "U+2000": "\u2000", "U+200A": "\u200a", "LS": "\u2028", "PS": "\u2029", "U+202F": "\u202f",
    "U+205F": "\u205f", "U+3000": "\u3000", "BOM": "\ufeff", "U+180E": "\u180e", "U+200B": "\u200b",
    "arabic 3": "\u0663", "fullwidth 5": "\uff15", "e-acute": "\xe9", "emoji": "\U0001f600",
    "/": "/", "\\": "\\", ".": ".", "*": "*", ">": ">", ":": ":", "+": "+", "=": "=", "-": "-",
    "7": "7", "A": "A", "t": "t", "z": "z", "Z": "Z",
}

SEALED = json.loads((TESTDATA / "sealed" / "vector.json").read_text(encoding="utf-8"))["sealed"]


def sweep():
    """Every probe at the end, in the middle, in place of a middle and of the last
    character, and alone, in each field that has a pattern."""
    p = "MyProject"

    def proxy(**params):
        return ("proxy.mtls.update", {"id": "sweep-1", "params": {"apiProxyName": "MyAPI", **params}})

    def keystore(file="QUJD", password="changeit"):
        env = {"environmentName": "production", "file": file, "password": password, "keyStoreType": "PKCS12"}
        return ("keystore.create", {"id": "sweep-1", "params": {"name": "trust-2027", "keyStoreEnvironmentList": [env]}})

    def credential(**envelope):
        return ("credential.keystore.set", {"id": "sweep-1", **envelope, "params": {"username": "api-user", "keystoreName": "client-2026"}})

    def with_params(made, **params):
        made[1]["params"].update(params)
        return made

    # field: (its valid value, value -> (subject project, type, command)[, where its
    # middle is]). A replyTo's middle is in its last token: one in the project's makes
    # it another project's inbox, which only the worker can tell.
    fields = {
        "id": ("sweep-1", lambda v: (p, *credential(id=v))),
        "project": (p, lambda v: (v, *credential(project=v))),
        "replyTo": (f"_INBOX.{p}.reply1", lambda v: (p, *credential(replyTo=v)), -3),
        "notAfter": ("2026-11-22T12:00:00Z", lambda v: (p, *credential(notAfter=v))),
        "username": ("api-user", lambda v: (p, *with_params(credential(), username=v))),
        "keyStoreName": ("trust-2027", lambda v: (p, *proxy(keyStoreName=v))),
        "deployTarget": ("production", lambda v: (p, *proxy(supportedProtocolList=["TLS_1_3"], deploy=True, deployTargetEnvironmentNameList=[v]))),
        "file": ("QUJD", lambda v: (p, *keystore(file=v))),
        "sealed.for": (SEALED["for"], lambda v: (p, *keystore(password={**SEALED, "for": v}))),
    }
    cases = []
    for field, (valid, make, *middle) in fields.items():
        k = middle[0] if middle else len(valid) // 2
        for probe, c in PROBES.items():
            for where, value in (
                ("at the end", valid + c),
                ("in the middle", valid[:k] + c + valid[k:]),
                ("for a middle character", valid[:k] + c + valid[k + 1:]),
                ("for the last character", valid[:-1] + c),
                ("alone", c),
            ):
                project, type_name, command = make(value)
                cases.append(Case(f"sweep: {field} with {probe} {where}", project, type_name, json.dumps(command)))
    return cases


def worker_verdicts(cases):
    """The worker's verdict on each case, from the real decoder."""
    go = os.environ.get("GO", "go")
    lines = "".join(json.dumps({"project": c.project, "type": c.type, "command": c.text}) + "\n" for c in cases)
    run = subprocess.run([go, "run", "./internal/verdicts"], cwd=ROOT, input=lines, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"check_corpus: go run ./internal/verdicts failed:\n{run.stderr}")
    verdicts = [json.loads(line) for line in run.stdout.splitlines()]
    if len(verdicts) != len(cases):
        sys.exit(f"check_corpus: {len(verdicts)} verdicts for {len(cases)} commands")
    return verdicts


def example_verdict(schemas, case):
    """(the parsed command or None, what is wrong: [] when valid), as the example
    publisher judges a command: apiops_schema.loads, which also refuses a key given
    twice (a schema sees only the merged object), then the schemas."""
    try:
        doc = apiops_schema.loads(case.text)
    except ValueError as e:
        return None, [f"not JSON the worker takes: {e}"]
    return doc, schemas.errors(case.type, doc)


def beyond_the_schemas(case, doc, worker):
    """Why the worker may reject a command the schemas accept, when the contract says
    so; None when it does not."""
    field = worker.get("field")
    has = lambda key: isinstance(doc, dict) and doc.get(key) is not None  # noqa: E731
    if field == "project" and worker["code"] == "subject_mismatch":
        return "the body's project differs from the subject's, which the schemas do not see"
    if field == "project" and not has("project"):
        return "the subject's project, which is not in the body"
    if field == "replyTo" and has("replyTo") and not str(doc["replyTo"]).startswith(f"_INBOX.{case.project}."):
        return "a replyTo outside the project's inbox: the schemas do not know the project"
    # The contract's "Validation" and messages/schema's schemaOnly: what these fields
    # hold is beyond a pattern.
    if field == "params.revision" and case.type == "proxy.rollback":
        return "a rollback's revision may be left out in a plan's onFailure only; its params are one schema"
    if (field or "").endswith(".content") and case.type in ("key.create", "key.update"):
        return "a key's content is a secret, plain or sealed: only the worker opens it"
    if field == "params.pemEncodedFile" and worker["code"] == "invalid_command" and has("params"):
        return "the certificate file is base64: what it holds is beyond a pattern"
    return None


def check_publisher(schemas):
    """publish.prepare, the example's path to a publish, on the example commands: the
    number of checks and the failures."""
    checks, failures = 0, []
    for path in sorted((TESTDATA / "commands").glob("*.json")):
        command = apiops_schema.loads(path.read_text(encoding="utf-8"))
        checks += 1
        p = publish.prepare(command, schemas=schemas)
        want = (f"apiops.cmd.{command['project']}.{command['type']}", f"{command['project']}/{command['id']}")
        if (p.subject, p.headers.get("Nats-Msg-Id")) != want or not p.inbox.startswith(f"_INBOX.{command['project']}."):
            failures.append(f"publish.prepare({path.name}): {p.subject} {p.headers} replyTo {p.inbox}")
    checks += 1
    try:
        publish.prepare(dict(command, replyTo="_INBOX.OtherProject.x"), schemas=schemas)
        failures.append("publish.prepare took a replyTo under another project's inbox")
    except publish.InvalidCommand:
        pass
    return checks, failures


def main():
    verbose = "-v" in sys.argv[1:]
    schemas = apiops_schema.Schemas()
    testdata, swept = corpus(), sweep()
    cases = testdata + swept
    verdicts = worker_verdicts(cases)
    failed, beyond = [], 0
    for case, worker in zip(cases, verdicts):
        doc, errors = example_verdict(schemas, case)
        worker_says = "valid" if worker["ok"] else f"{worker['code']} {worker.get('field', '')}: {worker.get('message', '')}"
        schema_says = "valid" if not errors else errors[0]
        if worker["ok"] == (not errors):
            if verbose:
                print(f"ok   {case.name}: {worker_says}")
            continue
        why = None if worker["ok"] else beyond_the_schemas(case, doc, worker)
        if why:
            beyond += 1
            if verbose:
                print(f"ok   {case.name}: beyond the schemas ({why})")
            continue
        failed.append(f"{case.name} (subject {case.project!r} {case.type!r})\n"
                      f"       worker:  {worker_says}\n       schemas: {schema_says}\n       command: {case.text!r}")
    checks, publisher_failed = check_publisher(schemas)
    failed += publisher_failed
    for f in failed:
        print(f"FAIL {f}")
    print(f"check_corpus: {len(testdata)} corpus and {len(swept)} sweep commands, {checks} publisher checks; "
          f"{beyond} commands rejected by the worker for reasons the schemas cannot see")
    print(f"check-python: {len(cases) + checks - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
