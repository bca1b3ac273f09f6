"""Drives a real Kraken client library against keyward (in front of the mock).

Usage: kraken_clients.py CLIENT BASE_URL TOKEN CA_FILE
CLIENT is krakenex or ccxt. Only the base URL, the API key (the keyward token) and the
trusted CA differ from talking to Kraken itself. The API secret is a placeholder that
must be valid base64 (both libraries decode it before signing); keyward discards the
bot's signature and nonce. Both trust the CA named by REQUESTS_CA_BUNDLE, which the
caller sets (ccxt through requests_trust_env).
Prints one JSON object: the result of each step, and for each refused call the
exception class the library raised and its message, or, where it raised nothing (as
krakenex does for an answer at HTTP 200), the answer's error list.
"""

import base64
import json
import re
import os
import sys


def placeholder_secret():
    return base64.b64encode(os.urandom(64)).decode()


def refusal(call):
    try:
        result = call()
    except Exception as error:  # the point is to see what the library raises
        return {
            "raised": type(error).__name__,
            "classes": [c.__name__ for c in type(error).__mro__],
            "message": str(error),
        }
    error = result.get("error") if isinstance(result, dict) else None
    return {"raised": None, "error": error, "result": repr(result)[:500]}


def krakenex_client(base, token, ca):
    import krakenex

    api = krakenex.API(key=token, secret=placeholder_secret())
    api.uri = base
    out = {}
    out["time"] = api.query_public("Time")["result"]["unixtime"]
    pairs = api.query_public("AssetPairs", {"pair": "XBTUSD"})["result"]
    out["markets"] = sorted(p["altname"] for p in pairs.values())
    balance = api.query_private("Balance")
    out["balance_usd"] = balance["result"]["ZUSD"]
    placed = api.query_private(
        "AddOrder",
        {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "60000", "volume": "0.001"},
    )
    assert not placed["error"], placed
    txid = placed["result"]["txid"][0]
    open_orders = api.query_private("OpenOrders", {"trades": True})["result"]["open"]
    out["order_open"] = txid in open_orders
    cancelled = api.query_private("CancelOrder", {"txid": txid})
    assert not cancelled["error"], cancelled
    out["cancel_count"] = cancelled["result"]["count"]
    out["open_orders"] = len(api.query_private("OpenOrders")["result"]["open"])
    out["pair"] = refusal(lambda: api.query_private(
        "AddOrder",
        {"pair": "ETHUSD", "type": "buy", "ordertype": "limit", "price": "3000", "volume": "0.01"},
    ))
    out["withdraw"] = refusal(lambda: api.query_private(
        "Withdraw", {"asset": "XBT", "key": "attacker-wallet", "amount": "0.01"},
    ))
    out["websocket"] = refusal(lambda: api.query_private("GetWebSocketsToken"))
    return out


def ccxt_client(base, token, ca):
    import ccxt

    # As shipped: key and secret, every URL pointed at keyward, keyward's CA trusted.
    ex = ccxt.kraken({"apiKey": token, "secret": placeholder_secret()})
    ex.urls["api"] = {k: re.sub(r"^https://[^/]+", base, v) for k, v in ex.urls["api"].items()}
    ex.validateServerSsl = ca
    out = {"markets": sorted(ex.load_markets().keys())}
    out["balance_usd"] = ex.fetch_balance()["USD"]["total"]
    order = ex.create_order("BTC/USD", "limit", "buy", 0.001, 60000)
    opened = ex.fetch_open_orders("BTC/USD")
    out["order_open"] = any(o["id"] == order["id"] for o in opened)
    ex.cancel_order(order["id"], "BTC/USD")
    out["open_orders"] = len(ex.fetch_open_orders("BTC/USD"))
    out["pair"] = refusal(lambda: ex.create_order("ETH/USD", "limit", "buy", 0.01, 3000))
    out["withdraw"] = refusal(lambda: ex.withdraw(
        "BTC", 0.01, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", params={"key": "attacker-wallet"},
    ))
    out["viqc"] = refusal(lambda: ex.create_market_buy_order_with_cost("BTC/USD", 5000))
    return out


def main():
    client, base, token, ca = sys.argv[1:5]
    drive = {"krakenex": krakenex_client, "ccxt": ccxt_client}[client]
    print(json.dumps(drive(base, token, ca)))


if __name__ == "__main__":
    main()
