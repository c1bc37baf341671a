//! chatpay multi-node test support: cluster harness, deterministic simulation,
//! fault and load tests.
