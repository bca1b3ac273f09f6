"""Drives ccxt.pro's binanceusdm over Binance USDⓈ-M's listenKey user data stream.

Usage: binanceusdm_stream_clients.py SCENARIO REST_BASE WS_BASE KEY SECRET CA_FILE

REST_BASE is where the REST API is (https://host:port), WS_BASE where the WebSockets
are (wss://host:port), CA_FILE the only CA trusted for both. Against the mock
exchange, KEY and SECRET are its key and secret; through keyward, the key is the
keyward token and the secret is anything (keyward signs). Only the URLs, the key and
the trusted CA differ from talking to Binance itself: ccxt is given its API key,
secret and CA file (`cafile`); every REST URL is pointed at REST_BASE and every
WebSocket URL at WS_BASE, each keeping its path (the linear user data stream is then
WS_BASE/private/ws?listenKey=..., as ccxt builds it from `urls.api.ws.linear`).

SCENARIO is one of:
  ccxt-orders   watch_orders('BTC/USDT:USDT') armed (ccxt POSTs a listenKey and
                connects with it), a limit buy by REST create_order, its open event,
                cancel_order (REST), its canceled event, then ccxt's own keep-alive of
                the listenKey (keep_alive_listen_key: a PUT).
  ccxt-balance  watch_balance armed, a market buy of BTC/USDT:USDT by REST
                create_order (it fills at once), the balance from the ACCOUNT_UPDATE
                that follows.
  ccxt-ticker   without a key: watch_ticker('BTC/USDT:USDT') on the market-data
                stream ccxt derives from `urls.api.ws.linear` (/market/ws/N).

Prints one JSON object: the listenKey ccxt holds, the listenKey requests it made
(method and path, in order), the result of each step and each event waited for (its
id, status and symbol, Binance's execution type `x` and status `X`).
"""

import asyncio
import json
import os
import re
import sys
from urllib.parse import urlsplit

# How long a step may wait for its answer or event, in seconds.
WAIT = float(os.environ.get("KEYWARD_WS_WAIT", "20"))

SYMBOL = "BTC/USDT:USDT"


def pointed(urls, base, scheme):
    """`urls` (ccxt's nested URL table) with every `scheme` URL's host replaced by
    `base`, paths kept."""
    if isinstance(urls, dict):
        return {k: pointed(v, base, scheme) for k, v in urls.items()}
    if isinstance(urls, str):
        return re.sub(r"^" + scheme + r"://[^/]+", base, urls)
    return urls


def ccxt_pro_exchange(base, ws, key, secret, ca):
    """What a user changes in a ccxt.pro exchange, and nothing else: every REST URL at
    REST_BASE, every WebSocket URL at WS_BASE, CA_FILE the CA trusted (ccxt's async
    transport builds its SSL context from `cafile`, for REST and WebSocket alike).
    The listenKey requests ccxt makes are noted as they go out."""
    import ccxt.pro

    ex = ccxt.pro.binanceusdm({"apiKey": key, "secret": secret, "cafile": ca})
    api = ex.urls["api"]
    for name, url in list(api.items()):
        if name == "ws":
            api[name] = pointed(url, ws, "wss")
        else:
            api[name] = pointed(url, base, "https")
    ex.listen_key_calls = []
    fetch = ex.fetch

    async def noted(url, method="GET", headers=None, body=None):
        path = urlsplit(url).path
        if path.endswith("/listenKey"):
            ex.listen_key_calls.append(method + " " + path)
        return await fetch(url, method, headers, body)

    ex.fetch = noted
    return ex


def stream_url(ex):
    """The user data stream's URL ccxt connects to, once it holds a listenKey."""
    listen_key = (ex.options.get("linear") or {}).get("listenKey")
    return None if listen_key is None else ex.get_private_ws_url("linear", listen_key)


