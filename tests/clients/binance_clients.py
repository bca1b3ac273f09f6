"""Drives a real Binance client library against keyward (in front of the mock).

Usage: binance_clients.py CLIENT BASE_URL TOKEN CA_FILE
CLIENT is ccxt-spot, ccxt-usdm, python-binance, binance-sdk-spot, or mtls (ccxt and
python-binance with a client certificate). Only the base
URL, the API key (the keyward token) and the trusted CA differ from talking to
Binance itself; the API secret is anything, keyward discards the bot's signature.
ccxt is built with its API key and secret only (nothing in `options` or `has`), its
URLs pointed at keyward and keyward's CA given as `validateServerSsl`;
python-binance and binance-sdk-spot are given the CA the way each documents.
Prints one JSON object: the result of each step, and for each refused call the
exception class the library raised and its message.
"""

import json
import os
import re
import ssl
import sys


def refusal(call):
    try:
        call()
    except Exception as error:  # the point is to see what the library raises
        return {
            "raised": type(error).__name__,
            "classes": [c.__name__ for c in type(error).__mro__],
            "message": str(error),
        }
    return {"raised": None}


def through_keyward(ex, base, ca):
    """What a user changes in a ccxt exchange, and nothing else: every API URL points
    at keyward, and keyward's CA is the one trusted."""
    ex.urls["api"] = {k: re.sub(r"^https://[^/]+", base, v) for k, v in ex.urls["api"].items()}
    ex.validateServerSsl = ca
    return ex


def ccxt_spot_exchange(base, token, ca):
    import ccxt

    return through_keyward(ccxt.binance({"apiKey": token, "secret": "anything: keyward signs"}), base, ca)


def ccxt_spot(base, token, ca):
    ex = ccxt_spot_exchange(base, token, ca)
    out = {"markets": sorted(ex.load_markets().keys())}
    out["currencies"] = sorted(ex.currencies.keys())
    out["balance_usdt"] = ex.fetch_balance()["USDT"]["free"]
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 60000)
    out["order_status"] = order["status"]
    out["cancel_status"] = ex.cancel_order(order["id"], "BTC/USDT")["status"]
    out["open_orders"] = len(ex.fetch_open_orders("BTC/USDT"))
    out["dmg"] = refusal(lambda: ex.create_order("DMG/USDT", "limit", "buy", 1000, 0.05))
    out["withdraw"] = refusal(
        lambda: ex.withdraw("USDT", 5000, "TAttackerAddr000000000000000000000", params={"network": "TRX"})
    )
    # The markets are loaded once (ccxt's set_markets), so that what follows is the
    # one call under test.
    stranger = ccxt_spot_exchange(base, token[:-4] + "AAAA", ca)
    stranger.set_markets(ex.markets, ex.currencies)
    out["auth"] = refusal(stranger.fetch_balance)
    out["bad"] = refusal(lambda: ex.private_post_order({
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1e3", "price": "1",
    }))
    slow = ccxt_spot_exchange(base, os.environ["KEYWARD_SLOW_TOKEN"], ca)
    slow.set_markets(ex.markets, ex.currencies)
    slow.fetch_balance()
    out["rate"] = refusal(slow.fetch_balance)
    return out


def ccxt_usdm(base, token, ca):
    import ccxt

    ex = through_keyward(ccxt.binanceusdm({"apiKey": token, "secret": "anything: keyward signs"}), base, ca)
    out = {"markets": sorted(ex.load_markets().keys())}
    out["balance_usdt"] = ex.fetch_balance()["USDT"]["free"]
    order = ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.001, 60000)
    out["order_status"] = order["status"]
    out["cancel_status"] = ex.cancel_order(order["id"], "BTC/USDT:USDT")["status"]
    out["open_orders"] = len(ex.fetch_open_orders("BTC/USDT:USDT"))
    out["dmg"] = refusal(lambda: ex.create_order("ETH/USDT:USDT", "limit", "buy", 1, 3000))
    out["withdraw"] = refusal(
        lambda: ex.withdraw("USDT", 5000, "TAttackerAddr000000000000000000000", params={"network": "TRX"})
    )
    return out


