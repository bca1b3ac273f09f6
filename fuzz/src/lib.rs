//! What keyward's fuzz targets share: the request format the venue targets read, two
//! parsers written here from the exchanges' documented wire grammars (independent of
//! keyward's own), the differential oracles built on them, and the harnesses of the
//! configuration loader and of the HTTP/1 front.

pub mod config;
pub mod front;
pub mod json;
pub mod request;
pub mod urlencoded;
pub mod venue;
