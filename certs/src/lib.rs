//! TLS material for keyward (filled in by the serve issue).