def python_binance(base, token, ca):
    from binance.client import Client

    client = Client(token, "anything: keyward signs", requests_params={"verify": ca}, ping=False)
    client.API_URL = base + "/api"
    client.MARGIN_API_URL = base + "/sapi"
    out = {"ping": client.ping()}
    out["markets"] = sorted(s["symbol"] for s in client.get_exchange_info()["symbols"])
    balances = {b["asset"]: b["free"] for b in client.get_account()["balances"]}
    out["balance_usdt"] = balances["USDT"]
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="60000")
    out["order_status"] = order["status"]
    out["cancel_status"] = client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])["status"]
    out["open_orders"] = len(client.get_open_orders(symbol="BTCUSDT"))
    out["dmg"] = refusal(lambda: client.order_limit_buy(symbol="DMGUSDT", quantity="1000", price="0.05"))
    out["withdraw"] = refusal(
        lambda: client.withdraw(coin="USDT", address="TAttackerAddr000000000000000000000", amount=5000, network="TRX")
    )
    return out


def binance_sdk_spot(base, token, ca):
    from binance_common.configuration import ConfigurationRestAPI
    from binance_sdk_spot.spot import Spot

    config = ConfigurationRestAPI(
        api_key=token,
        api_secret="anything: keyward signs",
        base_path=base,
        https_agent=ssl.create_default_context(cafile=ca),
        retries=0,
        timeout=10000,
    )
    api = Spot(config_rest_api=config).rest_api
    out = {"ping": api.ping().data().to_dict() if hasattr(api.ping().data(), "to_dict") else {}}
    out["markets"] = sorted(s.symbol for s in api.exchange_info().data().symbols)
    balances = {b.asset: b.free for b in api.get_account().data().balances}
    out["balance_usdt"] = balances["USDT"]
    order = api.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.001, price=60000)
    order = order.data()
    out["order_status"] = order.status
    canceled = api.delete_order(symbol="BTCUSDT", order_id=order.order_id).data()
    out["cancel_status"] = canceled.status
    out["open_orders"] = len(api.get_open_orders(symbol="BTCUSDT").data())
    out["dmg"] = refusal(
        lambda: api.new_order(symbol="DMGUSDT", side="BUY", type="LIMIT", time_in_force="GTC", quantity=1000, price=0.05)
    )
    return out


def mtls(base, token, ca):
    """ccxt and python-binance presenting the client certificate named by
    KEYWARD_CLIENT_CERT and KEYWARD_CLIENT_KEY, as docs/bot-identity.md tells."""
    from binance.client import Client

    identity = (os.environ["KEYWARD_CLIENT_CERT"], os.environ["KEYWARD_CLIENT_KEY"])
    ex = ccxt_spot_exchange(base, token, ca)
    ex.session.cert = identity
    out = {"ccxt_balances": len(ex.private_get_account()["balances"])}
    bare = ccxt_spot_exchange(base, token, ca)
    out["ccxt_without_certificate"] = refusal(bare.private_get_account)
    client = Client(token, "anything: keyward signs", requests_params={"verify": ca, "cert": identity}, ping=False)
    client.API_URL = base + "/api"
    out["python_binance_balances"] = len(client.get_account()["balances"])
    return out


CLIENTS = {
    "mtls": mtls,
    "ccxt-spot": ccxt_spot,
    "ccxt-usdm": ccxt_usdm,
    "python-binance": python_binance,
    "binance-sdk-spot": binance_sdk_spot,
}

if __name__ == "__main__":
    name, base, token, ca = sys.argv[1:5]
    print(json.dumps(CLIENTS[name](base, token, ca), default=str))
