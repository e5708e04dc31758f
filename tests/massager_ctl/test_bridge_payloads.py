"""The bridge's payloads under arbitrary input: whatever arrives, an answer and no crash.

The bridge parses ``<base>/<device>/set`` with ``Command.model_validate_json(payload
or b"")`` and ``<base>/bridge/request/<op>`` with ``Request.model_validate_json(payload
or b"{}")`` inside `Bridge._handle` and `Bridge._request`, and answers a
`ValidationError` (described by `describe_errors`) or a `MassagerError` on the
response topic. Any other exception would escape the message's task and the
sender would get no answer. These properties feed the models arbitrary bytes and
JSON, and drive `Bridge._dispatch` itself with a recording stand-in for the MQTT
client (no broker) and for the massager (no device).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiomqtt
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from massager_ctl.errors import InputError
from massager_ctl.holder import Command
from massager_ctl.mqtt.bridge import Bridge, Request
from massager_ctl.mqtt.topics import REQUESTS
from massager_ctl.tomlfiles import describe_errors
from tests.massager_ctl.test_bridge import a_bridge

ACTIONS = ["start", "program", "mode", "intensity", "pause", "resume", "stop", "vent"]
FIELDS = ["action", "profile", "mode", "intensity", "id", "at", "transaction"]
VALUE_FIELDS = ("profile", "mode", "intensity")
# The contract as documented (README, "MQTT"; `Command`'s docstring), written out here
# rather than read from the code, so the code is checked against it and not itself.
DOCUMENTED_FIELD: dict[str, str | None] = {
    "start": "profile", "program": "profile", "mode": "mode", "intensity": "intensity",
    "pause": None, "resume": None, "stop": None, "vent": None,
}  # fmt: skip
OPTIONAL_FIELD = {"start"}  # a bare start starts the profile chosen with `program`
MAX_AGE_S = 10.0  # README: a command whose "at" is more than 10 s old is refused
AGE_MARGIN_S = 2.0  # an age this close to the limit is no test case: the clock moves

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=50), st.sampled_from(ACTIONS), st.sampled_from(["evening-45", "../x", ""]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip
times = st.one_of(
    st.datetimes().map(datetime.isoformat),
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    st.sampled_from(["now", "2026-13-01T00:00:00", "9999-12-31T23:59:59-23:59", "0001-01-01"]),
    st.integers(-(10**12), 10**12), st.floats(allow_nan=False),
)  # fmt: skip
objects = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8),
    st.one_of(json_values, times, st.integers(-2, 12)),
    max_size=6,
)
profile_names = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,39}\Z")
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
ats = st.none() | st.datetimes(timezones=st.none() | offsets)
ids = st.none() | st.text(min_size=1, max_size=64)
recent_ats = st.tuples(
    st.floats(-3 * MAX_AGE_S, 3 * MAX_AGE_S), st.none() | offsets, st.booleans()
).map(
    lambda t: (
        (datetime.now(UTC) + timedelta(seconds=t[0])).astimezone(t[1] or UTC)
        if t[2]
        else (datetime.now(UTC) + timedelta(seconds=t[0])).replace(tzinfo=None)
    )
)  # around now, on both sides of the age limit: naive (UTC), or at some offset
ats = ats | recent_ats
valid_commands = st.one_of(
    st.builds(Command, action=st.just("start"), profile=st.none() | profile_names, id=ids,
              at=ats),
    st.builds(Command, action=st.just("program"), profile=profile_names, id=ids, at=ats),
    st.builds(Command, action=st.just("mode"), mode=st.text(min_size=1, max_size=32), id=ids,
              at=ats),
    st.builds(Command, action=st.just("intensity"), intensity=st.integers(1, 10), id=ids,
              at=ats),
    st.builds(Command, action=st.sampled_from(["pause", "resume", "stop", "vent"]), id=ids,
              at=ats),
)  # fmt: skip


def parse_command(payload: bytes) -> Command | ValidationError:
    """The bridge's parse of a ``/set`` payload: a command, or the only error it may raise."""
    try:
        return Command.model_validate_json(payload or b"")
    except ValidationError as error:
        refused = error
    assert describe_errors(refused, "command")  # what the sender is told
    return refused


def parse_request(payload: bytes) -> Request | ValidationError:
    """The bridge's parse of a request payload (an empty one is ``{}``)."""
    try:
        return Request.model_validate_json(payload or b"{}")
    except ValidationError as error:
        refused = error
    assert describe_errors(refused, "request")
    return refused


