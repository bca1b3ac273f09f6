"""Drives real Bybit client libraries over Bybit v5's private WebSockets.

Usage: bybit_ws_clients.py SCENARIO BASE_URL WS_BASE API_KEY SECRET CA_FILE

BASE_URL is the REST API (https://host:port), WS_BASE where the WebSockets are
(wss://host:port: the private stream at WS_BASE/v5/private, order entry at
WS_BASE/v5/trade), CA_FILE the only CA trusted for both. Against the mock exchange,
API_KEY and SECRET are its key and secret; through keyward, the key is the keyward
token and the secret is anything (keyward signs). Only the URLs, the key and the
trusted CA differ from talking to Bybit itself: pybit builds its WebSocket URLs from
module constants (`unified_trading.PRIVATE_WSS`, `_websocket_trading.TRADE_WSS`),
which are pointed at WS_BASE, and websocket-client trusts the CA named by
WEBSOCKET_CLIENT_CA_BUNDLE; ccxt.pro is given its key, secret and CA file (`cafile`,
for REST and WebSocket alike), its REST URLs and its private and trade WebSocket URLs
pointed there.

SCENARIO is one of:
  pybit-orders   pybit: WebSocket(channel_type="private") subscribed to the order
                 stream, WebSocketTrading places a limit spot BTCUSDT buy
                 (order.create), its New event, order.cancel, its Cancelled event.
  pybit-refused  pybit: WebSocketTrading places a limit buy of KEYWARD_REFUSED_SYMBOL
                 (default ETHUSDT), expected to be refused: the answer pybit hands its
                 error callback (retCode, retMsg).
  ccxt-orders    ccxt.pro: watch_orders subscribed (topic order), a limit BTC/USDT buy
                 by create_order_ws, its open event, cancel_order_ws, its canceled
                 event.
  ccxt-refused   ccxt.pro: a limit buy of KEYWARD_REFUSED_CCXT_SYMBOL (default
                 ETH/USDT) by create_order_ws, expected to be refused: the exception's
                 classes and text.

Prints one JSON object: the result of each step, each order event the step waited for
(its order id, Bybit's orderStatus and the symbol), and for a refused order what the
library raised or handed back.
"""

import asyncio
import json
import os
import queue
import re
import sys
import threading
import time

from ccxt_watch import armed, confirmations, raised
from ccxt_watch import order_event as ccxt_order_event

# How long a step may wait for its answer or event, in seconds.
WAIT = float(os.environ.get("KEYWARD_WS_WAIT", "20"))


def pybit_sessions(ws_base, key, secret, ca, private=True):
    """pybit's private stream (if `private`) and order entry, pointed at WS_BASE with
    CA_FILE trusted. Each has logged in when this returns."""
    os.environ["WEBSOCKET_CLIENT_CA_BUNDLE"] = ca
    import pybit._websocket_trading
    import pybit.unified_trading
    from pybit.unified_trading import WebSocket, WebSocketTrading

    pybit.unified_trading.PRIVATE_WSS = ws_base + "/v5/private"
    pybit._websocket_trading.TRADE_WSS = ws_base + "/v5/trade"

    class InOrder:
        """pybit registers what a request's answer needs (the subscription, the
        order's callbacks) only after sending the request, so an answer quicker than
        that (an exchange on the same machine, or keyward refusing at once) finds
        nothing and is dropped or fails. Here a request and its registration are one
        step, which the handling of incoming messages waits for."""

        def __init__(self, **kwargs):
            self.in_order = threading.Lock()
            super().__init__(**kwargs)

        def _handle_incoming_message(self, message):
            with self.in_order:
                return super()._handle_incoming_message(message)

    class Private(InOrder, WebSocket):
        """pybit's private stream, which also says when a subscription is confirmed
        (pybit only logs it): an event placed before then may never reach it."""

        def __init__(self, **kwargs):
            self.confirmed = threading.Event()
            super().__init__(**kwargs)

        def subscribe(self, *args, **kwargs):
            with self.in_order:
                return super().subscribe(*args, **kwargs)

        def _process_subscription_message(self, message):
            super()._process_subscription_message(message)
            if message.get("success") is True:
                self.confirmed.set()

    class Trading(InOrder, WebSocketTrading):
        def _send_order_operation(self, *args, **kwargs):
            with self.in_order:
                return super()._send_order_operation(*args, **kwargs)

    stream = None
    if private:
        stream = Private(testnet=False, channel_type="private", api_key=key, api_secret=secret)
        logged_in(stream)
    trading = Trading(testnet=False, api_key=key, api_secret=secret)
    logged_in(trading)
    return stream, trading


def logged_in(session):
    """Waits until pybit has seen its auth answered (it sets `auth`)."""
    deadline = time.monotonic() + WAIT
    while not session.auth:
        if time.monotonic() > deadline:
            raise TimeoutError("pybit never authenticated to " + session.endpoint)
        time.sleep(0.01)


class Answers:
    """What pybit hands a call's callbacks, one queue per call."""

    def __init__(self):
        self.queue = queue.Queue()

    def ok(self, message):
        self.queue.put(("ok", message))

    def error(self, message):
        self.queue.put(("error", message))

    def next(self):
        return self.queue.get(timeout=WAIT)


