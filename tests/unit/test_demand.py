"""The subscriber's demand table (pure logic; the real link is tests/integration/test_broker.py).

Users come in (acquire/release), commands go out (changes), Redis's confirmations come back in
(confirmed), in every order the event loop can interleave them.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.demand import Changes, Demand, Route

CANARY = "framecast:{__canary__:gw}"
CAM = "framecast:{cam}"
PREVIEW = "framecast:{cam}:previews"
ROUTE = Route("cam", "messages")


def _opened() -> Demand[str]:
    demand: Demand[str] = Demand()
    demand.opened((CANARY,))
    return demand


def _confirm_all(demand: Demand[str], changes: Changes) -> list[str]:
    """Redis's replies to ``changes``, in the order the commands went out; the waiters released."""
    ready: list[str] = []
    for channel in changes.subscribe:
        ready += demand.confirmed(channel, True).ready
    for channel in changes.unsubscribe:
        ready += demand.confirmed(channel, False).ready
    return ready


def _connected() -> Demand[str]:
    demand = _opened()
    _confirm_all(demand, demand.changes())
    assert demand.connected
    return demand


def test_the_first_user_subscribes_and_waits_for_the_confirmation_later_users_do_not() -> None:
    demand = _connected()
    assert not demand.acquire(CAM, ROUTE, "first")
    changes = demand.changes()
    assert changes == Changes(subscribe=[CAM])
    assert demand.changes() == Changes(), "a command is sent once"
    assert demand.confirmed(CAM, True).ready == ["first"]
    assert demand.acquire(CAM, ROUTE, "second"), "held: no wait"
    assert not demand.dirty
    assert demand.route(CAM) == ROUTE and demand.streams() == ["cam"] and demand.held == 2


def test_the_last_user_leaving_unsubscribes_and_its_messages_have_no_route() -> None:
    demand = _connected()
    demand.acquire(CAM, ROUTE, "a")
    demand.acquire(CAM, ROUTE, "b")
    _confirm_all(demand, demand.changes())
    assert demand.release(CAM) == []
    assert not demand.dirty and demand.route(CAM) == ROUTE, "one user left"
    demand.release(CAM)
    assert demand.route(CAM) is None, "a message still in flight is dropped"
    assert demand.changes() == Changes(unsubscribe=[CAM])
    demand.confirmed(CAM, False)
    assert demand.held == 1 and demand.streams() == []


def test_canaries_go_last_so_their_confirmation_means_every_channel_before_them_holds() -> None:
    demand: Demand[str] = Demand()
    demand.acquire(CAM, ROUTE, "w")
    demand.acquire(PREVIEW, Route("cam", "previews"), "p")
    assert demand.changes() == Changes(), "no link: nothing to send"
    demand.opened((CANARY,))
    changes = demand.changes()
    assert changes.subscribe == [CAM, PREVIEW, CANARY]
    assert demand.confirmed(CAM, True).ready == ["w"]
    assert not demand.connected
    settled = demand.confirmed(PREVIEW, True)
    assert settled.ready == ["p"] and not settled.up
    settled = demand.confirmed(CANARY, True)
    assert settled.up and settled.gap is None, "the first link is no gap"
    assert demand.connected and demand.streams() == ["cam"], "previews are no stream of their own"


def test_an_unsubscribe_then_subscribe_back_to_back_subscribes_again_and_waits_for_it() -> None:
    """Regression: the defect seen on a real gateway (unsubscribe + subscribe with since, 2 of 8 runs).

    The subscribe arrived while the unsubscribe of the same channel was on its way to Redis. It
    found the channel still counted as confirmed, so it neither waited nor asked for a new
    SUBSCRIBE; the UNSUBSCRIBE then landed and the stream went silent for good.
    """
    demand = _connected()
    demand.acquire(CAM, ROUTE, "first")
    _confirm_all(demand, demand.changes())
    demand.release(CAM)
    assert demand.changes() == Changes(unsubscribe=[CAM])  # on its way, not yet confirmed
    assert not demand.acquire(CAM, ROUTE, "again"), "must wait: the channel is being dropped"
    assert demand.changes() == Changes(subscribe=[CAM]), "and must be asked for again"
    assert demand.confirmed(CAM, False).ready == [], "the unsubscribe's reply settles nothing"
    assert demand.held == 1
    assert demand.confirmed(CAM, True).ready == ["again"]
    assert demand.held == 2 and demand.route(CAM) == ROUTE


def test_a_release_and_acquire_before_anything_is_sent_keep_the_subscription() -> None:
    demand = _connected()
    demand.acquire(CAM, ROUTE, "first")
    _confirm_all(demand, demand.changes())
    demand.release(CAM)
    assert demand.acquire(CAM, ROUTE, "again"), "never dropped: held all along"
    assert demand.changes() == Changes()


def test_a_subscribe_then_unsubscribe_in_flight_ends_unsubscribed_and_cancels_the_waiter() -> None:
    demand = _connected()
    demand.acquire(CAM, ROUTE, "w")
    demand.changes()
    assert demand.release(CAM) == ["w"], "its user left before Redis confirmed"
    assert demand.changes() == Changes(unsubscribe=[CAM])
    assert demand.confirmed(CAM, True).ready == []
    demand.confirmed(CAM, False)
    assert demand.held == 1


def test_a_drop_then_reconnect_names_the_streams_that_may_have_missed_messages() -> None:
    demand = _connected()
    demand.acquire(CAM, ROUTE, "w")
    _confirm_all(demand, demand.changes())
    demand.closed(stopping=False)
    assert not demand.connected and demand.held == 0 and not demand.dirty
    assert not demand.acquire(CAM, ROUTE, "during"), "nothing holds while the link is down"
    demand.opened((CANARY,))
    changes = demand.changes()
    assert changes.subscribe == [CAM, CANARY]
    assert demand.confirmed(CAM, True).ready == ["during"]
    settled = demand.confirmed(CANARY, True)
    assert settled.up and settled.gap == ["cam"] and demand.reconnects == 1


