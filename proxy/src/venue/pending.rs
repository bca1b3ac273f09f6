//! A venue whose adapter is still being written: it knows its name, upstream and
//! key header, catalogues nothing, and so refuses every request (fail closed).

use http::{HeaderMap, Method, StatusCode};
use keyward_policy::{EndpointClass, Permit, Quote, Symbol};

use crate::error::Rejection;
use crate::exchange::{Backoff, ExchangeLimit, UsageReport};
use crate::secret::SignError;
use crate::venue::{
    CallInput, Catalogue, EndpointSpec, Housekeeping, OrderChanges, OrderTypeSpec, Outbound,
    ParseError, ParsedCall, Preview, SignContext, Venue, VenueId,
};

/// A venue with an empty catalogue.
#[derive(Debug)]
pub struct Pending {
    id: VenueId,
    upstream: &'static str,
    key_header: &'static str,
    catalogue: Catalogue,
}

impl Pending {
    /// Names the venue.
    pub const fn new(id: VenueId, upstream: &'static str, key_header: &'static str) -> Self {
        Self {
            id,
            upstream,
            key_header,
            catalogue: Catalogue::new(&[]),
        }
    }
}

static EMPTY: Catalogue = Catalogue::new(&[]);

impl Venue for Pending {
    fn id(&self) -> VenueId {
        self.id
    }
    fn default_upstream(&self) -> &'static str {
        self.upstream
    }
    fn key_header(&self) -> &'static str {
        self.key_header
    }
    fn catalogue(&self) -> &'static Catalogue {
        let _ = &self.catalogue;
        &EMPTY
    }
    fn order_types(&self) -> &'static [OrderTypeSpec] {
        &[]
    }
    fn floor(&self, _method: &Method, _path: &str) -> Option<EndpointClass> {
        None
    }
    fn parse(
        &self,
        _endpoint: &'static EndpointSpec,
        _input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        Err(ParseError::invalid(
            "path",
            "an endpoint keyward catalogues",
        ))
    }
    fn sign(
        &self,
        _call: &ParsedCall,
        _permit: &Permit,
        _context: SignContext<'_>,
    ) -> Result<Outbound, SignError> {
        Err(SignError::PermitMismatch)
    }
    fn preview(&self, call: &ParsedCall, _recv_window_ms: u32) -> Preview {
        Preview {
            method: call.endpoint.method.clone(),
            path_and_query: call.endpoint.path.to_owned(),
            headers: Vec::new(),
            body: String::new(),
        }
    }
    fn refusal(&self, rejection: &Rejection) -> (&'static str, Vec<u8>) {
        crate::venue::binance::refusal(rejection)
    }
    fn exchange_limits(&self) -> &'static [ExchangeLimit] {
        &[]
    }
    fn usage(&self, _headers: &HeaderMap) -> Vec<UsageReport> {
        Vec::new()
    }
    fn backoff(&self, _status: StatusCode, _headers: &HeaderMap) -> Option<Backoff> {
        None
    }
    fn time_path(&self) -> &'static str {
        "/"
    }
    fn server_time_ms(&self, _body: &[u8]) -> Option<u64> {
        None
    }
    fn housekeeping(&self, _task: Housekeeping, _symbol: &Symbol) -> (&'static str, String) {
        ("", String::new())
    }
    fn parse_quote(&self, _body: &[u8]) -> Option<Quote> {
        None
    }
    fn order_changes(&self, _call: &ParsedCall, _body: &[u8]) -> OrderChanges {
        OrderChanges::default()
    }
}
