"""Drives ccxt.pro's kraken over Kraken spot's WebSocket v2 (the authenticated one).

Usage: kraken_ws_clients.py SCENARIO BASE_URL WS_BASE API_KEY SECRET CA_FILE

BASE_URL is the REST API (https://host:port), WS_BASE where the WebSockets are
(wss://host:port: the authenticated v2 WebSocket at WS_BASE/v2), CA_FILE the only CA
trusted for both. Against the mock exchange, API_KEY and SECRET are its own; through
keyward, the key is the keyward token and the secret any base64 (ccxt decodes it to
sign; keyward signs again). Only the URLs, the key and the trusted CA differ from
talking to Kraken itself: ccxt.pro is given its key, secret and CA file (`cafile`, for
REST and WebSocket alike), its REST URLs (`urls['api']['public']` and `['private']`,
where it fetches its WebSocket token with GetWebSocketsToken) and its WebSocket URLs
(`urls['api']['ws']`: `privateV2`, where order entry, executions and balances are,
WS_BASE/v2; the others, which these scenarios never open, under WS_BASE too) pointed
there.

SCENARIO is one of:
  ccxt-orders    watch_orders subscribed (executions), a limit BTC/USD buy by
                 create_order_ws (add_order), its open event, cancel_order_ws
                 (cancel_order), its canceled event.
  ccxt-balance   watch_balance (balances): the snapshot's totals.
  ccxt-edit      watch_orders subscribed, a limit BTC/USD buy, edit_order_ws
                 (amend_order) to a new quantity and price, its amended event, then
                 the order cancelled.
  ccxt-refused   a limit buy of KEYWARD_REFUSED_CCXT_SYMBOL (default ETH/USD) by
                 create_order_ws, which a caller may expect refused: what the library
                 raised, or the order it placed (cancelled again at once).

Prints one JSON object: the result of each step, each order event the step waited
for as ccxt gives it (its id, ccxt's status, Kraken's exec_type, ccxt's symbol),
every execution report Kraken sent about the order (exec_type, order_status and the
symbol it named, if any), and for a refused order what the library raised.
"""

import asyncio
import json
import os
import sys

from ccxt_watch import WAIT, armed, confirmations, order_event, raised, watch_messages

SYMBOL = "BTC/USD"


def ccxt_pro_exchange(base, ws_base, key, secret, ca):
    """What a user changes in a ccxt.pro kraken, and nothing else: its REST URLs are
    BASE_URL, its WebSocket URLs under WS_BASE, and CA_FILE is the CA trusted
    (ccxt's async transport builds its SSL context from `cafile`)."""
    import ccxt.pro

    ex = ccxt.pro.kraken({"apiKey": key, "secret": secret, "cafile": ca})
    ex.urls["api"]["public"] = base
    ex.urls["api"]["private"] = base
    ex.urls["api"]["ws"] = {
        # v1's hosts have no path, v2's /v2: the same paths on WS_BASE. ccxt keys
        # its token by the `private` URL and opens only `privateV2` here.
        "public": ws_base,
        "private": ws_base,
        "publicV2": ws_base + "/v2",
        "privateV2": ws_base + "/v2",
    }
    return ex


class Executions:
    """Every execution report Kraken sends, as it sends it (ccxt keeps none of the
    fields it does not map, such as whether an event named the symbol)."""

    def __init__(self, ex):
        self.reports = []
        watch_messages(ex, self.seen)

    def seen(self, message):
        if isinstance(message, dict) and message.get("channel") == "executions":
            self.reports.extend(message.get("data") or [])

    def of(self, order_id):
        return [{"exec_type": r.get("exec_type"), "order_status": r.get("order_status"),
                 "symbol": r.get("symbol")} for r in self.reports if r.get("order_id") == order_id]

    async def until(self, order_id, exec_type):
        """Waits for Kraken's report of `exec_type` on `order_id`."""
        deadline = asyncio.get_running_loop().time() + WAIT
        while not any(r["exec_type"] == exec_type for r in self.of(order_id)):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no " + exec_type + " report of " + order_id)
            await asyncio.sleep(0.01)


def described(order):
    """What an order event says, with Kraken's own exec_type."""
    info = order.get("info") or {}
    return {"id": order["id"], "status": order["status"], "exec_type": info.get("exec_type"),
            "symbol": order["symbol"], "amount": order.get("amount"), "price": order.get("price")}


