"""Drives real Binance client libraries over Binance's spot WebSocket API.

Usage: binance_ws_clients.py SCENARIO BASE_URL WS_URL API_KEY SECRET CA_FILE

BASE_URL is the REST API (https://host:port), WS_URL the WebSocket API
(wss://host:port/ws-api/v3), CA_FILE the only CA trusted for both. Against the mock
exchange, API_KEY and SECRET are its key and secret; through keyward, the key is the
keyward token and the secret is anything (keyward signs). Only the URLs, the key and
the trusted CA differ from talking to Binance itself: ccxt is given its API key,
secret and CA file (`cafile`), and its REST and WebSocket API URLs pointed there;
binance-sdk-spot its key, secret, `stream_url` and an SSL context for the CA.

SCENARIO is one of:
  ccxt-orders   ccxt.pro: watch_orders subscribed (userDataStream.subscribe.signature),
                a limit BTC/USDT buy by create_order_ws, its NEW event through
                watch_orders, cancel_order_ws, its CANCELED event.
  ccxt-balance  ccxt.pro: the REST balance, watch_balance subscribed, a market BTC/USDT
                buy by create_order_ws, the balance update after it fills.
  ccxt-refused  ccxt.pro: a limit buy of KEYWARD_REFUSED_SYMBOL (default ETH/USDT) by
                create_order_ws, expected to be refused: the exception's classes and
                text.
  ccxt-ticker   ccxt.pro without a key: watch_ticker of BTC/USDT on the public
                market-data stream, WS_URL being its base (wss://host:port/ws).
  sdk-orders    binance-sdk-spot's WebSocket API: userDataStream.subscribe.signature,
                order.place of a limit BTCUSDT buy, its NEW event, order.cancel, its
                CANCELED event.

Prints one JSON object: the result of each step, each user-data event the step waited
for (its status and Binance's execution type `x` and status `X`), and for a refused
call the exception's classes and message.
"""

import asyncio
import json
import os
import re
import ssl
import sys

import ccxt_watch

# How long a step may wait for its answer or event, in seconds.
WAIT = float(os.environ.get("KEYWARD_WS_WAIT", "20"))


async def refusal(call):
    try:
        await call()
    except Exception as error:  # the point is to see what the library raises
        return ccxt_watch.raised(error)
    return {"raised": None}


def ccxt_pro_exchange(base, ws, key, secret, ca):
    """What a user changes in a ccxt.pro exchange, and nothing else: every REST URL
    points at BASE_URL, the spot WebSocket API at WS_URL, and CA_FILE is the CA
    trusted (ccxt's async transport builds its SSL context from `cafile`, for REST and
    WebSocket alike)."""
    import ccxt.pro

    ex = ccxt.pro.binance({"apiKey": key, "secret": secret, "cafile": ca})
    api = ex.urls["api"]
    for name, url in api.items():
        if isinstance(url, str):
            api[name] = re.sub(r"^https://[^/]+", base, url)
    api["ws"]["ws-api"]["spot"] = ws
    return ex


async def armed(ex, message_hash, task):
    """[`ccxt_watch.armed`] on the spot WebSocket API's connection."""
    await ccxt_watch.armed(ex, ex.urls["api"]["ws"]["ws-api"]["spot"], message_hash, task)


def event_of(order):
    info = order.get("info") or {}
    return {
        "id": order["id"],
        "status": order["status"],
        "x": info.get("x"),
        "X": info.get("X"),
        "symbol": order["symbol"],
    }


