//! Parser, signer and catalogue tests for Bybit.
