//! Binance (spot and USDⓈ-M): requests generated from the whole catalogue, every
//! parameter in its schema grammar, in any order, split between query and body where
//! Binance reads both, with any percent-escapes. Binance's rules: order is free and
//! canonicalised to the catalogue's; escapes are decoded once; a key twice is refused
//! (`param_duplicate`), in both query and body too (`param_in_query_and_body`); the
//! bot's own `timestamp`, `recvWindow` and `signature` are stripped.

use proptest::prelude::*;

use super::{
    FORM, JsonStyle, Jv, Request, accepted, check_canonical, decimal, encode_pairs, model, parse,
    reason, respelled_pairs, schema_symbol, schema_value,
};
use crate::binance::{SPOT, USDM};
use crate::schema::{EndpointSpec, Kind, Param, Shape};
use crate::{Venue, VenueId};

/// An element of a batch: every value a JSON string, keys in any order.
fn batch(element: &'static [Param], max: usize) -> BoxedStrategy<String> {
    let fields = element
        .iter()
        .map(|p| {
            (
                p.name,
                p.required,
                schema_value(p.kind).prop_map(Jv::Str).boxed(),
            )
        })
        .collect();
    proptest::collection::vec(super::some_fields(fields), 1..=max.min(3))
        .prop_map(|items| {
            JsonStyle::plain().write(&Jv::Arr(items.into_iter().map(Jv::Obj).collect()))
        })
        .boxed()
}

/// The pairs of a request to `endpoint`: required parameters always, optional ones
/// half the time, in any order.
fn params(endpoint: &'static EndpointSpec) -> BoxedStrategy<Vec<(String, String)>> {
    let fields = endpoint
        .params
        .iter()
        .map(|p| {
            let value = match (p.kind, endpoint.shape) {
                (Kind::Batch, Shape::Batch { element, max, .. }) => batch(element, max),
                (kind, _) => schema_value(kind),
            };
            (p.name, p.required, value.prop_map(Jv::Str).boxed())
        })
        .collect();
    super::some_fields(fields)
        .prop_map(|fields| {
            fields
                .into_iter()
                .map(|(k, v)| match v {
                    Jv::Str(v) => (k, v),
                    _ => unreachable!(),
                })
                .collect()
        })
        .boxed()
}

fn venue(id: VenueId) -> &'static dyn Venue {
    if id == VenueId::BinanceUsdm {
        &USDM
    } else {
        &SPOT
    }
}

