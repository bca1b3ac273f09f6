"""Drives a real OKX client library against keyward (in front of the mock).

Usage: okx_clients.py CLIENT BASE_URL TOKEN CA_FILE
CLIENT is python-okx (0.4.4) or ccxt-okx (4.5.90). Only the base URL, the API key
(the keyward token) and the trusted CA differ from talking to OKX itself; the secret
and passphrase are anything, keyward discards the bot's signature and passphrase.
python-okx (httpx, HTTP/2) trusts the CA named by SSL_CERT_FILE, which must be set
before its API objects are built; ccxt is given it as validateServerSsl.
python-okx runs live (flag='0'): keyward refuses x-simulated-trading: 1.
Prints one JSON object: the result of each step, and for each refused call what
the library raised (ccxt) or returned (python-okx never raises on an OKX error).
"""

import json
import os
import sys


def refusal(call):
    try:
        result = call()
    except Exception as error:  # the point is to see what the library raises
        return {
            "raised": type(error).__name__,
            "classes": [c.__name__ for c in type(error).__mro__],
            "message": str(error),
        }
    return {"raised": None, "result": result}


def python_okx(base, token, ca):
    os.environ["SSL_CERT_FILE"] = ca  # httpx builds its SSL context in __init__
    import okx.Account as Account
    import okx.Funding as Funding
    import okx.PublicData as PublicData
    import okx.Trade as Trade

    creds = dict(api_key=token, api_secret_key="anything: keyward signs", passphrase="bot-guess", flag="0", domain=base)
    public = PublicData.PublicAPI(flag="0", domain=base)
    out = {"markets": [i["instId"] for i in public.get_instruments(instType="SPOT")["data"]]}
    out["time"] = public.get_system_time()["data"][0]["ts"]
    account = Account.AccountAPI(**creds)
    balance = account.get_account_balance()
    out["balance_usdt"] = [d["availBal"] for d in balance["data"][0]["details"] if d["ccy"] == "USDT"][0]
    trade = Trade.TradeAPI(**creds)
    placed = trade.place_order(instId="BTC-USDT", tdMode="cash", side="buy", ordType="limit", px="60000", sz="0.001", clOrdId="pyokx1")
    out["order_code"] = placed["code"]
    order_id = placed["data"][0]["ordId"]
    state = trade.get_order(instId="BTC-USDT", ordId=order_id)
    out["order_status"] = state["data"][0]["state"]
    out["cancel_code"] = trade.cancel_order(instId="BTC-USDT", ordId=order_id)["code"]
    out["open_orders"] = len(trade.get_order_list(instType="SPOT", instId="BTC-USDT")["data"])
    # python-okx returns OKX's error envelope instead of raising.
    out["dmg"] = trade.place_order(instId="DMG-USDT", tdMode="cash", side="buy", ordType="limit", px="0.05", sz="1000")
    funding = Funding.FundingAPI(**creds)
    out["withdraw"] = funding.withdrawal(ccy="USDT", amt="5000", dest="4", toAddr="TAttacker", chain="USDT-TRC20")
    demo = Account.AccountAPI(**{**creds, "flag": "1"})
    out["demo"] = demo.get_account_balance()
    return out


def ccxt_okx_exchange(base, token, ca):
    import ccxt

    # As shipped: key, secret and passphrase, keyward's host, keyward's CA; nothing in
    # options or has.
    ex = ccxt.okx({"apiKey": token, "secret": "anything: keyward signs", "password": "bot-guess"})
    ex.hostname = base.removeprefix("https://")
    ex.validateServerSsl = ca
    return ex


def ccxt_okx(base, token, ca):
    ex = ccxt_okx_exchange(base, token, ca)
    out = {"markets": sorted(ex.load_markets().keys())}
    out["balance_usdt"] = ex.fetch_balance()["USDT"]["free"]
    # ccxt's default createOrder is batch-orders with its broker tag: keyward checks
    # the batch element and strips the tag.
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 60000)
    out["order_id"] = order["id"]
    out["order_status"] = ex.fetch_order(order["id"], "BTC/USDT")["status"]
    cancelled = ex.cancel_order(order["id"], "BTC/USDT")
    out["cancel_id"] = cancelled["id"]
    out["open_orders"] = len(ex.fetch_open_orders("BTC/USDT"))
    single = ccxt_okx_exchange(base, token, ca)
    single.options["createOrder"] = "privatePostTradeOrder"
    single.load_markets()
    second = single.create_order("BTC/USDT", "limit", "sell", 0.001, 61000, {"clientOrderId": "ccxt2"})
    out["single_id"] = second["id"]
    single.cancel_order(second["id"], "BTC/USDT")
    out["dmg"] = refusal(lambda: ex.private_post_trade_order({
        "instId": "DMG-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "0.05", "sz": "1000",
    }))
    out["withdraw"] = refusal(lambda: ex.private_post_asset_withdrawal({
        "ccy": "USDT", "amt": "5000", "dest": "4", "toAddr": "TAttacker", "chain": "USDT-TRC20",
    }))
    stranger = ccxt_okx_exchange(base, token[:-4] + "AAAA", ca)
    out["auth"] = refusal(stranger.fetch_balance)
    return out


def main():
    client, base, token, ca = sys.argv[1:5]
    runs = {"python-okx": python_okx, "ccxt-okx": ccxt_okx}
    print(json.dumps(runs[client](base, token, ca), default=str))


if __name__ == "__main__":
    main()
