"""Drives a real Bybit client library against keyward (in front of the mock).

Usage: bybit_clients.py CLIENT BASE_URL TOKEN CA_FILE
CLIENT is pybit, ccxt or pybit-rate-limited. Only the base URL, the API key (the
keyward token) and the trusted CA differ from talking to Bybit itself; the API secret
is anything, keyward discards the bot's signature. pybit takes the base URL as
`session.endpoint` and the CA as `session.client.verify`; ccxt is built with its key
and secret only (nothing in `options` or `has`), its URLs pointed at keyward and the
CA given as `validateServerSsl`.
Prints one JSON object: the result of each step, and for each refused call the
exception class the library raised, its message, and for pybit the code it reports
(`retCode` at HTTP 200, the HTTP status otherwise) and keyward's `x-keyward-error`
header.
"""

import json
import logging
import os
import re
import sys
import time


def refusal(call):
    try:
        call()
    except Exception as error:  # the point is to see what the library raises
        headers = getattr(error, "resp_headers", None) or {}
        return {
            "raised": type(error).__name__,
            "classes": [c.__name__ for c in type(error).__mro__],
            "message": str(error),
            "status": getattr(error, "status_code", None),
            "keyward_error": headers.get("x-keyward-error"),
        }
    return {"raised": None}


def pybit(base, token, ca):
    from pybit.unified_trading import HTTP

    s = HTTP(api_key=token, api_secret="anything: keyward signs", max_retries=1)
    s.endpoint = base
    s.client.verify = ca
    out = {"markets": [i["symbol"] for i in s.get_instruments_info(category="spot")["result"]["list"]]}
    out["server_time"] = s.get_server_time()["result"]["timeSecond"]
    coins = s.get_wallet_balance(accountType="UNIFIED", coin="USDT")["result"]["list"][0]["coin"]
    out["balance_usdt"] = next(c["walletBalance"] for c in coins if c["coin"] == "USDT")
    order = s.place_order(
        category="spot", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000",
        timeInForce="GTC", orderLinkId="pybit-1",
    )
    out["order_id"] = order["result"]["orderId"]
    out["open_before_cancel"] = len(s.get_open_orders(category="spot", symbol="BTCUSDT")["result"]["list"])
    s.cancel_order(category="spot", symbol="BTCUSDT", orderId=out["order_id"])
    out["open_after_cancel"] = len(s.get_open_orders(category="spot", symbol="BTCUSDT")["result"]["list"])
    out["dmg"] = refusal(lambda: s.place_order(
        category="spot", symbol="DMGUSDT", side="Buy", orderType="Limit", qty="1000", price="0.05",
    ))
    out["withdraw"] = refusal(lambda: s.withdraw(
        coin="USDT", chain="ETH", address="0xabc", amount="5000", timestamp=1700000000000, forceChain=0,
        accountType="FUND",
    ))
    return out


def pybit_rate_limited(base, token, ca):
    """Two orders in a row from a bot whose order rate allows one: pybit sleeps and
    retries on Bybit's rate-limit code, 10006, up to `max_retries` attempts in all.
    Reports how the second order ended, how long it took, and what pybit logged."""
    from pybit.unified_trading import HTTP

    logged = []

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    logging.getLogger("pybit._http_manager").addHandler(Keep())
    s = HTTP(api_key=token, api_secret="anything: keyward signs", max_retries=2)
    s.endpoint = base
    s.client.verify = ca
    order = dict(category="spot", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000")
    out = {"first": s.place_order(**order)["result"]["orderId"]}
    started = time.monotonic()
    second = {}

    def place():
        second["order_id"] = s.place_order(**order)["result"]["orderId"]

    out["second"] = refusal(place)
    out["second"].update(second)
    out["seconds"] = time.monotonic() - started
    out["logged"] = logged
    return out


def ccxt_bybit(base, token, ca):
    import ccxt

    ex = ccxt.bybit({"apiKey": token, "secret": "anything: keyward signs"})
    ex.urls["api"] = {k: re.sub(r"^https://[^/]+", base, v) for k, v in ex.urls["api"].items()}
    ex.validateServerSsl = ca
    out = {"markets": sorted(ex.load_markets().keys())}
    out["currencies"] = sorted(ex.currencies.keys())
    out["balance_usdt"] = ex.fetch_balance()["USDT"]["total"]
    # What ccxt learnt about the account from keyward's answer to query-api, and the
    # answer itself.
    out["unified_account"] = ex.options.get("enableUnifiedAccount")
    out["key"] = ex.private_get_v5_user_query_api()["result"]
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 60000)
    out["order_id"] = order["id"]
    ex.cancel_order(order["id"], "BTC/USDT")
    out["open_after_cancel"] = len(ex.fetch_open_orders("BTC/USDT"))
    out["dmg"] = refusal(lambda: ex.create_order("DMG/USDT", "limit", "buy", 1000, 0.05))
    out["withdraw"] = refusal(lambda: ex.withdraw("USDT", 5000, "0xabc", params={"network": "ETH"}))
    return out


CLIENTS = {"pybit": pybit, "ccxt": ccxt_bybit, "pybit-rate-limited": pybit_rate_limited}

if __name__ == "__main__":
    name, base, token, ca = sys.argv[1:5]
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    print(json.dumps(CLIENTS[name](base, token, ca), default=str))
