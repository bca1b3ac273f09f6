"""What the ccxt.pro WebSocket scenarios share: waiting until a watch call is armed,
learning when the exchange confirmed a subscription (or seeing any message ccxt
handles), following one order's events across watch calls, and describing what a
refused call raised. Imported by the *_ws_clients.py scripts beside it."""

import asyncio
import os

# How long a step may wait for its answer or event, in seconds.
WAIT = float(os.environ.get("KEYWARD_WS_WAIT", "20"))


async def armed(ex, url, message_hash, task):
    """Waits until `task` (a ccxt watch call) is waiting for `message_hash` on `url`:
    its future registered, so an event sent from now on reaches it. ccxt delivers an
    event only to a watch call already waiting."""
    client = ex.client(url)
    deadline = asyncio.get_running_loop().time() + WAIT
    while message_hash not in client.futures:
        if task.done():
            task.result()  # raises what the watch call raised
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("ccxt never waited for " + message_hash)
        await asyncio.sleep(0.01)


def raised(error):
    """What a refused call raised: the exception's class, every class it is one of
    (for checks on the library's hierarchy) and its text."""
    return {
        "raised": type(error).__name__,
        "classes": [c.__name__ for c in type(error).__mro__],
        "message": str(error),
    }


def confirmations(ex, confirms=lambda message: True, handler="handle_subscription_status"):
    """An event set when the exchange confirms a subscription (a message `confirms`
    accepts): ccxt hands the answer to `handle_subscription_status` (or, where it
    has no handler for it, as with Kraken's v2 `subscribe` answer, only to
    `handler`, `handle_message`) and keeps nothing of it."""
    confirmed = asyncio.Event()

    def seen(message):
        if confirms(message):
            confirmed.set()

    watch_messages(ex, seen, handler)
    return confirmed


def watch_messages(ex, seen, handler="handle_message"):
    """Calls `seen` with each message ccxt hands `handler`, before ccxt handles it."""
    original = getattr(ex, handler)

    def handle(client, message):
        seen(message)
        return original(client, message)

    setattr(ex, handler, handle)


async def order_event(ex, url, symbol, message_hash, task, order_id, status, describe,
                      accept=lambda order: True):
    """`describe` of the event of `order_id` with `status` (and that `accept` takes),
    from `task` and the watch calls after it."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        orders = await asyncio.wait_for(task, max(remaining, 0.01))
        for order in orders:
            if order["id"] == order_id and order["status"] == status and accept(order):
                return describe(order)
        task = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, url, message_hash, task)