async def subscribed_orders(ex, ws_url):
    """watch_orders armed on a confirmed executions subscription: the watch call."""
    confirmed = confirmations(
        ex,
        lambda m: m.get("method") == "subscribe" and m.get("success") is True
        and (m.get("result") or {}).get("channel") == "executions",
        "handle_message",
    )
    # Without a symbol: Kraken names none in most events (new, amended, canceled),
    # and ccxt delivers those only to a watch of every symbol.
    watching = asyncio.ensure_future(ex.watch_orders())
    await armed(ex, ws_url, "orders", watching)
    # ccxt counts a subscription as made once sent; the answer is what makes it so on
    # the exchange: an order placed before could go unreported.
    await asyncio.wait_for(confirmed.wait(), WAIT)
    return watching


async def next_watch(ex, ws_url):
    watching = asyncio.ensure_future(ex.watch_orders())
    await armed(ex, ws_url, "orders", watching)
    return watching


async def live_order(ex, ws_url, executions):
    """watch_orders on a confirmed subscription and a limit BTC/USD buy by
    create_order_ws, followed until Kraken reports it live (`new`): the order, its
    first event as ccxt gives it, and a watch call armed for what comes next."""
    await ex.load_markets()
    watching = await subscribed_orders(ex, ws_url)
    order = await ex.create_order_ws(SYMBOL, "limit", "buy", 0.001, 60000)
    event = await order_event(ex, ws_url, None, "orders", watching, order["id"], "open", described)
    await executions.until(order["id"], "new")
    return order, event, await next_watch(ex, ws_url)


async def ccxt_orders(ex, ws_url):
    executions = Executions(ex)
    order, event, watching = await live_order(ex, ws_url, executions)
    out = {"placed": {"id": order["id"], "status": order["status"]}, "new_event": event}
    canceled = await ex.cancel_order_ws(order["id"])
    out["cancel"] = {"id": (canceled.get("result") or {}).get("order_id"), "success": canceled.get("success")}
    out["canceled_event"] = await order_event(ex, ws_url, None, "orders", watching, order["id"], "canceled",
                                              described)
    out["reports"] = executions.of(order["id"])
    return out


async def ccxt_balance(ex, ws_url):
    balance = await asyncio.wait_for(ex.watch_balance(), WAIT)
    return {"balance": {code: balance[code]["total"] for code in ("USD", "BTC") if code in balance}}


async def ccxt_edit(ex, ws_url):
    executions = Executions(ex)
    order, _, watching = await live_order(ex, ws_url, executions)
    out = {"placed": {"id": order["id"]}}
    edited = await ex.edit_order_ws(order["id"], SYMBOL, "limit", "buy", 0.002, 59000)
    out["edit"] = {"id": edited["id"]}
    out["amended_event"] = await order_event(
        ex, ws_url, None, "orders", watching, order["id"], "open", described,
        lambda o: (o.get("info") or {}).get("exec_type") == "amended")
    await ex.cancel_order_ws(order["id"])
    await executions.until(order["id"], "canceled")
    out["reports"] = executions.of(order["id"])
    return out


async def ccxt_refused(ex, ws_url):
    symbol = os.environ.get("KEYWARD_REFUSED_CCXT_SYMBOL", "ETH/USD")
    await ex.load_markets()
    out = {"symbol": symbol}
    try:
        order = await ex.create_order_ws(symbol, "limit", "buy", 0.01, 3000)
    except Exception as error:  # the point is to see what the library raises
        out["refused"] = raised(error)
        return out
    out["refused"] = {"raised": None, "id": order["id"]}
    # Placed after all: taken off the book again, so the account is as it was.
    canceled = await ex.cancel_order_ws(order["id"])
    out["cancel"] = {"success": canceled.get("success")}
    return out


SCENARIOS = {
    "ccxt-orders": ccxt_orders,
    "ccxt-balance": ccxt_balance,
    "ccxt-edit": ccxt_edit,
    "ccxt-refused": ccxt_refused,
}


async def run(name, base, ws_base, key, secret, ca):
    """Scenario `name` on a ccxt.pro kraken pointed at the mock or keyward, closed
    after."""
    ex = ccxt_pro_exchange(base, ws_base, key, secret, ca)
    try:
        return await SCENARIOS[name](ex, ws_base + "/v2")
    finally:
        await ex.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(*sys.argv[1:7])), default=str))
