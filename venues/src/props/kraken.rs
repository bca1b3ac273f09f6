//! Kraken: AddOrder, AddOrderBatch, CancelOrder and public reads generated with every
//! spelling Kraken takes for a pair (altname, legacy ids, `BASE/QUOTE`, BTC for XBT),
//! form and JSON bodies, `close[...]` templates (a nested `close` object in JSON),
//! Python's `True`/`False` and repeated `oflags`. Kraken's rules: key order is free
//! and canonicalised to the catalogue's (byte order of names, after keyward's nonce);
//! a pair alias is resolved to the altname; escapes are decoded once, but a raw `+`
//! is refused (`param_invalid`: Kraken reads it as a space); the bot's `nonce` and
//! `otp` are stripped; a duplicate key is refused (`param_duplicate`,
//! `json_duplicate_key`); the same order as a form or JSON body means the same.

use http::Method;
use proptest::prelude::*;

use super::{
    FORM, JSON, JsonStyle, Jv, Request, accepted, check_canonical, decimal, encode_pairs, model,
    parse, reason, respelled_pairs,
};
use crate::kraken::KRAKEN;

/// A pair as bots write it, and the altname keyward must resolve it to.
fn pair() -> BoxedStrategy<(String, String)> {
    // (altname, legacy id) of assets Kraken lists; an empty id means none.
    const ASSETS: &[(&str, &str)] = &[
        ("XBT", "XXBT"),
        ("ETH", "XETH"),
        ("USD", "ZUSD"),
        ("EUR", "ZEUR"),
        ("XRP", "XXRP"),
        ("SOL", ""),
        ("USDT", ""),
        ("USDC", ""),
        ("DOT", ""),
        ("WBTC", ""),
    ];
    let asset = || proptest::sample::select(ASSETS);
    (asset(), asset(), 0..4u8, any::<bool>(), any::<bool>())
        .prop_filter("two different assets", |((a, _), (b, _), ..)| a != b)
        .prop_map(
            |((base, base_id), (quote, quote_id), form, btc_base, btc_quote)| {
                let altname = format!("{base}{quote}");
                // Bitcoin may be written BTC wherever Kraken says XBT.
                let common =
                    |alt: &'static str, btc: bool| if alt == "XBT" && btc { "BTC" } else { alt };
                let spelled = match form {
                    0 => altname.clone(),
                    1 => format!("{}/{}", common(base, btc_base), common(quote, btc_quote)),
                    2 if !base_id.is_empty() && !quote_id.is_empty() => {
                        format!("{base_id}{quote_id}")
                    }
                    3 if !base_id.is_empty() => format!("{base_id}/{}", common(quote, btc_quote)),
                    // Joined, BTC is bitcoin only beside a three-letter code.
                    _ => format!("{}{quote}", common(base, btc_base && quote.len() == 3)),
                };
                (spelled, altname)
            },
        )
        .boxed()
}

fn boolean() -> BoxedStrategy<(String, &'static str)> {
    proptest::sample::select(
        &[
            ("true", "true"),
            ("false", "false"),
            ("True", "true"),
            ("False", "false"),
        ][..],
    )
    .prop_map(|(spelled, meant)| (spelled.to_owned(), meant))
    .boxed()
}

/// An AddOrder's fields as text (the form's view): a limit, market, stop-loss-limit
/// or viqc market buy, with optional extras and an optional conditional close.
fn add_order() -> BoxedStrategy<Vec<(String, String)>> {
    (
        0..4u8,
        prop_oneof![Just("buy"), Just("sell")],
        decimal(),
        decimal(),
        decimal(),
        proptest::option::of("[A-Za-z0-9._:/-]{1,36}"),
        proptest::option::of(boolean()),
        proptest::option::of(0..1_000_000u32),
        proptest::option::of((decimal(), any::<bool>())),
    )
        .prop_map(
            |(kind, side, volume, price, price2, cl_ord_id, validate, userref, close)| {
                let mut fields: Vec<(String, String)> = vec![("volume".into(), volume)];
                let viqc = kind == 3;
                match kind {
                    0 => fields.extend([
                        ("ordertype".into(), "limit".into()),
                        ("price".into(), price),
                    ]),
                    1 => fields.push(("ordertype".into(), "market".into())),
                    2 => fields.extend([
                        ("ordertype".into(), "stop-loss-limit".into()),
                        ("price".into(), price),
                        ("price2".into(), price2),
                    ]),
                    _ => fields.extend([
                        ("ordertype".into(), "market".into()),
                        // ccxt repeats viqc; a repeat means nothing more.
                        ("oflags".into(), "viqc,post,viqc".into()),
                    ]),
                }
                fields.push(("type".into(), if viqc { "buy" } else { side }.into()));
                fields.extend(cl_ord_id.map(|id| ("cl_ord_id".to_owned(), id)));
                fields.extend(validate.map(|(spelled, _)| ("validate".to_owned(), spelled)));
                fields.extend(userref.map(|r| ("userref".to_owned(), r.to_string())));
                if let (Some((close_price, limit)), false) = (close, viqc) {
                    let close_type = if limit { "limit" } else { "stop-loss" };
                    fields.push(("close[ordertype]".into(), close_type.into()));
                    fields.push(("close[price]".into(), close_price));
                }
                fields
            },
        )
        .boxed()
}

fn form_post(path: &str, body: String) -> Request {
    Request::body(Method::POST, path, FORM, body)
}

