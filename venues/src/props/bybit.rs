//! Bybit: GET queries and POST JSON bodies generated from the whole catalogue, with
//! Bybit's own grammars (symbols, coins, cursors) and JSON types (integers and
//! booleans where Bybit documents them), plus spot and linear orders that must be
//! accepted. Bybit's rules: key order is free and canonicalised to the catalogue's;
//! JSON escapes and whitespace change nothing; a POST's parameters may come as a
//! query instead of a body (keyward sends them as JSON); a duplicate key is refused
//! (`param_duplicate` in a query, `json_duplicate_key` in JSON).

use http::Method;
use proptest::prelude::*;

use super::{
    JSON, JsonStyle, Jv, Request, accepted, check_canonical, decimal, encode_pairs, model, parse,
    reason, respelled_pairs, schema_value, some_fields,
};
use crate::Venue;
use crate::bybit::BYBIT;
use crate::schema::{EndpointSpec, Kind, Param, Shape, opt, req};

fn bybit_symbol() -> BoxedStrategy<String> {
    "[A-Z0-9][A-Z0-9-]{0,11}".boxed()
}

fn coin() -> BoxedStrategy<String> {
    "[A-Z0-9]{1,16}".boxed()
}

/// A value as text, in Bybit's grammar for the parameter.
fn text(param: &Param) -> BoxedStrategy<String> {
    match param.name {
        "symbol" => bybit_symbol(),
        "baseCoin" | "settleCoin" => coin(),
        "coin" => proptest::collection::vec(coin(), 1..=4)
            .prop_map(|coins| coins.join(","))
            .boxed(),
        "cursor" => "[A-Za-z0-9:=,_./-]{1,64}".boxed(),
        _ => schema_value(param.kind),
    }
}

/// A value as JSON, typed as Bybit types it.
fn json(param: &Param) -> BoxedStrategy<Jv> {
    match param.name {
        "isLeverage" | "triggerDirection" | "positionIdx" => text(param).prop_map(Jv::Lit).boxed(),
        "reduceOnly" | "closeOnTrigger" => text(param).prop_map(Jv::Lit).boxed(),
        _ => text(param).prop_map(Jv::Str).boxed(),
    }
}

/// An element of `cancel-batch`, whose list is no order batch (the catalogue's own
/// table is private to the venue).
const CANCEL_ELEMENT: &[Param] = &[
    req("symbol", Kind::Symbol),
    opt("orderId", Kind::ClientId),
    opt("orderLinkId", Kind::ClientId),
];

fn element_schema(endpoint: &EndpointSpec) -> Option<&'static [Param]> {
    match endpoint.shape {
        Shape::Batch { element, .. } => Some(element),
        _ if endpoint.path == "/v5/order/cancel-batch" => Some(CANCEL_ELEMENT),
        _ => None,
    }
}

/// The fields of a request to `endpoint`, as JSON values.
fn fields(endpoint: &'static EndpointSpec) -> BoxedStrategy<Vec<(String, Jv)>> {
    let fields = endpoint
        .params
        .iter()
        .map(|p| {
            let value = match (p.kind, element_schema(endpoint)) {
                (Kind::Batch, Some(element)) => {
                    let item = some_fields(
                        element
                            .iter()
                            .map(|e| (e.name, e.required, json(e)))
                            .collect(),
                    )
                    .prop_map(Jv::Obj);
                    proptest::collection::vec(item, 1..=3)
                        .prop_map(Jv::Arr)
                        .boxed()
                }
                _ => json(p),
            };
            (p.name, p.required, value)
        })
        .collect();
    some_fields(fields)
}

fn any_request() -> impl Strategy<Value = (&'static EndpointSpec, Vec<(String, Jv)>)> {
    proptest::sample::select(
        BYBIT
            .catalogue()
            .entries()
            .iter()
            .filter(|spec| !BYBIT.answered_by_keyward(spec))
            .collect::<Vec<_>>(),
    )
    .prop_flat_map(|endpoint| (Just(endpoint), fields(endpoint)))
}

/// The fields as query pairs: JSON text for lists, the literal for numbers.
fn as_pairs(fields: &[(String, Jv)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Jv::Str(t) | Jv::Lit(t) => t.clone(),
                other => JsonStyle::plain().write(other),
            };
            (k.clone(), text)
        })
        .collect()
}

fn json_request(endpoint: &EndpointSpec, fields: &[(String, Jv)], style: &JsonStyle) -> Request {
    Request::body(
        endpoint.method.clone(),
        endpoint.path,
        JSON,
        style.write(&Jv::Obj(fields.to_vec())),
    )
}