async def armed(ex, message_hash, task):
    """Waits until `task` (a ccxt watch call) is waiting for `message_hash`: its
    listenKey fetched, its connection open and its future registered, so an event
    sent from now on reaches it. ccxt delivers an event only to a watch call already
    waiting."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        if task.done():
            task.result()  # raises what the watch call raised
            return
        url = stream_url(ex)
        if url is not None and url in ex.clients:
            client = ex.clients[url]
            connected = client.connected.done() if hasattr(client, "connected") else True
            if connected and message_hash in client.futures:
                return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("ccxt never waited for " + message_hash)
        await asyncio.sleep(0.01)


def event_of(order):
    # ccxt keeps the event's order object (`o` of ORDER_TRADE_UPDATE) as `info`.
    info = order.get("info") or {}
    return {
        "id": order["id"],
        "status": order["status"],
        "x": info.get("x"),
        "X": info.get("X"),
        "s": info.get("s"),
        "symbol": order["symbol"],
    }


async def order_event(ex, task, order_id, status):
    """The event of `order_id` with `status`, from `task` and the watch calls after
    it."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        orders = await asyncio.wait_for(task, max(remaining, 0.01))
        for order in orders:
            if order["id"] == order_id and order["status"] == status:
                return event_of(order)
        task = asyncio.ensure_future(ex.watch_orders(SYMBOL))
        await armed(ex, "orders:" + SYMBOL, task)


async def ccxt_orders(base, ws, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws, key, secret, ca)
    try:
        await ex.load_markets()
        watching = asyncio.ensure_future(ex.watch_orders(SYMBOL))
        await armed(ex, "orders:" + SYMBOL, watching)
        out = {"listen_key": ex.options["linear"]["listenKey"], "stream_url": stream_url(ex)}
        order = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 60000)
        out["placed"] = {"id": order["id"], "status": order["status"], "symbol": order["symbol"]}
        out["new_event"] = await order_event(ex, watching, order["id"], "open")
        watching = asyncio.ensure_future(ex.watch_orders(SYMBOL))
        await armed(ex, "orders:" + SYMBOL, watching)
        canceled = await ex.cancel_order(order["id"], SYMBOL)
        out["cancel_status"] = canceled["status"]
        out["canceled_event"] = await order_event(ex, watching, order["id"], "canceled")
        await ex.keep_alive_listen_key()
        out["listen_key_after_keep_alive"] = ex.options["linear"]["listenKey"]
        out["listen_key_calls"] = ex.listen_key_calls
        return out
    finally:
        await ex.close()


async def ccxt_balance(base, ws, key, secret, ca):
    ex = ccxt_pro_exchange(base, ws, key, secret, ca)
    try:
        await ex.load_markets()
        watching = asyncio.ensure_future(ex.watch_balance())
        await armed(ex, "linear:balance", watching)
        out = {"listen_key": ex.options["linear"]["listenKey"]}
        order = await ex.create_order(SYMBOL, "market", "buy", 0.001)
        out["order"] = {"id": order["id"], "status": order["status"], "symbol": order["symbol"]}
        balance = await asyncio.wait_for(watching, WAIT)
        info = balance.get("info") or {}
        out["event"] = info.get("e")
        out["usdt_total"] = balance["USDT"]["total"]
        out["positions"] = [
            {"s": p.get("s"), "pa": p.get("pa"), "ep": p.get("ep")} for p in (info.get("a") or {}).get("P", [])
        ]
        out["listen_key_calls"] = ex.listen_key_calls
        return out
    finally:
        await ex.close()


async def ccxt_ticker(base, ws, key, secret, ca):
    # Market data needs no key: the exchange is made without one.
    ex = ccxt_pro_exchange(base, ws, None, None, ca)
    try:
        await ex.load_markets()
        ticker = await asyncio.wait_for(ex.watch_ticker(SYMBOL), WAIT)
        out = {"symbol": ticker["symbol"], "last": ticker["last"]}
        out["event"] = (ticker.get("info") or {}).get("e")
        out["stream"] = [url for url in ex.clients]
        return out
    finally:
        await ex.close()


SCENARIOS = {
    "ccxt-orders": ccxt_orders,
    "ccxt-balance": ccxt_balance,
    "ccxt-ticker": ccxt_ticker,
}

if __name__ == "__main__":
    name, base, ws, key, secret, ca = sys.argv[1:7]
    print(json.dumps(asyncio.run(SCENARIOS[name](base, ws, key, secret, ca)), default=str))