async def order_event(ex, symbol, task, order_id, status):
    """The event of `order_id` with `status`, from `task` and the watch calls after
    it."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        orders = await asyncio.wait_for(task, max(remaining, 0.01))
        for order in orders:
            if order["id"] == order_id and order["status"] == status:
                return event_of(order)
        task = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, "orders:" + symbol, task)


async def ccxt_orders(base, ws, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws, key, secret, ca)
    symbol = "BTC/USDT"
    try:
        await ex.load_markets()
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, "orders:" + symbol, watching)
        order = await ex.create_order_ws(symbol, "limit", "buy", 0.001, 60000)
        out = {"placed": {"id": order["id"], "status": order["status"]}}
        out["new_event"] = await order_event(ex, symbol, watching, order["id"], "open")
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        await armed(ex, "orders:" + symbol, watching)
        canceled = await ex.cancel_order_ws(order["id"], symbol)
        out["cancel_status"] = canceled["status"]
        out["canceled_event"] = await order_event(ex, symbol, watching, order["id"], "canceled")
        return out
    finally:
        await ex.close()


async def ccxt_balance(base, ws, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws, key, secret, ca)
    try:
        await ex.load_markets()
        before = await ex.fetch_balance()
        out = {"before": {c: before[c]["free"] for c in ("BTC", "USDT")}}
        watching = asyncio.ensure_future(ex.watch_balance())
        await armed(ex, "spot:balance", watching)
        order = await ex.create_order_ws("BTC/USDT", "market", "buy", 0.001)
        out["order"] = {"id": order["id"], "status": order["status"], "filled": order["filled"]}
        after = await asyncio.wait_for(watching, WAIT)
        out["after"] = {c: after[c]["free"] for c in ("BTC", "USDT")}
        out["event"] = (after.get("info") or {}).get("e")
        return out
    finally:
        await ex.close()


async def ccxt_ticker(base, ws, key, secret, ca):
    # Market data needs no key: the exchange is made without one, as a client
    # that only watches prices is.
    ex = ccxt_pro_exchange(base, ws, None, None, ca)
    ex.urls["api"]["ws"]["spot"] = ws
    # ccxt tells a spot ticker from a futures one by `/stream` in the URL (Binance's
    # host name); on any other host a spot client loads spot markets only.
    ex.options["fetchMarkets"]["types"] = ["spot"]
    try:
        await ex.load_markets()
        ticker = await asyncio.wait_for(ex.watch_ticker("BTC/USDT"), WAIT)
        return {"symbol": ticker["symbol"], "last": ticker["last"], "event": (ticker.get("info") or {}).get("e")}
    finally:
        await ex.close()


async def ccxt_refused(base, ws, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws, key, secret, ca)
    symbol = os.environ.get("KEYWARD_REFUSED_SYMBOL", "ETH/USDT")
    try:
        await ex.load_markets()
        out = {"symbol": symbol}
        out["refused"] = await refusal(lambda: ex.create_order_ws(symbol, "limit", "buy", 0.01, 3000))
        return out
    finally:
        await ex.close()


async def sdk_orders(base, ws, key, secret, ca):
    from binance_common.configuration import ConfigurationWebSocketAPI
    from binance_sdk_spot.spot import Spot

    config = ConfigurationWebSocketAPI(
        api_key=key,
        api_secret=secret,
        stream_url=ws,
        https_agent=ssl.create_default_context(cafile=ca),
        timeout=int(WAIT * 1000),
    )
    connection = await Spot(config_ws_api=config).websocket_api.create_connection()
    if connection is None:
        raise RuntimeError("binance-sdk-spot could not connect to " + ws)
    events = asyncio.Queue()

    def received(data):
        # The SDK hands each event over parsed into its model (ExecutionReport,
        # OutboundAccountPosition, ...), fields under Binance's names.
        event = getattr(data, "actual_instance", data)
        fields = event.model_dump(by_alias=True) if hasattr(event, "model_dump") else dict(event)
        events.put_nowait((type(event).__name__, fields))

    async def execution(order_id, execution_type):
        while True:
            model, event = await asyncio.wait_for(events.get(), WAIT)
            if model == "ExecutionReport" and event.get("i") == order_id and event.get("x") == execution_type:
                return {"model": model, "i": event["i"], "x": event["x"], "X": event["X"], "s": event["s"]}

    try:
        subscribed = await connection.user_data_stream_subscribe_signature()
        out = {"subscription_id": subscribed.response.data().result.subscription_id}
        subscribed.stream.on("message", received)
        placed = await connection.order_place(
            symbol="BTCUSDT", side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.001, price=60000.0
        )
        placed = placed.data().result
        out["placed"] = {"id": placed.order_id, "status": placed.status}
        out["new_event"] = await execution(placed.order_id, "NEW")
        canceled = await connection.order_cancel(symbol="BTCUSDT", order_id=placed.order_id)
        out["cancel_status"] = canceled.data().result.status
        out["canceled_event"] = await execution(placed.order_id, "CANCELED")
        return out
    finally:
        await connection.close_connection(close_session=True)


SCENARIOS = {
    "ccxt-orders": ccxt_orders,
    "ccxt-balance": ccxt_balance,
    "ccxt-refused": ccxt_refused,
    "ccxt-ticker": ccxt_ticker,
    "sdk-orders": sdk_orders,
}

if __name__ == "__main__":
    name, base, ws, key, secret, ca = sys.argv[1:7]
    print(json.dumps(asyncio.run(SCENARIOS[name](base, ws, key, secret, ca)), default=str))
