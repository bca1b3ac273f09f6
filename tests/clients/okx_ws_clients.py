"""Drives real OKX client libraries over OKX v5's private WebSocket.

Usage: okx_ws_clients.py SCENARIO BASE_URL WS_BASE API_KEY SECRET PASSPHRASE CA_FILE

BASE_URL is the REST API (https://host:port), WS_BASE where the WebSockets are
(wss://host:port: the private WebSocket at WS_BASE/ws/v5/private), CA_FILE the only
CA trusted for both. Against the mock exchange, API_KEY, SECRET and PASSPHRASE are
its own; through keyward, the key is the keyward token and the secret and passphrase
are anything (keyward logs in). Only the URLs, the key and the trusted CA differ from
talking to OKX itself: python-okx's WsPrivateAsync takes its URL, and its SSL context
(ssl.create_default_context) trusts the CA named by SSL_CERT_FILE; ccxt.pro is given
its key, secret, passphrase and CA file (`cafile`, for REST and WebSocket alike), its
REST host and its WebSocket URL (`urls['api']['ws']`, WS_BASE/ws/v5) pointed there.

SCENARIO is one of:
  python-okx-orders   python-okx: WsPrivateAsync logs in and subscribes to the orders
                      channel (SPOT), places a limit BTC-USDT buy (op order), its
                      live push, cancels it (op cancel-order), its canceled push.
  python-okx-refused  python-okx: a limit buy of KEYWARD_REFUSED_INST (default
                      ETH-USDT) over the WebSocket, expected to be refused: the answer
                      (code, msg, each order's sCode and sMsg).
  ccxt-orders         ccxt.pro: watch_orders subscribed (orders channel), a limit
                      BTC/USDT buy by create_order_ws, its open event, cancel_order_ws,
                      its canceled event.
  ccxt-refused        ccxt.pro: a limit buy of KEYWARD_REFUSED_CCXT_SYMBOL (default
                      ETH/USDT) by create_order_ws, expected to be refused: the
                      exception's classes and text.

Prints one JSON object: the result of each step, each order push the step waited for
(its order id, OKX's state and the instrument), and for a refused order what the
library raised or handed back.
"""

import asyncio
import json
import os
import sys

from ccxt_watch import armed, confirmations, order_event, raised

# How long a step may wait for its answer or event, in seconds.
WAIT = float(os.environ.get("KEYWARD_WS_WAIT", "20"))


class Frames:
    """What python-okx hands its callback (each frame's text), parsed, in order."""

    def __init__(self):
        self.queue = asyncio.Queue()

    def callback(self, message):
        self.queue.put_nowait(message if message == "pong" else json.loads(message))

    async def first(self, wanted):
        """The first frame from now on that `wanted` accepts; others are dropped."""
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            frame = await asyncio.wait_for(self.queue.get(), max(remaining, 0.01))
            if isinstance(frame, dict) and wanted(frame):
                return frame


def answer_of(frame):
    data = frame.get("data") or [{}]
    return {
        "op": frame.get("op"),
        "code": frame.get("code"),
        "msg": frame.get("msg"),
        "orders": [{"ordId": d.get("ordId"), "sCode": d.get("sCode"), "sMsg": d.get("sMsg")} for d in data],
    }


def push_of(frame, order_id, state):
    for order in frame.get("data", []):
        if frame.get("arg", {}).get("channel") == "orders" and order.get("ordId") == order_id and order.get("state") == state:
            return {"channel": "orders", "instType": frame["arg"].get("instType"), "ordId": order["ordId"],
                    "state": order["state"], "instId": order.get("instId")}
    return None


async def python_okx_session(ws_base, key, secret, passphrase, ca, frames):
    """python-okx's private WebSocket, logged in and subscribed to SPOT orders."""
    os.environ["SSL_CERT_FILE"] = ca  # read when WsPrivateAsync builds its SSL context
    from okx.websocket.WsPrivateAsync import WsPrivateAsync

    ws = WsPrivateAsync(apiKey=key, passphrase=passphrase, secretKey=secret, url=ws_base + "/ws/v5/private")
    await ws.start()
    if ws.websocket is None:
        raise RuntimeError("python-okx could not connect to " + ws.url)
    # subscribe() logs in, waits five seconds and subscribes without waiting for
    # either answer: both come back before anything sent after.
    await ws.subscribe([{"channel": "orders", "instType": "SPOT"}], frames.callback)
    login = await frames.first(lambda f: f.get("event") in ("login", "error"))
    subscribed = await frames.first(lambda f: f.get("event") in ("subscribe", "error"))
    return ws, {"login": {"event": login.get("event"), "code": login.get("code")},
                "subscribed": {"event": subscribed.get("event"), "arg": subscribed.get("arg")}}


