//! Coinbase Advanced Trade: orders (each catalogued `order_configuration` variant
//! keyward models for limits and markets), batch cancels, a product path and the
//! order list's repeated-key query arrays. Coinbase's rules: key order is free and
//! canonicalised (query in catalogue order, an array's values in the order sent);
//! JSON escapes and whitespace change nothing; a repeated key is refused unless the
//! parameter is an array (`param_duplicate`); a duplicate JSON key is refused
//! (`json_duplicate_key`). An edit's `product_id` is checked and not forwarded, so
//! what keyward sends for an edit is no request a bot could send: edits are left out.

use http::Method;
use proptest::prelude::*;

use super::{
    JSON, JsonStyle, Jv, Request, accepted, check_canonical, decimal, encode_pairs, model, parse,
    reason, respelled_pairs,
};
use crate::coinbase::COINBASE;

const PREFIX: &str = "/api/v3/brokerage";

fn product() -> BoxedStrategy<String> {
    prop_oneof![
        "[A-Z0-9]{2,5}-[A-Z0-9]{2,5}",
        "[A-Z]{3}-[0-9]{2}[A-Z]{3}[0-9]{2}-CDE"
    ]
    .boxed()
}

/// An order body, its product, and whether it is a market order.
type OrderBody = (Vec<(String, Jv)>, String, bool);

/// An order body: client id, product, side and one configuration.
fn order() -> BoxedStrategy<OrderBody> {
    (
        "[A-Za-z0-9_.:-]{1,40}",
        product(),
        prop_oneof![Just("BUY"), Just("SELL")],
        any::<bool>(),
        decimal(),
        decimal(),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(
            |(client_id, product, side, market, size, price, post_only, quote)| {
                let configuration = if market {
                    let key = if quote { "quote_size" } else { "base_size" };
                    ("market_market_ioc", vec![(key.to_owned(), Jv::Str(size))])
                } else {
                    let mut fields = vec![
                        ("base_size".to_owned(), Jv::Str(size)),
                        ("limit_price".to_owned(), Jv::Str(price)),
                    ];
                    fields.extend(
                        post_only.map(|p| ("post_only".to_owned(), Jv::Lit(p.to_string()))),
                    );
                    ("limit_limit_gtc", fields)
                };
                let fields = vec![
                    ("client_order_id".to_owned(), Jv::Str(client_id)),
                    ("product_id".to_owned(), Jv::Str(product.clone())),
                    ("side".to_owned(), Jv::Str(side.to_owned())),
                    (
                        "order_configuration".to_owned(),
                        Jv::Obj(vec![(configuration.0.to_owned(), Jv::Obj(configuration.1))]),
                    ),
                ];
                (fields, product, market)
            },
        )
        .boxed()
}

fn rotated<T: Clone>(items: &[T], turn: prop::sample::Index) -> Vec<T> {
    let mut items = items.to_vec();
    if !items.is_empty() {
        let at = turn.index(items.len());
        items.rotate_left(at);
    }
    items
}

proptest! {
    #[test]
    fn orders_and_cancels_are_canonical_in_every_spelling(
        (fields, product, market) in order(),
        ids in proptest::collection::vec("[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{12}", 1..5),
        style in JsonStyle::any(),
        turn in any::<prop::sample::Index>(),
    ) {
        let path = format!("{PREFIX}/orders");
        let plain = Request::body(Method::POST, &path, JSON, JsonStyle::plain().write(&Jv::Obj(fields.clone())));
        let call = accepted(&COINBASE, &plain)?;
        check_canonical(&COINBASE, &call)?;
        prop_assert_eq!(call.intent.orders.len(), 1);
        prop_assert_eq!(call.intent.orders[0].symbol.as_str(), product.as_str());
        prop_assert_eq!(call.intent.orders[0].price.is_none(), market);
        // Any key order, escapes and whitespace: the same call.
        let styled = Request::body(Method::POST, &path, JSON, style.write(&Jv::Obj(rotated(&fields, turn))));
        prop_assert_eq!(model(&accepted(&COINBASE, &styled)?), model(&call));
        // A key twice is refused.
        let mut doubled = fields.clone();
        doubled.push(fields[turn.index(fields.len())].clone());
        let twice = Request::body(Method::POST, &path, JSON, style.write(&Jv::Obj(doubled)));
        prop_assert_eq!(reason(&parse(&COINBASE, &twice)), "json_duplicate_key");

        let cancel = Jv::Obj(vec![("order_ids".into(), Jv::Arr(ids.iter().cloned().map(Jv::Str).collect()))]);
        let cancel = Request::body(Method::POST, &format!("{PREFIX}/orders/batch_cancel"), JSON, style.write(&cancel));
        check_canonical(&COINBASE, &accepted(&COINBASE, &cancel)?)?;
    }

    #[test]
    fn queries_and_paths_are_canonical_in_every_spelling(
        product in product(),
        statuses in proptest::collection::vec(prop_oneof![Just("OPEN"), Just("FILLED"), Just("CANCELLED")], 0..3),
        products in proptest::collection::vec(product(), 0..3),
        limit in proptest::option::of(1..1_000u32),
        side in proptest::option::of(prop_oneof![Just("BUY"), Just("SELL")]),
        turn in any::<prop::sample::Index>(),
        choices in proptest::collection::vec(any::<u8>(), 1..6),
    ) {
        let mut pairs: Vec<(String, String)> = statuses.iter().map(|s| ("order_status".to_owned(), (*s).to_owned())).collect();
        pairs.extend(products.iter().map(|p| ("product_ids".to_owned(), p.clone())));
        pairs.extend(limit.map(|l| ("limit".to_owned(), l.to_string())));
        pairs.extend(side.map(|s| ("order_side".to_owned(), s.to_owned())));
        let path = format!("{PREFIX}/orders/historical/batch");
        let call = accepted(&COINBASE, &Request::query(Method::GET, &path, encode_pairs(&pairs)))?;
        check_canonical(&COINBASE, &call)?;
        // Scalars may move anywhere among the arrays' values, which keep their order.
        let array = |k: &str| k == "order_status" || k == "product_ids";
        let mut moved: Vec<(String, String)> = pairs.iter().filter(|(k, _)| array(k)).cloned().collect();
        let scalars = rotated(&pairs.iter().filter(|(k, _)| !array(k)).cloned().collect::<Vec<_>>(), turn);
        let at = turn.index(moved.len() + 1);
        moved.splice(at..at, scalars);
        let escaped = Request::query(Method::GET, &path, respelled_pairs(&moved, &choices));
        let reordered = accepted(&COINBASE, &escaped)?;
        let statuses_of = |c: &crate::ParsedCall| c.params.iter().filter(|(k, _)| *k == "order_status").map(|(_, v)| v.clone()).collect::<Vec<_>>();
        prop_assert_eq!(statuses_of(&reordered), statuses_of(&call));
        prop_assert_eq!(model(&reordered), model(&call));
        // A parameter that is no array, twice: refused.
        if let Some(s) = side {
            let twice = format!("{}&order_side={s}", encode_pairs(&pairs));
            prop_assert_eq!(reason(&parse(&COINBASE, &Request::query(Method::GET, &path, twice))), "param_duplicate");
        }
        // A product in the path.
        let ticker = Request::query(Method::GET, &format!("{PREFIX}/products/{product}/ticker"), String::new());
        let call = accepted(&COINBASE, &ticker)?;
        check_canonical(&COINBASE, &call)?;
        prop_assert_eq!(call.intent.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>(), vec![product.as_str()]);
    }
}
