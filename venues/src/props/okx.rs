//! OKX: GET queries and POST JSON bodies (single objects and batches) generated from
//! the whole catalogue with OKX's grammars (instrument ids, its client ids, currency
//! lists), and limit and market orders that must be accepted. OKX's rules: key order
//! is free and canonicalised to the catalogue's; JSON escapes and whitespace change
//! nothing; `""` and `null` mean absent (python-okx sends every optional field so);
//! booleans may be JSON strings and are sent as JSON booleans; the broker `tag` is
//! stripped; a duplicate key is refused (`param_duplicate`, `json_duplicate_key`).

use http::Method;
use proptest::prelude::*;

use super::{
    JSON, JsonStyle, Jv, Request, accepted, check_canonical, decimal, encode_pairs, model, parse,
    reason, respelled_pairs, schema_value, some_fields,
};
use crate::Venue;
use crate::okx::OKX;
use crate::schema::{EndpointSpec, Kind, Param, Shape};

fn inst_id() -> BoxedStrategy<String> {
    prop_oneof![
        "[A-Z0-9]{1,5}-[A-Z0-9]{1,5}",
        "[A-Z0-9]{1,5}-[A-Z0-9]{1,5}-SWAP",
        "[A-Z0-9]{1,4}(-[A-Z0-9]{1,6}){2,3}",
    ]
    .boxed()
}

fn text(param: &Param) -> BoxedStrategy<String> {
    match param.kind {
        Kind::Symbol => inst_id(),
        Kind::ClientId => "[A-Za-z0-9]{1,32}".boxed(),
        Kind::SymbolList => proptest::collection::vec("[A-Z0-9]{1,16}", 1..=4)
            .prop_map(|c| c.join(","))
            .boxed(),
        other => schema_value(other),
    }
}

/// A field of a JSON body: a JSON string, or for booleans either form.
fn json(param: &Param) -> BoxedStrategy<Jv> {
    if param.kind == Kind::Bool {
        (text(param), any::<bool>())
            .prop_map(|(t, literal)| if literal { Jv::Lit(t) } else { Jv::Str(t) })
            .boxed()
    } else {
        text(param).prop_map(Jv::Str).boxed()
    }
}

/// The object schema of a POST endpoint's body and whether the body is a list.
fn body_schema(endpoint: &EndpointSpec) -> (&'static [Param], bool) {
    match endpoint.shape {
        Shape::Batch { element, .. } => (element, true),
        _ if endpoint.path == "/api/v5/trade/cancel-batch-orders" => (
            OKX.catalogue()
                .by_key("POST /api/v5/trade/cancel-order")
                .unwrap()
                .params,
            true,
        ),
        _ => (endpoint.params, false),
    }
}

fn object(schema: &'static [Param]) -> BoxedStrategy<Vec<(String, Jv)>> {
    some_fields(
        schema
            .iter()
            .map(|p| (p.name, p.required, json(p)))
            .collect(),
    )
}

/// A request: query pairs for a GET, one object or a list of them for a POST.
#[derive(Debug, Clone)]
enum Input {
    Query(Vec<(String, String)>),
    Body(Vec<Vec<(String, Jv)>>, bool),
}

fn any_request() -> impl Strategy<Value = (&'static EndpointSpec, Input)> {
    proptest::sample::select(OKX.catalogue().entries().iter().collect::<Vec<_>>()).prop_flat_map(
        |endpoint| {
            let input = if endpoint.method == Method::GET {
                some_fields(
                    endpoint
                        .params
                        .iter()
                        .map(|p| (p.name, p.required, text(p).prop_map(Jv::Str).boxed()))
                        .collect(),
                )
                .prop_map(|fields| {
                    Input::Query(fields.into_iter().map(|(k, v)| (k, plain(&v))).collect())
                })
                .boxed()
            } else {
                let (schema, list) = body_schema(endpoint);
                let count = if list { 1..=3usize } else { 1..=1 };
                proptest::collection::vec(object(schema), count)
                    .prop_map(move |objects| Input::Body(objects, list))
                    .boxed()
            };
            (Just(endpoint), input)
        },
    )
}

fn plain(value: &Jv) -> String {
    match value {
        Jv::Str(t) | Jv::Lit(t) => t.clone(),
        other => JsonStyle::plain().write(other),
    }
}

fn body_text(objects: &[Vec<(String, Jv)>], list: bool, style: &JsonStyle) -> String {
    let objects: Vec<Jv> = objects.iter().map(|o| Jv::Obj(o.clone())).collect();
    if list {
        style.write(&Jv::Arr(objects))
    } else {
        style.write(&objects[0])
    }
}

fn post(endpoint: &EndpointSpec, body: String) -> Request {
    Request::body(Method::POST, endpoint.path, JSON, body)
}

