"""Drives real Coinbase Advanced Trade client libraries over the user-order-data
WebSocket, orders placed and cancelled over REST.

Usage: coinbase_ws_clients.py SCENARIO BASE_URL WS_URL KEY_NAME PRIVATE_KEY_PEM_FILE CA_FILE

BASE_URL is the REST API (https://host:port), WS_URL the WebSocket
(wss://host:port, Coinbase's wss://advanced-trade-ws-user.coinbase.com), KEY_NAME a
CDP key name (organizations/.../apiKeys/...) and PRIVATE_KEY_PEM_FILE a file holding
its EC P-256 private key as PEM; each library signs its own JWTs with them (the SDK's
`iss` "cdp", ccxt's "coinbase-cloud" with its audience), a WebSocket JWT naming no
request. CA_FILE is the CA trusted for REST and, where the library checks one, the
WebSocket. Only the URLs, the key and the trusted CA differ from talking to Coinbase
itself:
  - coinbase-advanced-py: RESTClient takes BASE_URL's host:port as `base_url` (it
    always prepends https://) and trusts the CA named by REQUESTS_CA_BUNDLE, set here
    from CA_FILE; WSUserClient takes WS_URL as `base_url`. Its WebSocket is opened
    with a bare ssl.SSLContext(), which checks no certificate at all, so no CA
    setting reaches it (SSL_CERT_FILE is set anyway, for a version that does).
  - ccxt.pro: its REST URL (`urls['api']['rest']`) is BASE_URL, its WebSocket URL
    (`urls['api']['ws']`) WS_URL, and CA_FILE is given as `cafile`, from which its
    async transport builds one SSL context for REST and WebSocket alike.

SCENARIO is one of:
  sdk-orders   coinbase-advanced-py: WSUserClient subscribes to the user channel for
               BTC-USD, its snapshot and the subscriptions answer; RESTClient places a
               limit BTC-USD buy (limit_order_gtc), its OPEN update on the WebSocket,
               cancels it (cancel_orders), its CANCELLED update.
  ccxt-orders  ccxt.pro: watch_orders('BTC/USD') subscribes to the user channel;
               create_order (REST) places a limit buy, its open event, cancel_order
               (REST), its canceled event.

Prints one JSON object: the result of each step, each order event the step waited
for (its order id, Coinbase's status, the product), and every error message the
WebSocket sent.
"""

import asyncio
import json
import os
import re
import sys

from ccxt_watch import armed, confirmations, order_event

# How long a step may wait for its answer or event, in seconds.
WAIT = float(os.environ.get("KEYWARD_WS_WAIT", "20"))


class Frames:
    """What the SDK hands its on_message callback (each frame's text), parsed, in
    order; error messages kept aside as well."""

    def __init__(self):
        self.queue = asyncio.Queue()
        self.kept = []
        self.errors = []

    def callback(self, message):
        frame = json.loads(message)
        if frame.get("type") == "error":
            self.errors.append(frame.get("message"))
        self.queue.put_nowait(frame)

    async def first(self, wanted):
        """The first frame that `wanted` accepts, passed-over ones kept in order."""
        for index, frame in enumerate(self.kept):
            if wanted(frame):
                return self.kept.pop(index)
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                frame = await asyncio.wait_for(self.queue.get(), max(remaining, 0.01))
            except asyncio.TimeoutError:
                raise TimeoutError(f"no such frame; errors {self.errors}, kept {self.kept}") from None
            if wanted(frame):
                return frame
            self.kept.append(frame)


def user_event(frame, kind):
    """The `kind` (snapshot or update) event of a user-channel message, or None."""
    if frame.get("channel") != "user":
        return None
    for event in frame.get("events", []):
        if event.get("type") == kind:
            return event
    return None


def order_in(frame, order_id, status):
    """The user-channel order `order_id` in `status` a message carries, or None."""
    event = user_event(frame, "update")
    for order in (event or {}).get("orders", []):
        if order.get("order_id") == order_id and order.get("status") == status:
            return {"type": "update", "order_id": order["order_id"], "status": order["status"],
                    "product_id": order.get("product_id"), "order_side": order.get("order_side"),
                    "order_type": order.get("order_type"), "limit_price": order.get("limit_price"),
                    "leaves_quantity": order.get("leaves_quantity"),
                    "sequence_num": frame.get("sequence_num")}
    return None


def field(response, name):
    """The SDK returns response objects that also index like dicts."""
    try:
        return response[name]
    except (KeyError, TypeError):
        return getattr(response, name)


