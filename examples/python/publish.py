#!/usr/bin/env python3
"""Publish one command to apiops-worker over NATS JetStream and wait for its result,
as docs/contract.md says a publisher does:

  - the command is validated with the shipped JSON Schemas first (apiops_schema);
  - it is published on <prefix>.cmd.<project>.<type> with the header
    Nats-Msg-Id: <project>/<id>, so that JetStream drops a second publish of it;
  - a publish acknowledged as a duplicate is published once more without
    Nats-Msg-Id (the duplicate window is shared: another publisher may have used
    the same header); the worker runs it, or answers from the result of this id;
  - the result comes back on the command's replyTo, which must lie under the
    project's inbox _INBOX.<project>. (the accounts pass only that to a team); the
    inbox is subscribed to before publishing, and only a result whose project,
    type and id are the command's is taken: anyone may publish to a subject.

    python3 publish.py --server nats://127.0.0.1:4222 command.json
    python3 publish.py --dry-run ../../testdata/commands/keystore.delete.json

Validating (--dry-run) needs only jsonschema; publishing needs nats-py
(pip install nats-py), imported only then.
"""

import argparse
import asyncio
import json
import secrets
import sys

import apiops_schema

DEFAULT_PREFIX = "apiops"


class InvalidCommand(ValueError):
    pass


class Prepared:
    """A command ready to publish: its subject, headers and body, and the inbox its
    result comes back on (None when it names none)."""

    def __init__(self, project, type_name, command, subject, headers, body, inbox):
        self.project, self.type, self.command = project, type_name, command
        self.subject, self.headers, self.body, self.inbox = subject, headers, body, inbox


def inbox_for(project):
    """A fresh reply subject under the project's inbox, _INBOX.<project>.<token>."""
    return f"_INBOX.{project}.{secrets.token_hex(8)}"


def prepare(command, project=None, type_name=None, prefix=DEFAULT_PREFIX, reply=True, schemas=None):
    """Checks command (a dict) with the schemas and returns it as a Prepared.

    project and type_name are the subject's; they default to the body's "project" and
    "type", and are written into the body, so that the schema checks the project's
    name and the type, and the worker that they match the subject. With reply, a
    command without a replyTo gets one under the project's inbox.
    """
    command = dict(command)
    project = project or command.get("project")
    type_name = type_name or command.get("type")
    if not isinstance(project, str) or not isinstance(type_name, str):
        raise InvalidCommand("the project and the type are needed: give them, or set them in the command")
    for field, value in (("project", project), ("type", type_name)):
        if command.setdefault(field, value) != value:
            raise InvalidCommand(f"the command's {field} {command[field]!r} is not the subject's {value!r}")
    if reply and "replyTo" not in command:
        command["replyTo"] = inbox_for(project)
    inbox = command.get("replyTo")
    # The one rule of the envelope the schemas cannot state: they do not know the project.
    if isinstance(inbox, str) and not inbox.startswith(f"_INBOX.{project}."):
        raise InvalidCommand(f"replyTo must be under _INBOX.{project}. (the project's inbox)")
    errors = (schemas or apiops_schema.Schemas()).errors(type_name, command)
    if errors:
        raise InvalidCommand("; ".join(errors))
    return Prepared(
        project,
        type_name,
        command,
        subject=f"{prefix}.cmd.{project}.{type_name}",
        headers={"Nats-Msg-Id": f"{project}/{command['id']}"},
        body=json.dumps(command, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        inbox=inbox,
    )


async def publish(p, servers, timeout):
    """Publishes p and returns its result (a dict), or None when it names no inbox."""
    import nats  # nats-py: only publishing needs it
    import nats.errors

    nc = await nats.connect(servers=servers)
    try:
        # Before publishing: a command whose id already finished is answered at once.
        sub = await nc.subscribe(p.inbox) if p.inbox else None
        js = nc.jetstream()
        ack = await js.publish(p.subject, p.body, headers=p.headers)
        if ack.duplicate:
            ack = await js.publish(p.subject, p.body)
        print(f"stored as {ack.stream} #{ack.seq}", file=sys.stderr)
        if sub is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no result on {p.inbox} within {timeout} s")
            try:
                msg = await sub.next_msg(timeout=remaining)
            except nats.errors.TimeoutError:
                continue
            try:
                result = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(result, dict) and (result.get("project"), result.get("type"), result.get("id")) == (
                p.project,
                p.type,
                p.command["id"],
            ):
                return result
    finally:
        await nc.drain()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Validate a command with the shipped JSON Schemas and publish it to apiops-worker.")
    ap.add_argument("file", help="the command, one JSON object; - reads standard input")
    ap.add_argument("--server", default="nats://127.0.0.1:4222", help="NATS server URL")
    ap.add_argument("--prefix", default=DEFAULT_PREFIX, help="the worker's subject prefix")
    ap.add_argument("--project", help="the project (default: the command's)")
    ap.add_argument("--type", dest="type_name", help="the command type (default: the command's)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for the result")
    ap.add_argument("--no-wait", action="store_true", help="publish without a replyTo and do not wait")
    ap.add_argument("--dry-run", action="store_true", help="validate and print what would be published")
    args = ap.parse_args(argv)

    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    try:
        p = prepare(apiops_schema.loads(text), args.project, args.type_name, args.prefix, reply=not args.no_wait)
    except (InvalidCommand, ValueError) as e:
        print(f"invalid command: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps({"subject": p.subject, "headers": p.headers, "body": p.command}, ensure_ascii=False))
        return 0
    try:
        result = asyncio.run(publish(p, args.server, args.timeout))
    except ModuleNotFoundError as e:
        if e.name != "nats":
            raise
        print("publishing needs nats-py (pip install nats-py); --dry-run only validates", file=sys.stderr)
        return 3
    if result is None:
        return 0
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result.get("status") == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