/// `fields` with what python-okx and ccxt add: every absent optional field as `""`
/// or `null`, the empty-only fields empty, and a broker tag.
fn padded(fields: &[(String, Jv)], schema: &[Param], nulls: bool) -> Vec<(String, Jv)> {
    let mut out = fields.to_vec();
    for param in schema.iter().filter(|p| !p.required) {
        if !fields.iter().any(|(k, _)| k == param.name) {
            let empty = if nulls {
                Jv::Lit("null".into())
            } else {
                Jv::Str(String::new())
            };
            out.push((param.name.to_owned(), empty));
        }
    }
    out.push(("attachAlgoOrds".into(), Jv::Arr(Vec::new())));
    out.push(("tag".into(), Jv::Str("6b9ad766b55dBCDE".into())));
    out
}

proptest! {
    #[test]
    fn every_accepted_request_is_canonical_and_its_spellings_agree(
        (endpoint, input) in any_request(),
        style in JsonStyle::any(),
        choices in proptest::collection::vec(any::<u8>(), 1..6),
        nulls in any::<bool>(),
        duplicate in any::<prop::sample::Index>(),
    ) {
        match input {
            Input::Query(pairs) => {
                let Ok(call) = parse(&OKX, &Request::query(Method::GET, endpoint.path, encode_pairs(&pairs))) else {
                    return Ok(());
                };
                check_canonical(&OKX, &call)?;
                let escaped = Request::query(Method::GET, endpoint.path, respelled_pairs(&pairs, &choices));
                prop_assert_eq!(model(&accepted(&OKX, &escaped)?), model(&call));
                if !pairs.is_empty() {
                    let mut doubled = pairs.clone();
                    doubled.push(pairs[duplicate.index(pairs.len())].clone());
                    let twice = Request::query(Method::GET, endpoint.path, encode_pairs(&doubled));
                    prop_assert_eq!(reason(&parse(&OKX, &twice)), "param_duplicate");
                }
            }
            Input::Body(objects, list) => {
                let Ok(call) = parse(&OKX, &post(endpoint, body_text(&objects, list, &JsonStyle::plain()))) else {
                    return Ok(());
                };
                check_canonical(&OKX, &call)?;
                let expected = model(&call);
                let styled = post(endpoint, body_text(&objects, list, &style));
                prop_assert_eq!(&model(&accepted(&OKX, &styled)?), &expected);
                let (schema, _) = body_schema(endpoint);
                let with_empties: Vec<_> = objects.iter().map(|o| padded(o, schema, nulls)).collect();
                let python_okx = accepted(&OKX, &post(endpoint, body_text(&with_empties, list, &style)))?;
                prop_assert_eq!(&model(&python_okx), &expected);
                prop_assert!(python_okx.stripped.contains(&"tag"));
                let first = &objects[0];
                let mut doubled = objects.clone();
                doubled[0].push(first[duplicate.index(first.len())].clone());
                let twice = post(endpoint, body_text(&doubled, list, &style));
                prop_assert_eq!(reason(&parse(&OKX, &twice)), "json_duplicate_key");
            }
        }
    }

    #[test]
    fn limit_and_market_orders_are_accepted_and_canonical(
        inst in inst_id(),
        side in prop_oneof![Just("buy"), Just("sell")],
        market in any::<bool>(),
        sz in decimal(),
        px in decimal(),
        td_mode in prop_oneof![Just("cash"), Just("cross")],
        cl_ord_id in proptest::option::of("[A-Za-z0-9]{1,32}"),
        style in JsonStyle::any(),
        order in any::<prop::sample::Index>(),
    ) {
        let mut fields: Vec<(String, Jv)> = vec![
            ("instId".into(), Jv::Str(inst.clone())),
            ("tdMode".into(), Jv::Str(td_mode.into())),
            ("side".into(), Jv::Str(side.into())),
            ("ordType".into(), Jv::Str(if market { "market" } else { "limit" }.into())),
            ("sz".into(), Jv::Str(sz.clone())),
        ];
        if !market {
            fields.push(("px".into(), Jv::Str(px.clone())));
        }
        fields.extend(cl_ord_id.map(|id| ("clOrdId".to_owned(), Jv::Str(id))));
        let turn = order.index(fields.len());
        fields.rotate_left(turn);
        let endpoint = OKX.catalogue().by_key("POST /api/v5/trade/order").unwrap();
        let call = accepted(&OKX, &post(endpoint, style.write(&Jv::Obj(fields))))?;
        check_canonical(&OKX, &call)?;
        prop_assert_eq!(call.intent.orders.len(), 1);
        let placed = &call.intent.orders[0];
        prop_assert_eq!(placed.symbol.as_str(), inst.as_str());
        prop_assert_eq!(placed.price, (!market).then(|| px.parse().unwrap()));
        // A spot market buy is sized in the quote currency unless tgtCcy says otherwise.
        let spot = inst.split('-').count() == 2;
        let size = sz.parse().unwrap();
        let expected = if spot && market && side == "buy" {
            keyward_policy::Size::Quote(size)
        } else {
            keyward_policy::Size::Base(size)
        };
        prop_assert_eq!(placed.size, expected);
        prop_assert_eq!(placed.margin, spot && td_mode != "cash");
    }
}