def test_a_stop_or_a_link_that_never_connected_is_no_gap() -> None:
    demand = _connected()
    demand.closed(stopping=True)
    demand.opened((CANARY,))
    settled = [demand.confirmed(c, True) for c in demand.changes().subscribe][-1]
    assert settled.up and settled.gap is None
    demand.closed(stopping=False)  # connected: a gap is due
    demand.opened((CANARY,))
    demand.changes()
    demand.closed(stopping=False)  # never connected: the gap stays due, counted once
    demand.opened((CANARY,))
    settled = [demand.confirmed(c, True) for c in demand.changes().subscribe][-1]
    assert settled.gap == [] and demand.reconnects == 1


# The property: whatever the interleaving of users, sends and replies, once everything sent is
# confirmed and nothing is left to send, the link holds exactly the used channels (and the
# canary), and every waiter still wanted was released.

_ACTIONS = st.lists(st.sampled_from(["acquire", "release", "send", "reply"]), min_size=1, max_size=60)


@settings(max_examples=400, deadline=None)
@given(_ACTIONS)
def test_any_interleaving_settles_on_exactly_the_used_channels(actions: list[str]) -> None:
    demand = _connected()
    users = 0
    in_flight: list[tuple[str, bool]] = []  # what Redis will confirm, in order
    waiting: set[str] = set()
    released: set[str] = set()
    for number, action in enumerate(actions):
        if action == "acquire":
            users += 1
            name = f"w{number}"
            if not demand.acquire(CAM, ROUTE, name):
                waiting.add(name)
        elif action == "release" and users:
            users -= 1
            waiting.difference_update(demand.release(CAM))
        elif action == "send" and demand.dirty:
            changes = demand.changes()
            in_flight += [(c, True) for c in changes.subscribe] + [(c, False) for c in changes.unsubscribe]
        elif action == "reply" and in_flight:
            channel, subscribed = in_flight.pop(0)
            released.update(demand.confirmed(channel, subscribed).ready)
    for _ in range(10):  # settle as the subscriber does: send only when told to, confirm everything
        changes = demand.changes() if demand.dirty else Changes()
        in_flight += [(c, True) for c in changes.subscribe] + [(c, False) for c in changes.unsubscribe]
        while in_flight:
            channel, subscribed = in_flight.pop(0)
            released.update(demand.confirmed(channel, subscribed).ready)
    assert not demand.dirty
    assert demand.held == (2 if users else 1)
    assert (demand.route(CAM) is not None) == bool(users)
    assert demand.acquire(CAM, ROUTE, "probe") == bool(users), "held exactly while used"
    assert waiting <= released, "every waiter still wanted was released"


VIDEO = "framecast:{cam}:video"
VIDEO_ROUTE = Route("cam", "video")


def _lingering() -> Demand[str]:
    demand: Demand[str] = Demand(linger={"video": 4.0})
    demand.opened((CANARY,))
    _confirm_all(demand, demand.changes())
    return demand


def test_a_lingering_channel_stays_held_and_routed_after_its_last_user_until_its_time() -> None:
    demand = _lingering()
    demand.acquire(CAM, ROUTE, "m")
    demand.acquire(VIDEO, VIDEO_ROUTE, "v")
    _confirm_all(demand, demand.changes())
    demand.release(CAM, now=10.0)
    demand.release(VIDEO, now=10.0)
    assert demand.changes() == Changes(unsubscribe=[CAM]), "only the kind that lingers stays"
    assert demand.route(VIDEO) == VIDEO_ROUTE and demand.lingering(VIDEO), "its frames still flow"
    assert demand.streams() == [], "a lingering channel has no user to tell of a gap"
    assert demand.next_expiry() == 14.0
    assert demand.expire(13.9) == []
    assert demand.expire(14.0) == [VIDEO_ROUTE]
    assert demand.route(VIDEO) is None and demand.next_expiry() is None
    assert demand.changes() == Changes(unsubscribe=[VIDEO])


def test_a_user_back_within_the_linger_finds_the_channel_held_at_once() -> None:
    demand = _lingering()
    demand.acquire(VIDEO, VIDEO_ROUTE, "first")
    _confirm_all(demand, demand.changes())
    demand.release(VIDEO, now=10.0)
    assert demand.acquire(VIDEO, VIDEO_ROUTE, "back"), "held: no wait, no command"
    assert not demand.dirty and demand.next_expiry() is None
    assert demand.expire(100.0) == [], "in use again: its linger is over"
    demand.release(VIDEO, now=100.0)
    assert demand.next_expiry() == 104.0, "the last user's leaving starts a new linger"


def test_a_lingering_channel_is_subscribed_again_on_a_new_link() -> None:
    demand = _lingering()
    demand.acquire(VIDEO, VIDEO_ROUTE, "v")
    _confirm_all(demand, demand.changes())
    demand.release(VIDEO, now=0.0)
    demand.closed(stopping=False)
    demand.opened((CANARY,))
    assert demand.changes().subscribe == [VIDEO, CANARY]


def test_no_linger_gives_the_channel_up_at_once() -> None:
    demand: Demand[str] = Demand(linger={"video": 0.0})
    demand.opened((CANARY,))
    demand.acquire(VIDEO, VIDEO_ROUTE, "v")
    _confirm_all(demand, demand.changes())
    demand.release(VIDEO, now=5.0)
    assert demand.route(VIDEO) is None and demand.next_expiry() is None
    assert demand.changes() == Changes(unsubscribe=[VIDEO])