def order_event(events, order_id, status):
    """The order event of `order_id` with `status` from pybit's order stream."""
    deadline = time.monotonic() + WAIT
    while True:
        message = events.get(timeout=max(deadline - time.monotonic(), 0.01))
        for order in message.get("data", []):
            if order.get("orderId") == order_id and order.get("orderStatus") == status:
                return {
                    "topic": message.get("topic"),
                    "orderId": order["orderId"],
                    "orderStatus": order["orderStatus"],
                    "symbol": order.get("symbol"),
                    "category": order.get("category"),
                }


def pybit_orders(base, ws_base, key, secret, ca):
    stream, trading = pybit_sessions(ws_base, key, secret, ca)
    events = queue.Queue()
    try:
        stream.order_stream(events.put)
        if not stream.confirmed.wait(WAIT):
            raise TimeoutError("the order stream subscription was never confirmed")
        out = {}
        placed = Answers()
        trading.place_order(
            placed.ok, placed.error, category="spot", symbol="BTCUSDT", side="Buy", orderType="Limit",
            qty="0.001", price="60000", timeInForce="GTC",
        )
        kind, answer = placed.next()
        out["placed"] = {"answer": kind, "retCode": answer.get("retCode"), "op": answer.get("op"),
                         "orderId": (answer.get("data") or {}).get("orderId")}
        order_id = out["placed"]["orderId"]
        out["new_event"] = order_event(events, order_id, "New")
        cancelled = Answers()
        trading.cancel_order(cancelled.ok, cancelled.error, category="spot", symbol="BTCUSDT", orderId=order_id)
        kind, answer = cancelled.next()
        out["cancel"] = {"answer": kind, "retCode": answer.get("retCode"), "op": answer.get("op"),
                         "orderId": (answer.get("data") or {}).get("orderId")}
        out["cancelled_event"] = order_event(events, order_id, "Cancelled")
        return out
    finally:
        stream.exit()
        trading.exit()


def pybit_refused(base, ws_base, key, secret, ca):
    _, trading = pybit_sessions(ws_base, key, secret, ca, private=False)
    symbol = os.environ.get("KEYWARD_REFUSED_SYMBOL", "ETHUSDT")
    try:
        answers = Answers()
        trading.place_order(
            answers.ok, answers.error, category="spot", symbol=symbol, side="Buy", orderType="Limit",
            qty="0.01", price="3000", timeInForce="GTC",
        )
        kind, answer = answers.next()
        return {"symbol": symbol, "refused": {"answer": kind, "retCode": answer.get("retCode"),
                                              "retMsg": answer.get("retMsg"), "op": answer.get("op")}}
    finally:
        trading.exit()


def ccxt_pro_exchange(base, ws_base, key, secret, ca):
    """What a user changes in a ccxt.pro bybit, and nothing else: every REST URL points
    at BASE_URL, the private stream and order entry at WS_BASE, and CA_FILE is the CA
    trusted (ccxt's async transport builds its SSL context from `cafile`)."""
    import ccxt.pro

    ex = ccxt.pro.bybit({"apiKey": key, "secret": secret, "cafile": ca})
    rest = ex.urls["api"]
    for name, url in rest.items():
        if isinstance(url, str):
            rest[name] = re.sub(r"^https://[^/]+", base, url)
    private = rest["ws"]["private"]
    private["unified"] = private["contract"] = ws_base + "/v5/private"
    private["trade"] = ws_base + "/v5/trade"
    return ex


def ccxt_event(order):
    info = order.get("info") or {}
    return {
        "id": order["id"],
        "status": order["status"],
        "orderStatus": info.get("orderStatus"),
        "symbol": order["symbol"],
    }


async def ccxt_orders(base, ws_base, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws_base, key, secret, ca)
    symbol = "BTC/USDT"
    url = ws_base + "/v5/private"
    # The private stream says `success` when it took the subscription.
    confirmed = confirmations(ex, lambda message: message.get("success") is True)
    try:
        await ex.load_markets()
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, url, "orders:" + symbol, watching)
        # ccxt counts a subscription as made once sent; the stream's answer is what
        # makes it so on the exchange: an order placed before could go unreported.
        await asyncio.wait_for(confirmed.wait(), WAIT)
        order = await ex.create_order_ws(symbol, "limit", "buy", 0.001, 60000)
        out = {"placed": {"id": order["id"], "status": order["status"]}}
        out["new_event"] = await ccxt_order_event(ex, url, symbol, "orders:" + symbol, watching, order["id"],
                                                  "open", ccxt_event)
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, url, "orders:" + symbol, watching)
        canceled = await ex.cancel_order_ws(order["id"], symbol)
        out["cancel"] = {"id": canceled["id"]}
        out["canceled_event"] = await ccxt_order_event(ex, url, symbol, "orders:" + symbol, watching, order["id"],
                                                       "canceled", ccxt_event)
        return out
    finally:
        await ex.close()


async def ccxt_refused(base, ws_base, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws_base, key, secret, ca)
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
    "pybit-orders": pybit_orders,
    "pybit-refused": pybit_refused,
    "ccxt-orders": ccxt_orders,
    "ccxt-refused": ccxt_refused,
}

if __name__ == "__main__":
    name, base, ws_base, key, secret, ca = sys.argv[1:7]
    result = SCENARIOS[name](base, ws_base, key, secret, ca)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    print(json.dumps(result, default=str))
