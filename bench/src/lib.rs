//! What keyward's benches share: readings of `/proc` for the process under load.

pub mod procfs;
