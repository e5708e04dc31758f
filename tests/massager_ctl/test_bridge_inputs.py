"""What the bus sends means what it says, and every message is answered.

Against the real Mosquitto of `tests.broker`, with the simulator in the test's
process, as in `test_bridge`: a number that is not a number, a profile file that
cannot be read, a response topic no one can publish to, a transaction too long
to echo, and device names the bridge's own topics would collide with.
"""

from __future__ import annotations

import pytest

from tests.broker import Broker
from tests.massager_ctl.test_bridge import bridged, fresh_name, mosquitto_pub

pytestmark = pytest.mark.looptime(False)

NOT_AN_INTEGER = "Input should be a valid integer"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ('{"action": "intensity", "intensity": true}', f"intensity: {NOT_AN_INTEGER}"),
        ('{"action": "intensity", "intensity": "3"}', f"intensity: {NOT_AN_INTEGER}"),
        ('{"action": "intensity", "intensity": 3.0}', f"intensity: {NOT_AN_INTEGER}"),
        ('{"action": "stop", "at": 1700000000}', "at: Input should be a valid datetime"),
        ('{"action": "stop", "id": 7}', "id: Input should be a valid string"),
    ],
    ids=["true", "string", "float", "at-number", "id-number"],
)  # fmt: skip
async def test_a_value_of_another_type_is_refused_not_converted(
    broker: Broker, payload: str, error: str
) -> None:
    name = fresh_name()
    async with bridged(broker, name) as seen:
        idle = await seen.wait(f"massager/{name}", lambda p: p["state"] == "idle")
        await mosquitto_pub(broker, f"massager/{name}/set", payload)
        answer = await seen.wait(f"massager/{name}/response")
        assert answer == {"ok": False, "error": error}
        # Nothing changed, and the bridge goes on: the state asked for again is as it was.
        after = len(seen.seen)
        await mosquitto_pub(broker, f"massager/{name}/get", "")
        state = await seen.wait(f"massager/{name}", after=after)
        assert (state["state"], state["intensity"]) == ("idle", idle["intensity"])