def too_old(at: datetime | None) -> bool:
    """Whether the documented age limit refuses a command sent ``at`` (a naive time is UTC).

    An age within `AGE_MARGIN_S` of the limit is left out (`assume`): which way it
    goes depends on when the bridge looks at its clock.
    """
    if at is None:
        return False
    sent = at if at.tzinfo else at.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - sent).total_seconds()
    assume(abs(abs(age) - MAX_AGE_S) > AGE_MARGIN_S)
    return abs(age) > MAX_AGE_S


def holds_the_action_contract(command: Command) -> None:
    """A parsed command carries exactly the value its action takes (``start``'s optional)."""
    needed = DOCUMENTED_FIELD[command.action]
    for field in VALUE_FIELDS:
        given = getattr(command, field) is not None
        if field == needed:
            assert given or command.action in OPTIONAL_FIELD, f"{command} lacks its {field}"
        else:
            assert not given, f"{command} carries a {field}"


@given(st.binary(max_size=300))
def test_any_bytes_as_a_command_raise_only_a_validation_error(payload: bytes) -> None:
    parse_command(payload)


# Command-shaped objects: an action, any of the value fields with a valid value (or
# just its action's documented one), and perhaps an id and a time. Exactly those with
# their action's documented fields parse.
valid_values: dict[str, st.SearchStrategy[Any]] = {
    "profile": profile_names, "mode": st.text(min_size=1, max_size=32),
    "intensity": st.integers(1, 10), "id": st.text(min_size=1, max_size=64),
    "at": recent_ats.map(datetime.isoformat),
}  # fmt: skip
extras = {field: valid_values[field] for field in ("id", "at")}
command_shaped = st.one_of(
    st.fixed_dictionaries({"action": st.sampled_from(ACTIONS)}, optional=valid_values),
    st.sampled_from(ACTIONS).flatmap(
        lambda action: st.fixed_dictionaries(
            {"action": st.just(action)}
            | ({field: valid_values[field]} if (field := DOCUMENTED_FIELD[action]) else {}),
            optional=extras,
        )
    ),
)


@given(command_shaped)
def test_a_command_shaped_object_parses_exactly_when_it_has_its_actions_fields(
    obj: dict[str, Any],
) -> None:
    needed = DOCUMENTED_FIELD[obj["action"]]
    present = {field for field in VALUE_FIELDS if field in obj}
    allowed = [{needed} if needed else set()]
    if obj["action"] in OPTIONAL_FIELD:
        allowed.append(set())
    parsed = parse_command(json.dumps(obj).encode())
    event("parsed" if isinstance(parsed, Command) else "refused")
    if present in allowed:
        assert isinstance(parsed, Command), f"{obj} refused: {parsed}"
        holds_the_action_contract(parsed)
        for field, value in obj.items():
            if field != "at":
                assert getattr(parsed, field) == value
    else:
        assert isinstance(parsed, ValidationError), f"{obj} parsed as {parsed}"


@given(objects)
def test_any_json_object_as_a_command_parses_to_a_sound_command_or_is_refused(
    obj: dict[str, Any],
) -> None:
    parsed = parse_command(json.dumps(obj).encode())
    if isinstance(parsed, ValidationError):
        return
    holds_the_action_contract(parsed)
    assert parsed.action in ACTIONS
    if parsed.profile is not None:
        assert "/" not in parsed.profile, "a profile by name, never a path"
        assert not parsed.profile.startswith(".")
    if too_old(parsed.at):
        with pytest.raises(InputError, match="refused"):
            Bridge._check_age(parsed)
    else:
        Bridge._check_age(parsed)  # raises nothing else, and not this


@given(valid_commands)
def test_a_valid_command_round_trips_through_its_json(command: Command) -> None:
    for text in (command.model_dump_json(), command.model_dump_json(exclude_none=True)):
        assert parse_command(text.encode()) == command


@given(st.one_of(st.binary(max_size=200), objects.map(lambda o: json.dumps(o).encode())))
def test_any_request_payload_raises_only_a_validation_error(payload: bytes) -> None:
    parsed = parse_request(payload)
    if isinstance(parsed, Request):
        json.dumps({"transaction": parsed.transaction})  # echoed in the answer


@given(st.none() | st.text(max_size=64) | st.integers(-(2**63), 2**63 - 1))
def test_a_request_transaction_round_trips(transaction: str | int | None) -> None:
    assert parse_request(json.dumps({"transaction": transaction}).encode()) == Request(
        transaction=transaction
    )