/// The same fields as a JSON object: `close[...]` as a nested `close` object,
/// integers and booleans as JSON literals or strings, as `literal` says.
fn as_json(fields: &[(String, String)], literal: bool) -> Jv {
    let mut object = Vec::new();
    let mut close = Vec::new();
    for (key, value) in fields {
        if let Some(inner) = key.strip_prefix("close[").and_then(|k| k.strip_suffix(']')) {
            close.push((inner.to_owned(), Jv::Str(value.clone())));
            continue;
        }
        let as_literal = literal
            && matches!(key.as_str(), "userref" | "validate")
            && !value.starts_with(char::is_uppercase);
        object.push((
            key.clone(),
            if as_literal {
                Jv::Lit(value.clone())
            } else {
                Jv::Str(value.clone())
            },
        ));
    }
    if !close.is_empty() {
        object.push(("close".to_owned(), Jv::Obj(close)));
    }
    Jv::Obj(object)
}

proptest! {
    #[test]
    fn add_orders_are_canonical_in_every_spelling(
        (spelled, altname) in pair(),
        mut fields in add_order(),
        order in any::<prop::sample::Index>(),
        choices in proptest::collection::vec(any::<u8>(), 1..6),
        style in JsonStyle::any(),
        literal in any::<bool>(),
        duplicate in any::<prop::sample::Index>(),
    ) {
        fields.push(("pair".into(), spelled));
        let turn = order.index(fields.len());
        fields.rotate_left(turn);
        let path = "/0/private/AddOrder";
        let call = accepted(&KRAKEN, &form_post(path, encode_pairs(&fields)))?;
        check_canonical(&KRAKEN, &call)?;
        prop_assert_eq!(call.intent.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>(), vec![altname.as_str()]);
        let pair_sent = call.params.iter().find(|(k, _)| *k == "pair").map(|(_, v)| v.as_str());
        prop_assert_eq!(pair_sent, Some(altname.as_str()));
        let names: Vec<&str> = call.params.iter().map(|(k, _)| *k).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        prop_assert_eq!(names, sorted, "parameters in byte order");

        // Escapes, the bot's nonce and one-time password: same call.
        let mut with_auth = fields.clone();
        with_auth.extend([("nonce".to_owned(), "1".to_owned()), ("otp".to_owned(), "123456".to_owned())]);
        let escaped = accepted(&KRAKEN, &form_post(path, respelled_pairs(&with_auth, &choices)))?;
        prop_assert_eq!(model(&escaped), model(&call));
        prop_assert_eq!(escaped.stripped, vec!["nonce", "otp"]);

        // The same order as JSON: same parameters and intent (the body is JSON).
        let json = accepted(&KRAKEN, &Request::body(Method::POST, path, JSON, style.write(&as_json(&fields, literal))))?;
        check_canonical(&KRAKEN, &json)?;
        prop_assert_eq!(&json.params, &call.params);
        prop_assert_eq!(&json.intent, &call.intent);

        // A key twice, or a raw `+`, is refused.
        let mut doubled = fields.clone();
        doubled.push(fields[duplicate.index(fields.len())].clone());
        prop_assert_eq!(reason(&parse(&KRAKEN, &form_post(path, encode_pairs(&doubled)))), "param_duplicate");
        let plus = format!("{}&price2=+1", encode_pairs(&fields));
        prop_assert_eq!(reason(&parse(&KRAKEN, &form_post(path, plus))), "param_invalid");
        let Jv::Obj(mut doubled_json) = as_json(&fields, literal) else {
            unreachable!()
        };
        doubled_json.push(doubled_json[duplicate.index(doubled_json.len())].clone());
        let twice = Request::body(Method::POST, path, JSON, style.write(&Jv::Obj(doubled_json)));
        prop_assert_eq!(reason(&parse(&KRAKEN, &twice)), "json_duplicate_key");
    }

    #[test]
    fn batches_cancels_and_public_reads_are_canonical(
        (spelled, altname) in pair(),
        batch in proptest::collection::vec(add_order(), 1..4),
        txid in "[A-Z0-9]{6}-[A-Z0-9]{5}-[A-Z0-9]{6}",
        count in proptest::option::of(1..500u32),
        style in JsonStyle::any(),
    ) {
        // AddOrderBatch: JSON only, the pair once for every order.
        let orders: Vec<Jv> = batch
            .iter()
            .map(|fields| {
                // `validate` belongs to the batch, not to its orders.
                let fields: Vec<_> = fields.iter().filter(|(k, _)| k != "validate").cloned().collect();
                as_json(&fields, false)
            })
            .collect();
        let body = Jv::Obj(vec![
            ("orders".into(), Jv::Arr(orders)),
            ("pair".into(), Jv::Str(spelled.clone())),
            ("nonce".into(), Jv::Str("7".into())),
        ]);
        let call = accepted(&KRAKEN, &Request::body(Method::POST, "/0/private/AddOrderBatch", JSON, style.write(&body)))?;
        check_canonical(&KRAKEN, &call)?;
        prop_assert!(call.intent.orders.len() >= batch.len());
        prop_assert!(call.intent.orders.iter().all(|o| o.symbol.as_str() == altname));

        // CancelOrder by txid, form.
        let cancel = form_post("/0/private/CancelOrder", format!("nonce=9&txid={txid}"));
        check_canonical(&KRAKEN, &accepted(&KRAKEN, &cancel)?)?;

        // A public read: the query, with the pair resolved.
        let mut pairs = vec![("pair".to_owned(), spelled)];
        pairs.extend(count.map(|c| ("count".to_owned(), c.to_string())));
        let depth = accepted(&KRAKEN, &Request::query(Method::GET, "/0/public/Depth", encode_pairs(&pairs)))?;
        check_canonical(&KRAKEN, &depth)?;
        prop_assert_eq!(depth.params[depth.params.iter().position(|(k, _)| *k == "pair").unwrap()].1.as_str(), altname.as_str());
    }
}