async def sdk_orders(base, ws_url, key_name, pem, ca):
    os.environ["REQUESTS_CA_BUNDLE"] = ca  # read by requests, under RESTClient
    os.environ["SSL_CERT_FILE"] = ca
    from coinbase.rest import RESTClient
    from coinbase.websocket import WSUserClient

    frames = Frames()
    rest = RESTClient(api_key=key_name, api_secret=pem, base_url=base.removeprefix("https://"))
    ws = WSUserClient(api_key=key_name, api_secret=pem, base_url=ws_url, on_message=frames.callback,
                      retry=False)
    await ws.open_async()
    try:
        await ws.user_async(["BTC-USD"])
        snapshot = await frames.first(lambda f: user_event(f, "snapshot") is not None)
        subscribed = await frames.first(lambda f: f.get("channel") == "subscriptions")
        out = {
            "snapshot": {"orders": len(user_event(snapshot, "snapshot").get("orders", [])),
                         "sequence_num": snapshot.get("sequence_num")},
            "subscribed": {"subscriptions": subscribed["events"][0]["subscriptions"],
                           "sequence_num": subscribed.get("sequence_num")},
        }
        order = await asyncio.to_thread(
            rest.limit_order_gtc, client_order_id="sdkws1", product_id="BTC-USD", side="BUY",
            base_size="0.001", limit_price="60000.00",
        )
        order_id = field(order, "success_response")["order_id"]
        out["placed"] = {"success": field(order, "success"), "order_id": order_id}
        out["open_update"] = order_in(await frames.first(lambda f: order_in(f, order_id, "OPEN")), order_id,
                                      "OPEN")
        cancelled = await asyncio.to_thread(rest.cancel_orders, order_ids=[order_id])
        result = field(cancelled, "results")[0]
        out["cancel"] = {"success": result["success"], "order_id": result["order_id"]}
        out["cancelled_update"] = order_in(
            await frames.first(lambda f: order_in(f, order_id, "CANCELLED")), order_id, "CANCELLED")
        out["errors"] = frames.errors
        return out
    finally:
        await ws.close_async()


def ccxt_pro_exchange(base, ws_url, key_name, pem, ca):
    """What a user changes in a ccxt.pro coinbase, and nothing else: its key name and
    private key, its REST and WebSocket URLs, and the CA file it trusts."""
    import ccxt.pro

    ex = ccxt.pro.coinbase({"apiKey": key_name, "secret": pem, "cafile": ca})
    ex.urls["api"] = {
        k: re.sub(r"^https://[^/]+", base, v) if isinstance(v, str) else v
        for k, v in ex.urls["api"].items()
    }
    ex.urls["api"]["ws"] = ws_url
    return ex


def described(order):
    """What an order event says, with Coinbase's own status."""
    info = order.get("info") or {}
    return {"id": order["id"], "status": order["status"], "coinbase_status": info.get("status"),
            "symbol": order["symbol"], "side": order["side"], "price": order["price"]}


async def ccxt_orders(base, ws_url, key_name, pem, ca):
    ex = ccxt_pro_exchange(base, ws_url, key_name, pem, ca)
    symbol = "BTC/USD"
    message_hash = "user::" + symbol
    confirmed = confirmations(ex)
    try:
        await ex.load_markets()
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, ws_url, message_hash, watching)
        # ccxt counts a subscription as made once sent; the answer is what makes it so
        # on the exchange: an order placed before could go unreported.
        await asyncio.wait_for(confirmed.wait(), WAIT)
        order = await ex.create_order(symbol, "limit", "buy", 0.001, 60000)
        out = {"placed": {"id": order["id"]}}
        out["open_event"] = await order_event(ex, ws_url, symbol, message_hash, watching, order["id"],
                                              "open", described)
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, ws_url, message_hash, watching)
        canceled = await ex.cancel_order(order["id"], symbol)
        out["cancel"] = {"id": canceled["id"]}
        out["canceled_event"] = await order_event(ex, ws_url, symbol, message_hash, watching, order["id"],
                                                  "canceled", described)
        return out
    finally:
        await ex.close()


SCENARIOS = {
    "sdk-orders": sdk_orders,
    "ccxt-orders": ccxt_orders,
}

if __name__ == "__main__":
    name, base, ws_url, key_name, pem_file, ca = sys.argv[1:7]
    with open(pem_file) as f:
        pem = f.read()
    print(json.dumps(asyncio.run(SCENARIOS[name](base, ws_url, key_name, pem, ca)), default=str))