async def python_okx_orders(base, ws_base, key, secret, passphrase, ca):
    frames = Frames()
    ws, out = await python_okx_session(ws_base, key, secret, passphrase, ca, frames)
    try:
        await ws.place_order([{"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
                               "px": "60000", "sz": "0.001", "clOrdId": "pyokxws1"}], id="place1")
        out["placed"] = answer_of(await frames.first(lambda f: f.get("id") == "place1"))
        order_id = out["placed"]["orders"][0]["ordId"]
        out["live_push"] = push_of(await frames.first(lambda f: push_of(f, order_id, "live")), order_id, "live")
        await ws.cancel_order([{"instId": "BTC-USDT", "ordId": order_id}], id="cancel1")
        out["cancel"] = answer_of(await frames.first(lambda f: f.get("id") == "cancel1"))
        out["canceled_push"] = push_of(await frames.first(lambda f: push_of(f, order_id, "canceled")), order_id,
                                       "canceled")
        return out
    finally:
        await ws.stop()


async def python_okx_refused(base, ws_base, key, secret, passphrase, ca):
    frames = Frames()
    inst = os.environ.get("KEYWARD_REFUSED_INST", "ETH-USDT")
    ws, out = await python_okx_session(ws_base, key, secret, passphrase, ca, frames)
    try:
        await ws.place_order([{"instId": inst, "tdMode": "cash", "side": "buy", "ordType": "limit",
                               "px": "3000", "sz": "0.01"}], id="refused1")
        out["instId"] = inst
        # python-okx never raises on OKX's answers: it hands them to the callback.
        out["refused"] = answer_of(await frames.first(lambda f: f.get("id") == "refused1"))
        return out
    finally:
        await ws.stop()


def ccxt_pro_exchange(base, ws_base, key, secret, passphrase, ca):
    """What a user changes in a ccxt.pro okx, and nothing else: its REST host is
    BASE_URL's, its WebSocket URL WS_BASE/ws/v5 (ccxt adds /private), and CA_FILE is
    the CA trusted (ccxt's async transport builds its SSL context from `cafile`)."""
    import ccxt.pro

    ex = ccxt.pro.okx({"apiKey": key, "secret": secret, "password": passphrase, "cafile": ca})
    ex.hostname = base.removeprefix("https://")
    ex.urls["api"]["ws"] = ws_base + "/ws/v5"
    return ex


def described(order):
    """What an order event says, with OKX's own state."""
    info = order.get("info") or {}
    return {"id": order["id"], "status": order["status"], "state": info.get("state"), "symbol": order["symbol"]}


async def ccxt_orders(base, ws_base, key, secret, passphrase, ca):
    ex = ccxt_pro_exchange(base, ws_base, key, secret, passphrase, ca)
    symbol = "BTC/USDT"
    url = ws_base + "/ws/v5/private"
    message_hash = "orders:BTC-USDT"
    confirmed = confirmations(ex)
    try:
        await ex.load_markets()
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, url, message_hash, watching)
        # ccxt counts a subscription as made once sent; the answer is what makes it so
        # on the exchange: an order placed before could go unreported.
        await asyncio.wait_for(confirmed.wait(), WAIT)
        order = await ex.create_order_ws(symbol, "limit", "buy", 0.001, 60000)
        out = {"placed": {"id": order["id"], "status": order["status"]}}
        out["new_event"] = await order_event(ex, url, symbol, message_hash, watching, order["id"], "open",
                                             described)
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, url, message_hash, watching)
        canceled = await ex.cancel_order_ws(order["id"], symbol)
        out["cancel"] = {"id": canceled["id"]}
        out["canceled_event"] = await order_event(ex, url, symbol, message_hash, watching, order["id"],
                                                  "canceled", described)
        return out
    finally:
        await ex.close()


async def ccxt_refused(base, ws_base, key, secret, passphrase, ca):
    ex = ccxt_pro_exchange(base, ws_base, key, secret, passphrase, ca)
    symbol = os.environ.get("KEYWARD_REFUSED_CCXT_SYMBOL", "ETH/USDT")
    try:
        await ex.load_markets()
        out = {"symbol": symbol}
        try:
            await ex.create_order_ws(symbol, "limit", "buy", 0.01, 3000)
            out["refused"] = {"raised": None}
        except Exception as error:  # the point is to see what the library raises
            out["refused"] = raised(error)
        return out
    finally:
        await ex.close()


SCENARIOS = {
    "python-okx-orders": python_okx_orders,
    "python-okx-refused": python_okx_refused,
    "ccxt-orders": ccxt_orders,
    "ccxt-refused": ccxt_refused,
}

if __name__ == "__main__":
    name, base, ws_base, key, secret, passphrase, ca = sys.argv[1:8]
    print(json.dumps(asyncio.run(SCENARIOS[name](base, ws_base, key, secret, passphrase, ca)), default=str))