# --- the whole path, with no broker and no device ---------------------------------


class RecordingClient:
    """Stands in for `aiomqtt.Client`: records what the bridge publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any, bool]] = []

    async def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
                      **_: Any) -> None:  # fmt: skip
        self.published.append((topic, payload, retain))


def dispatch(topic: str, payload: bytes, *, retain: bool) -> tuple[list[Any], list[Command]]:
    """Run `Bridge._dispatch` on one message; what it published, and the commands it ran."""
    ran: list[Command] = []

    async def run() -> list[Any]:
        bridge = a_bridge("mqtt://127.0.0.1:1", {"bed": "sim://bed"})

        async def command(command: Command, source: str) -> str:
            ran.append(command)
            return f"{command.action}: done"

        bridge.agents["bed"].holder._act = command  # type: ignore[method-assign]
        client = RecordingClient()
        message = aiomqtt.Message(topic, payload, qos=1, retain=retain, mid=1, properties=None)
        await bridge._dispatch(client, message)  # type: ignore[arg-type]
        return client.published

    loop = asyncio.new_event_loop()  # not the test's: set as current by nobody
    try:
        return loop.run_until_complete(run()), ran
    finally:
        loop.close()


payloads = st.one_of(
    st.binary(max_size=120),
    objects.map(lambda o: json.dumps(o).encode()),
    valid_commands.map(lambda c: c.model_dump_json(exclude_none=True).encode()),
)


@settings(max_examples=150)
@given(payloads, st.booleans())
def test_every_set_payload_is_answered_once_and_only_a_valid_one_runs(
    payload: bytes, retain: bool
) -> None:
    parsed = parse_command(payload)
    refused = isinstance(parsed, Command) and not retain and too_old(parsed.at)
    published, ran = dispatch("massager/bed/set", payload, retain=retain)
    answers = [json.loads(body) for topic, body, _ in published if topic == "massager/bed/response"]
    if retain:
        # A retained command is never run: cleared (and answered) unless it is the clearing.
        assert not ran
        assert len(answers) == (1 if payload else 0)
        assert all(a["ok"] is False and "retained" in a["error"] for a in answers)
        return
    assert len(answers) == 1, published
    answer = answers[0]
    assert isinstance(answer["ok"], bool)
    if isinstance(parsed, ValidationError):
        assert answer == {"ok": False, "error": describe_errors(parsed, "command")}
        assert not ran
        return
    assert (answer["id"], answer["action"]) == (parsed.id, parsed.action)
    event("too old" if refused else "run")
    if refused:
        assert answer["ok"] is False
        assert "refused" in answer["error"], answer
        assert not ran
    else:
        assert answer["ok"] is True, answer
        assert ran == [parsed]


@settings(max_examples=60)
@given(st.one_of(st.binary(max_size=80), objects.map(lambda o: json.dumps(o).encode())),
       st.sampled_from([*REQUESTS, "nothing", "devices/extra"]))  # fmt: skip
def test_every_bridge_request_is_answered_once(payload: bytes, op: str) -> None:
    published, ran = dispatch(f"massager/bridge/request/{op}", payload, retain=False)
    last = op.rsplit("/", 1)[-1]
    answers = [json.loads(body) for topic, body, _ in published
               if topic == f"massager/bridge/response/{last}"]  # fmt: skip
    assert len(answers) == 1, published
    assert not ran
    answer = answers[0]
    parsed = parse_request(payload)
    if isinstance(parsed, ValidationError):
        assert answer["ok"] is False
        assert answer["error"] == describe_errors(parsed, "request")
    else:
        assert answer["transaction"] == parsed.transaction
        assert answer["ok"] is (last in REQUESTS)


@pytest.mark.parametrize(
    "payload",
    [b"", b"{}", b"null", b"[]", b'{"action": "start", "profile": "../etc/passwd"}',
     b'{"action": "stop", "at": "0001-01-01T00:00:00+23:59"}', b'\xff\xfe{"action"',
     b'{"action": "mode", "mode": "wave", "intensity": 2}'],
)  # fmt: skip
def test_known_awkward_set_payloads_are_refused_with_a_reason(payload: bytes) -> None:
    published, ran = dispatch("massager/bed/set", payload, retain=False)
    (answer,) = [json.loads(body) for topic, body, _ in published if topic.endswith("/response")]
    assert answer["ok"] is False
    assert answer["error"]
    assert not ran