proptest! {
    #[test]
    fn every_accepted_request_is_canonical_and_its_spellings_agree(
        (endpoint, fields) in any_request(),
        style in JsonStyle::any(),
        choices in proptest::collection::vec(any::<u8>(), 1..6),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let get = endpoint.method == Method::GET;
        let pairs = as_pairs(&fields);
        let plain = if get {
            Request::query(Method::GET, endpoint.path, encode_pairs(&pairs))
        } else {
            json_request(endpoint, &fields, &JsonStyle::plain())
        };
        let Ok(call) = parse(&BYBIT, &plain) else {
            return Ok(());
        };
        check_canonical(&BYBIT, &call)?;
        let expected = model(&call);
        if get {
            let escaped = Request::query(Method::GET, endpoint.path, respelled_pairs(&pairs, &choices));
            prop_assert_eq!(&model(&accepted(&BYBIT, &escaped)?), &expected);
        } else {
            // Escapes and whitespace in the JSON: same call.
            prop_assert_eq!(&model(&accepted(&BYBIT, &json_request(endpoint, &fields, &style))?), &expected);
            // The same parameters as a body-less POST's query: same call.
            let as_query = Request::query(Method::POST, endpoint.path, respelled_pairs(&pairs, &choices));
            prop_assert_eq!(&model(&accepted(&BYBIT, &as_query)?), &expected);
        }
        if !fields.is_empty() {
            let at = duplicate.index(fields.len());
            if get {
                let mut doubled = pairs.clone();
                doubled.push(pairs[at].clone());
                let twice = Request::query(Method::GET, endpoint.path, respelled_pairs(&doubled, &choices));
                prop_assert_eq!(reason(&parse(&BYBIT, &twice)), "param_duplicate");
            } else {
                let mut doubled = fields.clone();
                doubled.push(fields[at].clone());
                prop_assert_eq!(reason(&parse(&BYBIT, &json_request(endpoint, &doubled, &style))), "json_duplicate_key");
            }
        }
    }

    #[test]
    fn limit_and_market_orders_are_accepted_and_canonical(
        linear in any::<bool>(),
        symbol in bybit_symbol(),
        side in prop_oneof![Just("Buy"), Just("Sell")],
        market in any::<bool>(),
        qty in decimal(),
        price in decimal(),
        link_id in proptest::option::of("[A-Za-z0-9._:/-]{1,36}"),
        reduce_only in proptest::option::of(any::<bool>()),
        position in proptest::option::of(0..3u8),
        style in JsonStyle::any(),
        order in any::<prop::sample::Index>(),
    ) {
        let mut fields: Vec<(String, Jv)> = vec![
            ("category".into(), Jv::Str(if linear { "linear" } else { "spot" }.into())),
            ("symbol".into(), Jv::Str(symbol.clone())),
            ("side".into(), Jv::Str(side.into())),
            ("orderType".into(), Jv::Str(if market { "Market" } else { "Limit" }.into())),
            ("qty".into(), Jv::Str(qty.clone())),
        ];
        if !market {
            fields.push(("price".into(), Jv::Str(price.clone())));
        }
        fields.extend(link_id.map(|id| ("orderLinkId".to_owned(), Jv::Str(id))));
        if linear {
            fields.extend(reduce_only.map(|r| ("reduceOnly".to_owned(), Jv::Lit(r.to_string()))));
            fields.extend(position.map(|p| ("positionIdx".to_owned(), Jv::Lit(p.to_string()))));
        }
        let turn = order.index(fields.len());
        fields.rotate_left(turn);
        let endpoint = BYBIT.catalogue().by_key("POST /v5/order/create").unwrap();
        let call = accepted(&BYBIT, &json_request(endpoint, &fields, &style))?;
        check_canonical(&BYBIT, &call)?;
        prop_assert_eq!(call.intent.orders.len(), 1);
        let placed = &call.intent.orders[0];
        let category = if linear { "linear" } else { "spot" };
        prop_assert_eq!(placed.symbol.as_str(), format!("{category}:{symbol}"));
        // A spot Market Buy is sized in the quote coin (Bybit's default).
        let size = qty.parse().unwrap();
        let expected_size = if !linear && market && side == "Buy" {
            keyward_policy::Size::Quote(size)
        } else {
            keyward_policy::Size::Base(size)
        };
        prop_assert_eq!(placed.size, expected_size);
        prop_assert_eq!(placed.price, (!market).then(|| price.parse().unwrap()));
    }
}
