"""Drives a real Coinbase Advanced Trade client library against keyward (in front of
the mock).

Usage: coinbase_clients.py CLIENT HOST_PORT
CLIENT is sdk (coinbase-advanced-py) or ccxt. Both are given the key name and EC
private key `keyward token new` printed for the bot (KEYWARD_KEY_NAME, KEYWARD_KEY_PEM)
and sign their own JWTs with it, each in its own form (the SDK's `iss` "cdp", ccxt's
"coinbase-cloud" with its audience), which keyward verifies. The SDK trusts keyward's
CA through REQUESTS_CA_BUNDLE, which the caller sets; ccxt is built with its key and
secret only (nothing in `options` or `has`), its URLs pointed at keyward and the same
CA given as `validateServerSsl`.
Prints one JSON object: the result of each step, and for each refused call the
exception class the library raised and its message.
"""

import json
import os
import re
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


def field(response, name):
    """The SDK returns response objects that also index like dicts."""
    try:
        return response[name]
    except (KeyError, TypeError):
        return getattr(response, name)


def sdk(host):
    from coinbase.rest import RESTClient

    client = RESTClient(
        api_key=os.environ["KEYWARD_KEY_NAME"],
        api_secret=os.environ["KEYWARD_KEY_PEM"],
        base_url=host,  # host:port, no scheme: the SDK always prepends https://
    )
    out = {}
    products = client.get_products()
    out["markets"] = sorted(p["product_id"] for p in field(products, "products"))
    accounts = client.get_accounts()
    out["balance_btc"] = [
        a["available_balance"]["value"] for a in field(accounts, "accounts") if a["currency"] == "BTC"
    ][0]
    order = client.limit_order_gtc(
        client_order_id="", product_id="BTC-USD", side="BUY",
        base_size="0.001", limit_price="60000.00", post_only=True,
    )
    out["order_success"] = field(order, "success")
    order_id = field(order, "success_response")["order_id"]
    out["open_orders"] = len(field(client.list_orders(order_status=["OPEN"], product_ids=["BTC-USD"]), "orders"))
    cancelled = client.cancel_orders(order_ids=[order_id])
    out["cancel_success"] = field(cancelled, "results")[0]["success"]
    out["dmg"] = refusal(lambda: client.limit_order_gtc(
        client_order_id="", product_id="DOGE-USD", side="BUY", base_size="100", limit_price="0.1",
    ))
    out["withdraw"] = refusal(lambda: client.move_portfolio_funds(
        value="1000", currency="USD", source_portfolio_uuid="p-1", target_portfolio_uuid="p-2",
    ))
    out["v2_send"] = refusal(lambda: client.post(
        "/v2/accounts/acc-btc/transactions",
        data={"type": "send", "to": "bc1qattacker", "amount": "0.1", "currency": "BTC"},
    ))
    return out


def ccxt_client(host):
    import ccxt

    # As shipped: the key name and private key keyward issued, every URL pointed at
    # keyward, keyward's CA trusted; nothing in options or has.
    ex = ccxt.coinbase({"apiKey": os.environ["KEYWARD_KEY_NAME"], "secret": os.environ["KEYWARD_KEY_PEM"]})
    ex.urls["api"] = {
        k: re.sub(r"^https://[^/]+", "https://" + host, v) if isinstance(v, str) else v
        for k, v in ex.urls["api"].items()
    }
    ex.validateServerSsl = os.environ["REQUESTS_CA_BUNDLE"]
    out = {"markets": sorted(ex.load_markets().keys())}
    out["balance_btc"] = ex.fetch_balance()["BTC"]["free"]
    order = ex.create_order("BTC/USD", "limit", "buy", 0.001, 60000)
    out["order_id"] = order["id"]
    out["open_orders"] = len(ex.fetch_open_orders("BTC/USD"))
    ex.cancel_order(order["id"])
    out["cancelled"] = True
    out["dmg"] = refusal(lambda: ex.create_order("DOGE/USD", "limit", "buy", 100, 0.1))
    out["withdraw"] = refusal(lambda: ex.withdraw("BTC", 0.1, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"))
    return out


def main():
    client, host = sys.argv[1], sys.argv[2]
    result = {"sdk": sdk, "ccxt": ccxt_client}[client](host)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
