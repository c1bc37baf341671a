//! `chatpay`: the command-line wallet.
fn main() {}