/// Any endpoint of either product, with its pairs.
fn any_request() -> impl Strategy<Value = (VenueId, &'static EndpointSpec, Vec<(String, String)>)> {
    let endpoints: Vec<(VenueId, &'static EndpointSpec)> =
        [VenueId::BinanceSpot, VenueId::BinanceUsdm]
            .into_iter()
            .flat_map(|id| venue(id).catalogue().entries().iter().map(move |e| (id, e)))
            // keyward answers these itself; they are never signed.
            .filter(|(id, e)| !venue(*id).answered_by_keyward(e))
            .collect();
    proptest::sample::select(endpoints)
        .prop_flat_map(|(id, endpoint)| (Just(id), Just(endpoint), params(endpoint)))
}

/// Where Binance reads parameters: the query of a GET or DELETE, the form body (and
/// the query) otherwise.
fn in_query(endpoint: &EndpointSpec) -> bool {
    matches!(endpoint.method, http::Method::GET | http::Method::DELETE)
}

fn request(endpoint: &EndpointSpec, query: String, body: String) -> Request {
    let mut request = Request::query(endpoint.method.clone(), endpoint.path, query);
    if !body.is_empty() {
        request.content_type = Some(FORM.to_owned());
        request.body = body;
    }
    request
}

fn canonical_request(endpoint: &EndpointSpec, pairs: &[(String, String)]) -> Request {
    if in_query(endpoint) {
        request(endpoint, encode_pairs(pairs), String::new())
    } else {
        request(endpoint, String::new(), encode_pairs(pairs))
    }
}

proptest! {
    #[test]
    fn every_accepted_request_is_canonical_and_its_spellings_agree(
        (id, endpoint, pairs) in any_request(),
        choices in proptest::collection::vec(any::<u8>(), 1..6),
        split in any::<prop::sample::Index>(),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let venue = venue(id);
        let plain = canonical_request(endpoint, &pairs);
        let Ok(call) = parse(venue, &plain) else {
            // Outside the cross-parameter rules (sizes, legs): nothing to round-trip.
            return Ok(());
        };
        check_canonical(venue, &call)?;
        let expected = model(&call);

        // Any percent-escapes: decoded once, same call.
        let escaped = if in_query(endpoint) {
            request(endpoint, respelled_pairs(&pairs, &choices), String::new())
        } else {
            request(endpoint, String::new(), respelled_pairs(&pairs, &choices))
        };
        prop_assert_eq!(&model(&accepted(venue, &escaped)?), &expected);

        // The bot's own auth fields are stripped.
        let mut with_auth = pairs.clone();
        with_auth.extend([
            ("timestamp".to_owned(), "1499827319559".to_owned()),
            ("recvWindow".to_owned(), "5000".to_owned()),
            ("signature".to_owned(), "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71".to_owned()),
        ]);
        let stripped = accepted(venue, &canonical_request(endpoint, &with_auth))?;
        prop_assert_eq!(&model(&stripped), &expected);
        prop_assert_eq!(stripped.stripped.len(), 3);

        // A POST's pairs may stand partly in the query: same call. One key in both
        // places is refused.
        if !in_query(endpoint) && !pairs.is_empty() {
            let at = split.index(pairs.len());
            let split_request = request(endpoint, encode_pairs(&pairs[..at]), encode_pairs(&pairs[at..]));
            prop_assert_eq!(&model(&accepted(venue, &split_request)?), &expected);
            let both = request(endpoint, encode_pairs(&pairs[at..=at]), encode_pairs(&pairs));
            prop_assert_eq!(reason(&parse(venue, &both)), "param_in_query_and_body");
        }

        // A key twice (spelled differently the second time) is refused.
        if !pairs.is_empty() {
            let (key, _) = &pairs[duplicate.index(pairs.len())];
            let mut doubled = pairs.clone();
            doubled.push((key.clone(), "1".to_owned()));
            let raw = respelled_pairs(&doubled, &choices);
            let twice = if in_query(endpoint) {
                request(endpoint, raw, String::new())
            } else {
                request(endpoint, String::new(), raw)
            };
            prop_assert_eq!(reason(&parse(venue, &twice)), "param_duplicate");
        }
    }

    #[test]
    fn spot_limit_orders_are_accepted_and_canonical(
        symbol in schema_symbol(),
        side in prop_oneof![Just("BUY"), Just("SELL")],
        quantity in decimal(),
        price in decimal(),
        client_id in proptest::option::of("[A-Za-z0-9._:/-]{1,36}"),
        order in any::<prop::sample::Index>(),
        choices in proptest::collection::vec(any::<u8>(), 1..6),
    ) {
        let mut pairs: Vec<(String, String)> = vec![
            ("symbol".into(), symbol.clone()),
            ("side".into(), side.into()),
            ("type".into(), "LIMIT".into()),
            ("timeInForce".into(), "GTC".into()),
            ("quantity".into(), quantity.clone()),
            ("price".into(), price.clone()),
        ];
        pairs.extend(client_id.map(|id| ("newClientOrderId".to_owned(), id)));
        // Any order: rotate by a random amount.
        let turn = order.index(pairs.len());
        pairs.rotate_left(turn);
        let endpoint = SPOT.catalogue().by_key("POST /api/v3/order").unwrap();
        let body = request(endpoint, String::new(), respelled_pairs(&pairs, &choices));
        let call = accepted(&SPOT, &body)?;
        check_canonical(&SPOT, &call)?;
        prop_assert_eq!(call.intent.orders.len(), 1);
        let order = &call.intent.orders[0];
        prop_assert_eq!(order.symbol.as_str(), symbol.as_str());
        prop_assert_eq!(order.price, Some(price.parse().unwrap()));
        prop_assert_eq!(order.size, keyward_policy::Size::Base(quantity.parse().unwrap()));
        // The canonical order is the catalogue's, whatever the bot's was.
        let names: Vec<&str> = call.params.iter().map(|(k, _)| *k).collect();
        let mut in_catalogue = names.clone();
        in_catalogue.sort_by_key(|n| endpoint.params.iter().position(|p| p.name == *n));
        prop_assert_eq!(names, in_catalogue);
    }
}
