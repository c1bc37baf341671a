//! chatpay wallet library for chat clients: keys, payments, payment-request
//! links and incoming payments, with finality checked against the validator set.
//!
//! Built on the canonical signing of `chatpay-proto`.
